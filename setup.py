"""Build: the cffi core (native/build.py) and the CPython-API extensions.

cffi has no pyproject form, so both are declared here.  The CPython-API
modules build Python objects (dicts, bytes, iterators) in C, which cffi
cannot do cheaply; they share native/build.py's compiler flags (warnings
are errors unless SAFEPOINT_DEV_BUILD=0).
"""

import sys
from pathlib import Path

from setuptools import Extension, setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "native"))
from build import compile_args  # noqa: E402 - native/build.py: one set of compiler flags


def native_module(name: str, sources: list[str], headers: tuple[str, ...] = ()) -> Extension:
    """``safepoint.<name>`` from native/<sources>."""
    return Extension(
        f"safepoint.{name}",
        sources=[f"native/{s}" for s in sources],
        depends=[f"native/{h}" for h in headers],
        include_dirs=["native"],
        extra_compile_args=compile_args(),
    )


setup(
    cffi_modules=["native/build.py:ffibuilder"],
    ext_modules=[
        native_module("_sp_batch", ["sp_batch.c"]),
        native_module(
            "_sp_memtable",
            [
                "sp_memtable.c",
                "sp_memtable_table.c",
                "sp_memtable_order.c",
                "sp_memtable_iter.c",
                "sp_core.c",
            ],
            ("sp_memtable.h", "sp_core.h", "sp_crc32c_tables.h"),
        ),
        # The base image's get path; it computes its CRC with sp_core's.
        native_module("_sp_fast", ["sp_fast.c", "sp_core.c"], ("sp_core.h", "sp_crc32c_tables.h")),
        # Store.get (its Python frame was most of a memtable get).
        native_module("_sp_get", ["sp_get.c"]),
        # Store.put (its nine Python frames were most of a commit's CPU); it
        # calls the cffi core's engine through addresses, so links none of it.
        native_module("_sp_put", ["sp_put.c", "sp_put_type.c"], ("sp_put.h", "sp_core.h", "sp_wal.h")),
    ],
)
