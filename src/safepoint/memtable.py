"""The memtable: every change since the last checkpoint.

A deleted key stays in the memtable as a tombstone (value None) so that it
hides the base image's value until the checkpoint folds the delete in.
During a checkpoint the old memtable is *frozen* (never changed again) and a
new one takes the writes; reads consult new, then frozen, then the base.

The entries live in a plain dict; key order is built only when an ordered
read asks for it (docs/design.md, "The memtable").  Because no key ever
leaves the dict (a delete stores a tombstone), the dict's insertion order
says which keys are new since the sorted list was last built: exactly those
past its length.  Writes therefore cost one dict store, and an ordered read
sorts only the keys added since the previous one, then merges them in.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterator, Mapping
from itertools import islice
from typing import Any

from . import records
from .base_entries import stored_entries

TOMBSTONE = None
_MISSING = object()
# Per-entry bookkeeping a Python dict costs beyond the payload (two object
# headers and a slot), counted so that stats() shows memory, not just bytes.
_ENTRY_OVERHEAD_BYTES = 64
# Up to this many new keys are inserted one by one into a copy of the sorted
# list (a memmove each); more are merged by a sort of the two sorted runs,
# which compares every neighbour once.
_INSORT_MAX = 64


class Memtable:
    """Map of key -> value bytes, or None for a delete; ordered on demand.

    Not locked: the store serialises writers and takes its mem lock around
    every ordered read of a memtable that writers may still change (a frozen
    one has no writers).  Single-key reads (``lookup`` or ``_data.get``) are
    safe concurrently with a writer under CPython.
    """

    __slots__ = ("_data", "_sorted", "_frozen", "last_lsn", "get")

    def __init__(self) -> None:
        # Values are bytes or None; typed Any for the store's lock-free
        # ``get(key, sentinel)`` reads.
        self._data: dict[bytes, Any] = {}
        # get(key, default): the dict's own method, so a read costs one C
        # call (None for a tombstone, default when absent).
        self.get = self._data.get
        # The first len(_sorted) keys of _data, sorted; None until an ordered
        # read needs them, so a memtable that is only written and checkpointed
        # never pays for a second index.
        self._sorted: list[bytes] | None = None
        self._frozen = False
        self.last_lsn = 0

    def __len__(self) -> int:
        return len(self._data)

    @property
    def payload_bytes(self) -> int:
        """Bytes of keys and values held, plus a per-entry estimate of overhead.

        Computed on demand (a C-speed pass over the dict) rather than kept
        up to date by every put: only stats() asks.
        """
        data = self._data
        values = sum(map(len, filter(None, data.values())))
        return len(data) * _ENTRY_OVERHEAD_BYTES + sum(map(len, data)) + values

    @property
    def frozen(self) -> bool:
        """True between freeze() and thaw(): writes raise RuntimeError."""
        return self._frozen

    def freeze(self) -> None:
        """Refuse every write until thaw(): the checkpoint freezes the memtable
        it folds, so its order may be built without the GIL (the native one)."""
        self._frozen = True

    def thaw(self) -> None:
        """Allow writes again (a failed checkpoint puts newer entries back)."""
        self._frozen = False

    def lookup(self, key: bytes) -> tuple[bool, bytes | None]:
        """(found, value): found is False if the memtable says nothing."""
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            return False, None
        return True, value

    def put(self, key: bytes, value: bytes | None) -> None:
        """Set ``key`` to ``value`` (None records a delete)."""
        if self._frozen:
            raise RuntimeError("memtable is frozen")
        self._data[key] = value

    def update(self, entries: Mapping[bytes, bytes | None]) -> None:
        """Set every key of ``entries`` to its value (None: a delete)."""
        if self._frozen:
            raise RuntimeError("memtable is frozen")
        self._data.update(entries)

    def apply_commit(self, writes: Mapping[bytes, bytes | None] | None, payload: bytes) -> None:
        """Apply one committed transaction: ``writes`` and ``payload`` say the
        same (payload is ``records.encode_writes(writes)``); each memtable
        uses the cheaper form, here the dict.  ``writes`` None: the payload
        alone (its ops in order, a key that comes twice included)."""
        if self._frozen:
            raise RuntimeError("memtable is frozen")
        if writes is None:
            for _kind, key, value in records.decode_payload(payload):
                self._data[key] = value
            return
        self._data.update(writes)

    def apply_records(self, buf: object, start: int, stop: int) -> None:
        """Apply every op of the whole, validated records in ``buf[start:stop]``
        (recovery's replay of a span ``records.scan_span`` reported)."""
        if self._frozen:
            raise RuntimeError("memtable is frozen")
        records.apply_records(buf, start, stop, self._data)

    def fold_batches(self, step: int) -> Iterator[tuple[list[tuple[bytes, bytes]], list[bytes]]]:
        """Every entry in key order, for a checkpoint, in batches of at most
        ``step`` keys: per batch the puts as (key, base image entry) and the
        deleted keys, each ascending.  For a frozen memtable (no writers)."""
        keys = self._ordered()
        get = self._data.__getitem__
        for lo in range(0, len(keys), step):
            chunk = keys[lo : lo + step]
            values = list(map(get, chunk))
            if None in values:
                live = [(k, v) for k, v in zip(chunk, values, strict=True) if v is not None]
                deletes = [k for k, v in zip(chunk, values, strict=True) if v is None]
                chunk, values = [k for k, _ in live], [v for _, v in live]
            else:
                deletes = []
            yield stored_entries(chunk, values), deletes

    def _ordered(self) -> list[bytes]:
        """Every key in order.

        A list once returned is never changed in place (a newer one replaces
        it), so a caller may slice it without a lock.  Safe beside a writer
        under the GIL: listing a dict's keys is one C call, so it sees a
        prefix of the insertion order, which is all ``_sorted`` promises.
        """
        data = self._data
        keys = self._sorted
        if keys is None:
            keys = sorted(data)
        elif len(keys) != len(data):
            # Keys are only ever added and a dict keeps insertion order: the
            # new ones are those past the sorted prefix.
            new = list(islice(data, len(keys), None))
            new.sort()
            if len(new) <= _INSORT_MAX:
                keys = keys.copy()
                for key in new:
                    insort(keys, key)
            else:
                # Two sorted runs: Timsort merges them in one linear pass.
                keys = keys + new
                keys.sort()
        else:
            return keys
        self._sorted = keys
        return keys

    def items(
        self, start: bytes | None = None, stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """Entries with start <= key < stop, in key order, tombstones included.

        The keys in range are fixed when this is called; their values are
        read as the iterator advances.
        """
        keys = self._ordered()
        lo = 0 if start is None else bisect_left(keys, start)
        hi = len(keys) if stop is None else bisect_left(keys, stop)
        data = self._data
        return ((key, data[key]) for key in keys[lo:hi])

    def snapshot(
        self, start: bytes | None = None, stop: bytes | None = None
    ) -> list[tuple[bytes, bytes | None]]:
        """A copy of a range, for an iterator that must not see later writes."""
        return list(self.items(start, stop))


def new_memtable() -> Memtable:
    """An empty memtable of the backend in use: the native one
    (``safepoint._sp_memtable``, docs/design.md "The memtable") on the native
    backend, this module's dict-based one, its oracle, on the Python one."""
    return _MEMTABLE()


_MEMTABLE: Callable[[], Memtable] = Memtable
if records.BACKEND == "native":
    from ._sp_memtable import NativeMemtable

    _MEMTABLE = NativeMemtable
