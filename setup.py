import sys
from pathlib import Path

from setuptools import Extension, setup

sys.path.insert(0, str(Path(__file__).resolve().parent / "native"))
from build import compile_args  # noqa: E402 - native/build.py: one set of compiler flags

# Native modules beside the cffi core; each one entry.
ext_modules = [
    Extension(
        "safepoint._sp_memtable",
        sources=[
            "native/sp_memtable.c",
            "native/sp_memtable_order.c",
            "native/sp_memtable_iter.c",
            "native/sp_core.c",
        ],
        depends=["native/sp_memtable.h", "native/sp_core.h"],
        include_dirs=["native"],
        extra_compile_args=compile_args(),
    ),
]

setup(
    cffi_modules=["native/build.py:ffibuilder"],  # cffi has no pyproject form
    ext_modules=ext_modules,
)
