"""The record codec: encode, CRC32C, scan and resynchronise WAL records.

The native core (``_records_native``, C through cffi) is used by default.
``SAFEPOINT_BACKEND=python`` selects the pure-Python reference
(``_records_py``) instead, for tests and for a machine where the extension
could not be built.  A native core that fails to import is an error, never a
silent fallback: the reference is many times slower, and a store that
quietly runs on it is a bug report waiting to happen.

Both backends have identical signatures and results; tests/test_records.py
holds them to that.  ``BACKEND`` names the one in use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ._records_common import (
    RecordInfo,
    ScanResult,
    ScanSpan,
    apply_records,
    crc32c_bytes,
    decode_payload,
    encode_payload,
)
from .format import RECORD_HEADER_SIZE

_CHOICE = os.environ.get("SAFEPOINT_BACKEND", "native") or "native"

# encode_writes_or_none: the C encoder itself on the native backend, None on
# the Python one.  It returns None for what it declines (encode_writes then
# handles it); a commit calls it first to save a Python frame per commit.
encode_writes_or_none: Callable[[Mapping[bytes, bytes | None]], bytes | None] | None = None
# encode_pairs_or_none: likewise, the payload of a list of (key, value) puts
# in order (encode_payload's twin in C, _sp_batch.encode_pairs), for a bulk
# update that needs no dict; None on the Python backend.
encode_pairs_or_none: Callable[[list[Any]], bytes | None] | None = None

if _CHOICE == "python":
    from ._records_py import (
        BACKEND,
        check_payload,
        crc32c,
        encode_batch,
        encode_record,
        encode_writes,
        find_valid,
        scan,
        scan_span,
        store_seed,
    )
elif _CHOICE == "native":
    try:
        from ._records_native import (
            BACKEND,
            check_payload,
            crc32c,
            encode_batch,
            encode_record,
            encode_writes,
            find_valid,
            scan,
            scan_span,
            store_seed,
        )
        from ._sp_batch import encode_pairs as _encode_pairs_c
        from ._sp_batch import encode_writes as _encode_writes_c

        encode_writes_or_none = _encode_writes_c
        encode_pairs_or_none = _encode_pairs_c
    except ImportError as exc:
        raise ImportError(
            "safepoint: the native core (safepoint._sp_core, _sp_batch) failed to import "
            f"({exc}). Reinstall safepoint where a C compiler and cffi are available "
            "(pip install --force-reinstall --no-binary safepoint safepoint), or set "
            "SAFEPOINT_BACKEND=python to run on the slow pure-Python reference codec."
        ) from exc
else:
    raise ImportError(
        f"safepoint: SAFEPOINT_BACKEND={_CHOICE!r} is not a backend; use 'native' or 'python'"
    )

__all__ = [
    "BACKEND",
    "RECORD_HEADER_SIZE",
    "RecordInfo",
    "ScanResult",
    "ScanSpan",
    "apply_records",
    "check_payload",
    "crc32c",
    "crc32c_bytes",
    "decode_payload",
    "encode_payload",
    "encode_writes",
    "encode_writes_or_none",
    "encode_pairs_or_none",
    "encode_batch",
    "encode_record",
    "find_valid",
    "scan",
    "scan_span",
    "store_seed",
]
