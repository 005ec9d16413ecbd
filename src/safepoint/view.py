"""Consistent multi-key reads: iteration and counting over every layer.

A single-key read needs no lock (store.py explains why); anything that reads
many keys must see one state.  Under the store's mem lock we copy the
memtable and frozen memtable entries in range and begin an LMDB read
transaction, so a checkpoint that commits afterwards cannot mix a newer base
image with an older memtable copy; the merge then runs without the lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import lmdb

from .errors import ClosedError

if TYPE_CHECKING:
    from .store import Store


def _overlay(
    store: Store, lo: bytes | None, hi: bytes | None
) -> tuple[dict[bytes, bytes | None], object, object]:
    """Memtable entries in range (frozen first, newer over it) and an open
    base-image reader, taken atomically under the mem lock."""
    with store._mem_lock:
        overlay: dict[bytes, bytes | None] = {}
        frozen = store._frozen
        if frozen is not None:
            overlay.update(frozen.items(lo, hi))
        overlay.update(store._mem.items(lo, hi))
        reader = store._base.reader()
        txn = reader.__enter__()
    return overlay, reader, txn


def snapshot_items(
    store: Store,
    lo: bytes | None,
    hi: bytes | None,
    top: dict[bytes, bytes | None] | None = None,
) -> Iterator[tuple[bytes, bytes]]:
    """(key, raw value) with lo <= key < hi in key order, over one state.

    ``top`` is a transaction's own writes, laid over everything else.
    """
    overlay, reader, txn = _overlay(store, lo, hi)
    try:
        if top:
            for k, v in top.items():
                if (lo is None or k >= lo) and (hi is None or k < hi):
                    overlay[k] = v
        upper = sorted(overlay.items())
        yield from merge(upper, store._base.iter_range(txn, lo, hi))  # type: ignore[arg-type]
    finally:
        reader.__exit__(None, None, None)  # type: ignore[attr-defined]


def count_keys(store: Store) -> int:
    """Number of live keys: the base image's count, corrected by the
    memtables' puts of new keys and deletes of existing ones."""
    overlay, reader, txn = _overlay(store, None, None)
    try:
        data = store._base._data
        n = int(txn.stat(data)["entries"])  # type: ignore[attr-defined]
        for k, v in overlay.items():
            in_base = txn.get(k, db=data) is not None  # type: ignore[attr-defined]
            if v is None and in_base:
                n -= 1
            elif v is not None and not in_base:
                n += 1
        return n
    except lmdb.Error as exc:
        if store._closed:  # close() in another thread took the environment
            raise ClosedError(f"store {store.path} was closed during len()") from exc
        raise
    finally:
        reader.__exit__(None, None, None)  # type: ignore[attr-defined]


def merge(
    upper: list[tuple[bytes, bytes | None]], base: Iterator[tuple[bytes, bytes]]
) -> Iterator[tuple[bytes, bytes]]:
    """Merge the sorted overlay (None = deleted) over the sorted base."""
    i, n = 0, len(upper)
    for bk, bv in base:
        while i < n and upper[i][0] < bk:
            k, v = upper[i]
            i += 1
            if v is not None:
                yield k, v
        if i < n and upper[i][0] == bk:
            k, v = upper[i]
            i += 1
            if v is not None:
                yield k, v
            continue
        yield bk, bv
    while i < n:
        k, v = upper[i]
        i += 1
        if v is not None:
            yield k, v
