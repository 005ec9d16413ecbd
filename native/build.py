"""cffi builder for safepoint's native core (``safepoint._sp_core``).

setup.py names this file in ``cffi_modules``, so the extension is compiled by
``pip install`` (out-of-line API mode) and never at import time; during
development ``pip install -e .`` puts it in src/safepoint/.  The cdef is
native/sp_core.h and native/sp_wal.h themselves: one file declares the C API for the compiler and for
cffi, so the two cannot drift apart.  native/sp_wal_internal.h (the engine's
struct, shared by sp_wal.c and sp_wal_yield.c) is for the compiler only and
must stay out of HEADERS: cffi cannot parse it.

Warnings are errors (``-Werror``) because the C is small and must stay clean
under gcc 12, the compiler CI uses. A newer compiler may grow a warning in
code we do not own (cffi's generated wrapper, Python's headers); to install
anyway, build with ``SAFEPOINT_DEV_BUILD=0``, which keeps the warnings and
drops ``-Werror``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from cffi import FFI

NATIVE_DIR = Path(__file__).resolve().parent
# sp_core.h: pure computation; sp_wal.h: the group-commit engine (I/O, threads).
HEADERS = [NATIVE_DIR / "sp_core.h", NATIVE_DIR / "sp_wal.h"]

# cffi understands "#define NAME <integer>" in a cdef; every other
# preprocessor line (include guards, includes) is for the compiler only.
_INTEGER_DEFINE = re.compile(r"#\s*define\s+\w+\s+-?(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\s*$")


def cdef_from_header(text: str) -> str:
    """The header with the preprocessor lines cffi cannot read removed."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not _INTEGER_DEFINE.match(stripped):
            continue
        lines.append(line)
    return "\n".join(lines) + "\n"


def compile_args() -> list[str]:
    args = ["-O2", "-Wall", "-Wextra", "-std=c11", "-pthread"]
    if os.environ.get("SAFEPOINT_DEV_BUILD", "1") != "0":
        args.append("-Werror")
    return args


ffibuilder = FFI()
ffibuilder.cdef("".join(cdef_from_header(h.read_text(encoding="utf-8")) for h in HEADERS))
ffibuilder.set_source(
    "safepoint._sp_core",
    '#include <stddef.h>\n#include <stdint.h>\n#include "sp_core.h"\n#include "sp_wal.h"\n',
    # Relative to the project root, where setup.py runs: setuptools refuses
    # absolute source paths in an sdist build.
    sources=["native/sp_core.c", "native/sp_wal.c", "native/sp_wal_sync.c", "native/sp_wal_yield.c"],
    # So that an incremental build_ext rebuilds after a header changes.
    depends=[
        "native/sp_core.h",
        "native/sp_wal.h",
        "native/sp_wal_internal.h",
        "native/sp_crc32c_tables.h",
    ],
    include_dirs=["native"],
    extra_compile_args=compile_args(),
    extra_link_args=["-pthread"],
)
