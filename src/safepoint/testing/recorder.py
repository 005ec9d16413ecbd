"""The explorer's model: which commits happened, and which were acknowledged.

A workload runs against a ``RecordingStore``: the real store behind a thin
wrapper that, for every commit, notes the trace position when it began and
when it was acknowledged as durable, and keeps the expected state after it
(a plain dict).  Everything else is passed straight to the store.

A commit is acknowledged as durable when it returns with ``sync="always"``;
with the other sync modes, only when a later ``checkpoint()``, ``save()``
or ``close()`` returns.  A commit that raised after its record was queued
(a failed fsync) is "maybe committed": never acknowledged, allowed either
way.  ``save(name)`` remembers the state at the call; ``restore(name)`` is
a change to that whole state, acknowledged when it returns (after a crash
during it, the old state or the restored one).  Single-threaded workloads
only: commit order is call order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..keys import to_key
from ..store import Store
from ..transaction import Transaction


@dataclass
class History:
    """Commits in order and the expected state after each prefix of them."""

    states: list[dict[bytes, bytes]] = field(default_factory=lambda: [{}])
    begun: list[int] = field(default_factory=list)  # trace length as commit i began
    acked: list[int | None] = field(default_factory=list)  # ... as it was acknowledged

    @property
    def commits(self) -> int:
        """How many commits were logged."""
        return len(self.begun)

    def add(self, writes: dict[bytes, bytes | None], begun: int) -> int:
        """Append a commit; returns its number (1-based)."""
        state = dict(self.states[-1])
        for k, v in writes.items():
            if v is None:
                state.pop(k, None)
            else:
                state[k] = v
        return self.add_state(state, begun)

    def add_state(self, state: dict[bytes, bytes], begun: int) -> int:
        """Append a change to a whole new state (a restore); returns its number."""
        self.states.append(state)
        self.begun.append(begun)
        self.acked.append(None)
        return len(self.begun)

    def acknowledge(self, commit: int, at: int) -> None:
        """Commit number ``commit`` was acknowledged durable at trace length ``at``."""
        if self.acked[commit - 1] is None:
            self.acked[commit - 1] = at

    def acknowledge_all(self, at: int, upto: int | None = None) -> None:
        """Every commit so far (or up to ``upto``) is durable from ``at`` on."""
        for i in range(upto if upto is not None else len(self.acked)):
            if self.acked[i] is None:
                self.acked[i] = at

    def bounds(self, point: int) -> tuple[int, int]:
        """(must, may): a crash after ``point`` trace events must keep the
        first ``must`` commits and cannot hold more than the first ``may``."""
        must = 0
        for i, a in enumerate(self.acked):
            if a is not None and a <= point:
                must = i + 1
        may = sum(1 for b in self.begun if b < point)
        return must, may

    def matches(self, state: dict[bytes, bytes]) -> list[int]:
        """Every j such that ``state`` is the state after the first j commits."""
        return [j for j, s in enumerate(self.states) if s == state]


class RecordingStore:
    """A Store whose commits are recorded into a ``History``.

    ``clock`` returns the current trace position (the FaultFS's trace length).
    """

    def __init__(self, store: Store, history: History, clock: Callable[[], int]) -> None:
        self._store = store
        self._history = history
        self._clock = clock
        self._durable_on_return = store.sync_mode == "always"
        self._saved: dict[str, dict[bytes, bytes]] = {}

    @property
    def store(self) -> Store:
        """The real store underneath."""
        return self._store

    def _commit(self, writes: dict[bytes, bytes | None], run: Callable[[], Any]) -> Any:
        store = self._store
        before = store._last_lsn
        begun = self._clock()
        try:
            result = run()
        except BaseException:
            if store._last_lsn > before:
                self._history.add(writes, begun)  # maybe committed
            raise
        if store._last_lsn > before:
            n = self._history.add(writes, begun)
            if self._durable_on_return:
                self._history.acknowledge(n, self._clock())
        return result

    # --- writes --------------------------------------------------------------

    def put(self, key: Any, value: Any) -> None:
        """Store.put, recorded."""
        k = to_key(key)
        self._commit({k: self._store._encode(value)}, lambda: self._store.put(key, value))

    def delete(self, key: Any) -> None:
        """Store.delete, recorded."""
        self._commit({to_key(key): None}, lambda: self._store.delete(key))

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        self._commit({to_key(key): None}, lambda: self._store.__delitem__(key))

    def update(self, other: Any = (), /, **kwargs: Any) -> None:
        """Store.update (one transaction), recorded."""
        with self.transaction() as txn:
            items = other.items() if hasattr(other, "items") else other
            for k, v in items:
                txn.put(k, v)
            for k, v in kwargs.items():
                txn.put(k, v)

    def transaction(self) -> RecordingTransaction:
        """Store.transaction, recorded when it commits."""
        return RecordingTransaction(self, self._store.transaction())

    def checkpoint(self) -> Any:
        """Store.checkpoint; every commit before it is durable when it returns."""
        upto = self._history.commits
        info = self._store.checkpoint()
        self._history.acknowledge_all(self._clock(), upto)
        return info

    def save(self, name: str, **options: Any) -> Any:
        """Store.save; it checkpoints, so every commit before it is durable
        when it returns (also with ``wait=False``)."""
        upto = self._history.commits
        state = self._history.states[-1]
        info = self._store.save(name, **options)
        self._saved[name] = state
        self._history.acknowledge_all(self._clock(), upto)
        return info

    def restore(self, name: str) -> Any:
        """Store.restore, recorded as a change to the saved state."""
        if name not in self._saved:
            raise ValueError(
                f"the explorer can restore only snapshots saved in the workload, not {name!r}"
            )
        history = self._history
        begun = self._clock()
        try:
            info = self._store.restore(name)
        except BaseException:
            history.add_state(dict(self._saved[name]), begun)  # maybe restored
            raise
        n = history.add_state(dict(self._saved[name]), begun)
        history.acknowledge(n, self._clock())
        return info

    def delete_snapshot(self, name: str) -> None:
        """Store.delete_snapshot; the explorer forgets the snapshot."""
        self._store.delete_snapshot(name)
        self._saved.pop(name, None)

    def close(self) -> None:
        """Store.close; every commit is durable when it returns, unless the
        log had failed (a failed store closes without syncing)."""
        self._store.close()
        if self._store._failed is None:
            self._history.acknowledge_all(self._clock())

    # --- everything else --------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def __getitem__(self, key: Any) -> Any:
        return self._store[key]

    def __contains__(self, key: object) -> bool:
        return key in self._store

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def __enter__(self) -> RecordingStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingTransaction:
    """A Transaction whose commit is recorded; reads and writes pass through."""

    def __init__(self, owner: RecordingStore, txn: Transaction) -> None:
        self._owner = owner
        self._txn = txn

    def __enter__(self) -> Transaction:
        self._txn.__enter__()
        return self._txn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._txn.__exit__(exc_type, exc, tb)
            return
        writes = dict(self._txn._writes)
        self._owner._commit(writes, lambda: self._txn.__exit__(None, None, None))
