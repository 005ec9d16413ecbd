"""The base image's entry format: what LMDB's ``data`` database holds per key.

An entry is ``crc32c(key ++ value)`` (4 bytes, little-endian) followed by
the value: LMDB keeps no checksums of its own, and a flipped bit must never
be returned as data.  ``check_entry`` runs in C (``safepoint._sp_fast``) on
the native backend, with ``check_entry_py`` beside it as its oracle.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from operator import add

import crc32c

from . import records
from .errors import CorruptionError

# The read path in C (native/sp_fast.c: check_entry here, and the Reader that
# BaseImage.get becomes), beside the pure-Python code that stays as its
# oracle and as the SAFEPOINT_BACKEND=python path.  As
# with the record codec (records.py), a native build that fails to import is
# an error, never a silent fallback to the slower path.
if records.BACKEND == "native":
    try:
        from . import _sp_fast
    except ImportError as exc:
        raise ImportError(
            f"safepoint: the native read path (safepoint._sp_fast) failed to import ({exc}). "
            "Reinstall safepoint where a C compiler is available, or set "
            "SAFEPOINT_BACKEND=python to run on the pure-Python reference."
        ) from exc
else:
    _sp_fast = None  # type: ignore[assignment]

LMDB_NAME = "base/data.mdb"  # named in CorruptionError

# The crc32c package's function itself (records.crc32c_bytes wraps it in a
# Python call, which is a fifth of a base-image get).
_crc32c_bytes = crc32c.crc32c
_pack_crc = struct.Struct("<I").pack
_unpack_crc = struct.Struct("<I").unpack_from

# One batch of a checkpoint's fold: (key, stored entry) puts, deleted keys.
FoldBatch = tuple[list[tuple[bytes, bytes]], list[bytes]]


def entry_value(key: bytes, value: bytes) -> bytes:
    """The stored form of a value: its CRC over key and value, then the value."""
    return _pack_crc(_crc32c_bytes(value, _crc32c_bytes(key))) + value


def check_entry(key: bytes, stored: bytes | memoryview) -> bytes:
    """Return the value of a stored entry, or raise CorruptionError."""
    if _sp_fast is not None:
        value = _sp_fast.check_entry(key, stored)
        if value is not None:
            return value
    return check_entry_py(key, stored)  # raises the error that names the problem


def check_entry_py(key: bytes, stored: bytes | memoryview) -> bytes:
    """check_entry in pure Python: the oracle of ``_sp_fast.check_entry``."""
    if len(stored) < 4:
        raise CorruptionError(
            f"base: entry for key {bytes(key)[:64]!r} is too short ({len(stored)} bytes)",
            file=LMDB_NAME,
        )
    value = stored[4:]
    if type(value) is not bytes:
        value = bytes(value)
    if type(key) is not bytes:
        key = bytes(key)
    crc = _crc32c_bytes
    if crc(value, crc(key)) != _unpack_crc(stored)[0]:
        raise CorruptionError(
            f"base: checksum mismatch for key {bytes(key)[:64]!r}", file=LMDB_NAME
        )
    return value


def stored_entries(keys: Sequence[bytes], values: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """``(keys[i], entry_value(keys[i], values[i]))`` for every i, built by
    C-level ``map`` calls: no Python frame per entry."""
    stored = map(add, map(_pack_crc, map(_crc32c_bytes, map(add, keys, values))), values)
    return list(zip(keys, stored, strict=True))
