"""Group commit in Python: the oracle of the native engine (native/sp_wal.c).

``WalWriter`` (wal.py) runs this loop for every file system but real files
with the native codec: the fault-injecting ones of ``safepoint.testing``,
and ``SAFEPOINT_BACKEND=python``.  tests/test_wal_native.py and the
``wal_engine`` fuzz target hold the two loops to the same records and the
same failures.  The protocol (docs/design.md, "Write path"): the first
committer to find no flush in progress leads; for a durable flush it first
gathers committers about to queue; it takes every queued payload, encodes
the records, writes them with one pwrite per segment, fdatasyncs, and wakes
the followers.  A failed write or fdatasync fails the log for good.

The state lives on the ``WalWriter`` (this is its base class): the lock and
conditions, the queue, the LSNs written and synced, the files written but
not synced.
"""

from __future__ import annotations

import threading
import time

from . import records
from .errors import StoreFailedError
from .fs import File


class PythonGroupCommit:
    """The leader/follower loop of ``WalWriter.flush`` in Python."""

    # Set by WalWriter.__init__; declared for the type checker.
    _lock: threading.Lock
    _cond: threading.Condition
    _gather_cond: threading.Condition
    _gathering: bool
    _in_flush: int
    _sync_s: float
    _fsyncs: int
    _pending: list[tuple[int, int, bytes]]
    _seed: int
    _written_lsn: int
    _synced_lsn: int
    _dirty: list[File]
    _flushing: bool
    _failed: BaseException | None
    _file: File
    _offset: int
    _end: int

    def _fail(self, exc: BaseException) -> None:
        raise NotImplementedError  # WalWriter's

    def _flush_python(self, lsn: int, durable: bool) -> None:
        """WalWriter.flush when no native engine runs."""
        with self._cond:
            self._in_flush += 1
            try:
                self._flush_locked(lsn, durable)
            finally:
                self._in_flush -= 1
                if self._gathering:
                    self._gather_cond.notify()

    def _flush_locked(self, lsn: int, durable: bool) -> None:
        while True:
            if self._failed is not None:
                raise StoreFailedError(
                    f"wal: an earlier write or fsync failed ({self._failed}); "
                    "reopen the store to recover"
                ) from self._failed
            done = self._synced_lsn if durable else self._written_lsn
            if done >= lsn:
                return
            if not self._flushing:
                break
            self._cond.wait()
        self._flushing = True
        try:
            if durable:
                self._gather()
            self._lead_flush(durable)
        finally:
            self._flushing = False
            self._cond.notify_all()
        if self._failed is not None:
            if not isinstance(self._failed, Exception):
                # Ctrl-C or SystemExit struck this leader's I/O: the log
                # fails all the same, but the interrupt stays what it is
                # in the thread it struck (``except Exception`` must not
                # swallow it).  Other committers get StoreFailedError.
                raise self._failed
            raise StoreFailedError(
                f"wal: write or fsync failed ({self._failed}); reopen the store to recover"
            ) from self._failed

    def _gather(self) -> None:
        """Before a durable flush, wait briefly for committers about to queue.

        Committers in a loop come back while the previous fdatasync's
        followers are still waking up; a leader that went at once would carry
        only half of them and leave the rest for the next fdatasync.  So a new
        leader waits until every thread inside flush() has a record queued,
        for at most half an fdatasync (PostgreSQL's commit_delay, made
        adaptive).  A lone committer never waits: it is the only thread in
        flush() and its record is queued.
        """
        if self._in_flush <= len(self._pending) or self._sync_s <= 0.0:
            return
        deadline = time.perf_counter() + min(self._sync_s * 0.5, 0.002)
        self._gathering = True
        try:
            while self._in_flush > len(self._pending) and self._failed is None:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._gather_cond.wait(left)
        finally:
            self._gathering = False

    def _lead_flush(self, durable: bool, *, release: bool = True) -> None:
        """Write (and sync) everything queued.  Called with the lock held; the
        lock is released around the I/O (unless ``release`` is False, as in a
        rollover) so appends continue meanwhile."""
        batch, self._pending = self._pending, []
        file, offset = self._file, self._offset
        hint = self._synced_lsn
        upto = batch[-1][0] if batch else self._written_lsn
        to_sync = list(self._dirty) if durable else []
        self._offset = self._end
        if release:
            self._lock.release()
        try:
            if batch:
                data = records.encode_batch(self._seed, hint, batch)
                file.write_at(data, offset)
                if file not in to_sync:
                    to_sync.append(file)
            if durable:
                t0 = time.perf_counter()
                for f in to_sync:
                    f.sync_data()
                    self._fsyncs += 1
                self._sync_s = 0.8 * self._sync_s + 0.2 * (time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - any failure fails the log
            if release:
                self._lock.acquire()
            self._fail(exc)
            return
        if release:
            self._lock.acquire()
        self._written_lsn = max(self._written_lsn, upto)
        if durable:
            self._synced_lsn = self._written_lsn
            self._dirty = [f for f in self._dirty if f not in to_sync]
        elif batch and file not in self._dirty:
            self._dirty.append(file)
