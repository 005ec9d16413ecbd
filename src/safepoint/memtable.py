"""The memtable: every change since the last checkpoint, in key order.

A deleted key stays in the memtable as a tombstone (value None) so that it
hides the base image's value until the checkpoint folds the delete in.
During a checkpoint the old memtable is *frozen* (never changed again) and a
new one takes the writes; reads consult new, then frozen, then the base.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sortedcontainers import SortedDict

from .format import OP_PUT

TOMBSTONE = None
_MISSING = object()
# Per-entry bookkeeping a Python dict + sorted list costs beyond the payload,
# counted so that checkpoint_bytes-style limits see real memory.
_ENTRY_OVERHEAD_BYTES = 64


class Memtable:
    """Sorted map of key -> value bytes, or None for a delete.

    Not locked: the store serialises writers and snapshots readers.  Single
    key reads are safe concurrently with a writer under CPython.
    """

    __slots__ = ("_data", "payload_bytes", "last_lsn")

    def __init__(self) -> None:
        self._data: SortedDict = SortedDict()
        self.payload_bytes = 0
        self.last_lsn = 0

    def __len__(self) -> int:
        return len(self._data)

    def lookup(self, key: bytes) -> tuple[bool, bytes | None]:
        """(found, value): found is False if the memtable says nothing."""
        data = self._data
        if key in data:
            return True, data[key]
        return False, None

    def put(self, key: bytes, value: bytes | None) -> None:
        """Set ``key`` to ``value`` (None records a delete)."""
        data = self._data
        old = data.get(key, _MISSING)
        if old is _MISSING:
            self.payload_bytes += _ENTRY_OVERHEAD_BYTES + len(key)
        elif old is not None:
            self.payload_bytes -= len(old)
        data[key] = value
        if value is not None:
            self.payload_bytes += len(value)

    def apply(self, ops: Iterable[tuple[int, bytes, bytes | None]], lsn: int) -> None:
        """Apply one transaction's ops, as decoded from its record."""
        for kind, key, value in ops:
            self.put(key, value if kind == OP_PUT else TOMBSTONE)
        self.last_lsn = lsn

    def items(
        self, start: bytes | None = None, stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes | None]]:
        """Entries with start <= key < stop, in key order, tombstones included."""
        data = self._data
        for key in data.irange(start, stop, inclusive=(True, False)):
            yield key, data[key]

    def snapshot(
        self, start: bytes | None = None, stop: bytes | None = None
    ) -> list[tuple[bytes, bytes | None]]:
        """A copy of a range, for an iterator that must not see later writes."""
        return list(self.items(start, stop))
