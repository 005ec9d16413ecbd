"""Argument checking for keys and ranges, shared by the store and transactions."""

from __future__ import annotations

from typing import Any

from .format import MAX_KEY_SIZE


def to_key(key: Any) -> bytes:
    """Normalise a key to bytes: bytes-like as is, str as UTF-8.

    Raises TypeError for other types and ValueError for an empty key or one
    longer than LMDB's 511-byte limit, at the call, never at checkpoint time.
    """
    if type(key) is bytes:
        k = key
    elif isinstance(key, str):
        k = key.encode("utf-8")
    elif isinstance(key, (bytes, bytearray, memoryview)):
        k = bytes(key)
    else:
        raise TypeError(f"keys must be bytes or str, not {type(key).__name__}")
    n = len(k)
    if not 0 < n <= MAX_KEY_SIZE:
        if n == 0:
            raise ValueError("keys must not be empty (LMDB cannot store an empty key)")
        raise ValueError(f"key is {n} bytes; the limit is {MAX_KEY_SIZE} (LMDB's maximum key size)")
    return k


def to_bound(bound: Any) -> bytes | None:
    """A range bound: None, or a key-like value (may be empty)."""
    if bound is None:
        return None
    if isinstance(bound, str):
        return bound.encode("utf-8")
    if isinstance(bound, (bytes, bytearray, memoryview)):
        return bytes(bound)
    raise TypeError(f"range bounds must be bytes or str, not {type(bound).__name__}")


def prefix_stop(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key starting with ``prefix``."""
    p = prefix.rstrip(b"\xff")
    if not p:
        return None
    return p[:-1] + bytes((p[-1] + 1,))


def key_range(prefix: Any, start: Any, stop: Any) -> tuple[bytes | None, bytes | None]:
    """[start, stop) for a prefix and/or explicit bounds (the intersection)."""
    lo, hi = to_bound(start), to_bound(stop)
    if prefix is not None:
        p = to_bound(prefix)
        assert p is not None
        ps = prefix_stop(p)
        lo = p if lo is None or p > lo else lo
        if ps is not None and (hi is None or ps < hi):
            hi = ps
    return lo, hi
