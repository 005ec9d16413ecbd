"""Write transactions: ``with db.transaction() as txn: ...``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import ClosedError
from .format import MAX_KEY_SIZE
from .keys import key_range, to_key
from .records import BACKEND
from .values import BytesCodec

if BACKEND == "native":
    from ._sp_batch import bytes_pairs as _bytes_pairs_c
else:
    _bytes_pairs_c = None

if TYPE_CHECKING:
    from types import TracebackType

    from .store import Store


_BYTES_ONLY = {bytes}


class Transaction:
    """One atomic, serializable write transaction.

    Holds the store's write lock from ``__enter__`` until its record is
    queued, so other writers wait while it runs; keep the block short.
    Reads see the transaction's own writes over the committed state.
    """

    __slots__ = ("_store", "_writes", "_state", "lsn")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._writes: dict[bytes, bytes | None] = {}
        self._state = "new"
        self.lsn: int | None = None  # the commit's LSN, once committed

    def __enter__(self) -> Transaction:
        if self._state != "new":
            raise RuntimeError("a transaction can be entered only once")
        self._store._begin_write()
        self._state = "open"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self._store
        try:
            if exc_type is None:
                self.lsn = store._append_locked(self._writes)
        finally:
            self._state = "done"
            self._writes = {}
            store._end_write()
        if self.lsn is not None:
            store._finish(self.lsn)

    def _check(self) -> None:
        if self._state != "open":
            raise ClosedError("transaction is not open (use it inside its with-block)")

    # --- writes ---------------------------------------------------------------

    def put(self, key: Any, value: Any) -> None:
        """Set ``key`` to ``value`` when the transaction commits."""
        self._check()
        self._writes[to_key(key)] = self._store._encode(value)

    def delete(self, key: Any) -> None:
        """Remove ``key`` when the transaction commits; no error if missing."""
        self._check()
        k = to_key(key)
        # Decide by the committed state, not by this transaction's writes: a
        # tombstone is needed exactly when a committed value must be hidden.
        if self._store._lookup(k) is not None:
            self._writes[k] = None
        else:
            self._writes.pop(k, None)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Put every (key, value) of ``other`` (a mapping or pairs), then of
        ``kwargs``, in order: like calling ``put`` for each."""
        self._check()
        items = other.items() if hasattr(other, "items") else other
        if type(self._store._codec) is BytesCodec:
            pairs = items if type(items) is list else list(items)
            if self._put_bytes_pairs(pairs):
                items = ()
            else:
                items = pairs
        for k, v in items:
            self.put(k, v)
        for k, v in kwargs.items():
            self.put(k, v)

    def _put_bytes_pairs(self, pairs: list[Any]) -> bool:
        """Put ``pairs`` at C speed if every key and value is ``bytes`` and
        every key has a valid length; False (nothing done) otherwise, for
        ``put`` to convert or reject them one by one.  A bulk load's per-put
        cost is mostly these checks and one dict update; the native twin
        (``_sp_batch.bytes_pairs``) does both in one C loop."""
        batch = None if _bytes_pairs_c is None else _bytes_pairs_c(pairs)
        if batch is None:
            try:
                batch = dict(pairs)
            except (TypeError, ValueError):  # an unhashable key, or not pairs
                return False
            if (
                set(map(type, batch)) != _BYTES_ONLY
                or set(map(type, batch.values())) != _BYTES_ONLY
            ):
                return False
            lengths = set(map(len, batch))
            if lengths and not (min(lengths) > 0 and max(lengths) <= MAX_KEY_SIZE):
                return False
        if self._writes:
            self._writes.update(batch)
        else:
            self._writes = batch  # the common case: one update fills the transaction
        return True

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self._check()
        k = to_key(key)
        if self._raw(k) is None:
            raise KeyError(key)
        self.delete(k)

    # --- reads ------------------------------------------------------------------

    def _raw(self, k: bytes) -> bytes | None:
        if k in self._writes:
            return self._writes[k]
        return self._store._lookup(k)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value as this transaction sees it (its own writes first)."""
        self._check()
        raw = self._raw(to_key(key))
        return default if raw is None else self._store._decode(raw)

    def __getitem__(self, key: Any) -> Any:
        self._check()
        raw = self._raw(to_key(key))
        if raw is None:
            raise KeyError(key)
        return self._store._decode(raw)

    def __contains__(self, key: object) -> bool:
        self._check()
        return self._raw(to_key(key)) is not None

    def items(
        self, prefix: Any = None, *, start: Any = None, stop: Any = None
    ) -> Iterator[tuple[bytes, Any]]:
        """(key, value) in key order, this transaction's writes included."""
        self._check()
        lo, hi = key_range(prefix, start, stop)
        decode = self._store._decode
        for k, v in self._store._snapshot_iter(lo, hi, dict(self._writes)):
            yield k, decode(v)

    def keys(self, prefix: Any = None, *, start: Any = None, stop: Any = None) -> Iterator[bytes]:
        """Keys in order, this transaction's writes included."""
        for k, _ in self.items(prefix, start=start, stop=stop):
            yield k
