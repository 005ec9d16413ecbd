"""The write-ahead log writer: appends records, group commit, rollover.

Write path (docs/design.md): a committer calls ``append(payload)`` under the
store's write lock, which only assigns the LSN and queues the payload; after
releasing that lock it calls ``flush(lsn)``.  The first committer to find no
flush in progress becomes the leader: it takes every queued payload, encodes
the records, writes them with one pwrite per segment and (sync="always")
one fdatasync, then wakes the followers whose records it carried.  A
committer waits at most for the flush in flight plus the one carrying its
record.

With real files and the native codec, the leader's loop (waiting, encoding,
pwrite, fdatasync) runs in C without the GIL (wal_native.py, native/sp_wal.c);
the Python protocol below is its oracle and runs for every other file system.

Every record carries ``durable_lsn``: the highest LSN known to be on disk when
the leader wrote it.  Recovery uses it to tell a torn tail (later valid
records were written before the damaged one was durable) from damage in the
middle of the log (a later record proves the damaged one had been synced).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from collections.abc import Callable
from typing import NoReturn

from . import records, wal_native
from .errors import ClosedError, StoreFailedError
from .format import (
    MAX_PAYLOAD_SIZE,
    MIN_PAYLOAD_SIZE,
    PREPARED_SEGMENT_NAME,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
)
from .fs import File, FileSystem
from .segment import SegmentRef, encode_header, segment_path
from .wal_group import PythonGroupCommit
from .wal_native import NativeGroupCommit

SYNC_MODES = ("always", "interval", "none")
DEFAULT_SEGMENT_BYTES = 16 << 20  # zero-filled at creation: keep new stores cheap


class WalWriter(PythonGroupCommit):
    """Appends records to the segments of one store's ``wal/`` directory.

    Thread-safe.  ``append`` must be called in LSN order by the caller's write
    lock (the store's); ``flush`` may be called by any thread.
    """

    def __init__(
        self,
        fs: FileSystem,
        wal_dir: str,
        store_id: bytes,
        *,
        next_lsn: int,
        segments: list[SegmentRef],
        tail_offset: int | None,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        sync: str = "always",
        sync_interval: float = 1.0,
        on_failure: Callable[[BaseException], None] | None = None,
        engine: str = "auto",
    ) -> None:
        """Open the log for appending.

        ``segments`` are the segments on disk, oldest first; if
        ``tail_offset`` is given, appending continues in the last of them at
        that offset (recovery has validated everything before it and zeroed
        everything after).  Otherwise a new segment starting at ``next_lsn``
        is created durably before this returns.

        ``engine`` picks the group-commit loop: "native" (C, without the
        GIL), "python" (the oracle), or "auto": native for real files when
        the native codec is active.
        """
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, not {sync!r}")
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        if engine not in ("auto", "native", "python"):
            raise ValueError(f"engine must be 'auto', 'native' or 'python', not {engine!r}")
        self._fs = fs
        self._dir = wal_dir
        self._store_id = store_id
        self._seed = records.store_seed(store_id)
        self._segment_bytes = segment_bytes
        self.sync_mode = sync
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        # A new leader waits here, briefly, for committers that are about to
        # queue (see _gather); appends and flush entries and exits wake it.
        self._gather_cond = threading.Condition(self._lock)
        self._gathering = False
        self._in_flush = 0  # threads inside flush(), leader included
        self._sync_s = 0.0  # moving average of one fdatasync's duration
        self._fsyncs = 0
        self._pending: list[tuple[int, int, bytes]] = []  # lsn, time_ns, payload
        self._prepared_here = False  # prepared.tmp zero-filled by this process
        self._next_lsn = next_lsn
        self._written_lsn = next_lsn - 1
        self._synced_lsn = next_lsn - 1
        self._dirty: list[File] = []  # written, not yet synced, in write order
        self._flushing = False
        self._failed: BaseException | None = None
        self._closed = False
        self.bytes_appended = 0
        self.segments = list(segments)
        self._prepare_thread: threading.Thread | None = None
        self._prepare_error: BaseException | None = None
        if tail_offset is not None and self.segments:
            path = self.segments[-1].path
            self._file = fs.open(path, write=True)
            try:
                # Recovery may have read the last records from the page cache
                # (a killed process wrote them and died before its fdatasync).
                # Our records will claim everything below next_lsn is durable
                # (durable_lsn), so make it so before writing any.
                self._file.sync_data()
                self._alloc = max(self._file.size(), tail_offset)
            except BaseException:
                self._file.close()  # the open fails: nobody else would close it
                raise
            self._offset = tail_offset
        else:
            if self.segments:
                # Same reason: the records before next_lsn must be on disk
                # before a new segment (itself proof of that) exists.
                last = fs.open(self.segments[-1].path, write=True)
                try:
                    last.sync_data()
                finally:
                    last.close()
            self._file, self._alloc = self._create_segment(next_lsn, segment_bytes)
            self._offset = SEGMENT_HEADER_SIZE
        self._end = self._offset  # _offset: next write; _end: after the queue
        self._native: NativeGroupCommit | None = None
        try:
            if self._wants_native(engine):
                self._native = NativeGroupCommit(self._seed, self._file.fd, self._offset, next_lsn)
        except BaseException:
            self._file.close()
            raise
        self._prepare_requested = False
        self._interval_thread: threading.Thread | None = None
        if sync == "interval":
            self._interval = sync_interval
            self._stop = threading.Event()
            self._interval_thread = threading.Thread(
                target=self._interval_loop, name="safepoint-wal-sync", daemon=True
            )
            self._interval_thread.start()

    def _wants_native(self, engine: str) -> bool:
        native_ok = wal_native.AVAILABLE and type(self._file) is File
        if engine == "native" and not native_ok:
            raise ValueError("engine='native' needs the native core and a real file system")
        if engine == "auto":
            return native_ok and records.BACKEND == "native"
        return engine == "native"

    # --- appending ----------------------------------------------------------

    @property
    def next_lsn(self) -> int:
        """The LSN the next append will get."""
        return self._next_lsn

    @property
    def durable_lsn(self) -> int:
        """Every record at or below this LSN is on disk."""
        if self._native is not None:
            return self._native.synced_lsn()
        return self._synced_lsn

    @property
    def fsyncs(self) -> int:
        """fdatasyncs made for records so far (group commit shares them)."""
        if self._native is not None:
            return self._native.state().fsyncs
        return self._fsyncs

    def yield_to_committers(self, step_s: float, max_s: float) -> float | None:
        """``NativeGroupCommit.yield_to_committers``; None on the Python
        engine, which cannot tell when a committer needs the GIL."""
        if self._native is None:
            return None
        return self._native.yield_to_committers(step_s, max_s)

    @property
    def engine(self) -> str:
        """Which group-commit loop runs: "native" or "python"."""
        return "python" if self._native is None else "native"

    @property
    def failed(self) -> BaseException | None:
        """The I/O error that failed the log, if one did."""
        if self._failed is None and self._native is not None:
            return self._native.error(self._dir)
        return self._failed

    def append(self, payload: bytes) -> int:
        """Queue one record; return its LSN.  Nothing is written yet.

        Rolls over to a new segment first if the record does not fit (an
        empty segment is zero-filled to fit it instead); a full disk there
        (ENOSPC) raises OSError and leaves the log unchanged, so
        the caller's commit fails cleanly and later commits may succeed.
        """
        size = RECORD_HEADER_SIZE + len(payload)
        with self._lock:
            if self._closed or self._failed is not None:
                self._check_usable()
            if self._end + size > self._alloc:
                if self._end > SEGMENT_HEADER_SIZE:
                    self._rollover(size)
                else:
                    self._extend_empty_segment(self._end + size)
            lsn = self._next_lsn
            native = self._native
            if native is not None:
                if type(payload) is bytes:
                    rc = native.append_call(
                        native.handle, lsn, time.time_ns(), payload, len(payload)
                    )
                    rc = rc and native.check_append(rc, lsn, payload)
                else:
                    rc = native.append(lsn, time.time_ns(), payload)
                if rc != 0:
                    self._native_refused()
            else:
                # Refused here, as the native engine does, not in the leader's
                # encode, where a bad payload would fail everyone's flush.
                if not MIN_PAYLOAD_SIZE <= len(payload) <= MAX_PAYLOAD_SIZE:
                    raise ValueError(wal_native.payload_size_error(len(payload)))
                records.check_payload(payload)
                self._pending.append((lsn, time.time_ns(), payload))
            self._next_lsn = lsn + 1
            self._end += size
            self.bytes_appended += size
            if self._gathering:
                self._gather_cond.notify()
            if not self._prepare_requested and self._end * 2 > self._alloc:
                # Half way through the first segment this process writes (a
                # new store's, or the one a reopen continues): zero-fill the
                # next one now, so neither a new store nor a short run pays
                # for it up front.  After a rollover, _rollover starts it.
                self._prepare_requested = True
                self._start_prepare()
            return lsn

    def flush(self, lsn: int, *, durable: bool | None = None) -> None:
        """Return once record ``lsn`` is written to the OS, and on disk if
        ``durable`` (default: sync="always").  Shares the write and the
        fdatasync with every committer queued at the same time.

        Raises StoreFailedError if a write or fdatasync failed: the log
        refuses all further work until the store is reopened.  A
        KeyboardInterrupt (or SystemExit) striking this call's own write or
        fdatasync fails the log too, and is re-raised as itself.
        """
        if durable is None:
            durable = self.sync_mode == "always"
        native = self._native
        if native is not None:
            if native.flush_call(native.handle, lsn, 1 if durable else 0) != 0:
                with self._lock:
                    self._native_refused()
            return
        self._flush_python(lsn, durable)

    def _fail(self, exc: BaseException) -> None:
        self._failed = exc
        if self._native is not None:
            self._native.fail(exc.errno if isinstance(exc, OSError) and exc.errno else errno.EIO)
        if self._on_failure is not None:
            self._on_failure(exc)

    def _native_refused(self) -> NoReturn:
        """After a native engine call returned a failure (lock held): adopt
        its I/O error as this log's and raise what the Python loop would."""
        assert self._native is not None
        if self._failed is None:
            exc = self._native.error(self.segments[-1].path if self.segments else self._dir)
            if exc is not None:
                self._fail(exc)
        self._check_usable()
        raise ClosedError("wal: the log is closed")

    def _check_usable(self) -> None:
        if self._closed:
            raise ClosedError("wal: the log is closed")
        if self._failed is not None:
            raise StoreFailedError(
                f"wal: an earlier write or fsync failed ({self._failed}); "
                "reopen the store to recover"
            ) from self._failed

    # --- segments ------------------------------------------------------------

    def _rollover(self, record_size: int) -> None:
        """Finish the current segment durably, then start the next one.

        Called with the lock held and no flush running (we wait for it).  The
        old segment is complete and fdatasynced before anything is written to
        the new one, so after any crash a later segment never holds records
        while an earlier one lacks some: a gap there is always damage.
        """
        if self._native is not None:
            if self._native.flush(self._next_lsn - 1, True) != 0:
                self._native_refused()
        else:
            while self._flushing:
                self._cond.wait()
            self._check_usable()
            self._lead_flush(durable=True, release=False)
            if self._failed is not None and not isinstance(self._failed, Exception):
                raise self._failed  # an interrupt stays an interrupt (see flush)
        self._check_usable()
        size = max(self._segment_bytes, SEGMENT_HEADER_SIZE + record_size)
        try:
            new_file, alloc = self._create_segment(self._next_lsn, size)
        except OSError as exc:
            named = self._fs.exists(segment_path(self._dir, self._next_lsn))
            if exc.errno in (errno.ENOSPC, errno.EDQUOT) and not named:
                raise  # a full disk: the commit fails cleanly, the log stays usable
            # Once the empty segment has its name (the directory fsync
            # failed), the next record must not go into the old segment with
            # the LSN that name claims: recovery would see it repeated.
            # A failed fsync or write proves nothing when retried (design.md,
            # "Failures"): fail the log as a failed record fsync does.
            self._fail(exc)
            raise StoreFailedError(
                f"wal: creating segment {self._next_lsn} failed ({exc}); reopen the store to recover"
            ) from exc
        if self._native is not None:
            rc = self._native.switch(new_file.fd, SEGMENT_HEADER_SIZE)
            if rc != 0:  # nothing can be pending: appends wait for our lock
                new_file.close()
                err = OSError(errno.EIO, f"wal: switching segments: {wal_native.status_name(rc)}")
                self._fail(err)
                raise StoreFailedError(f"wal: {err}; reopen the store to recover") from err
        old = self._file
        self._file, self._alloc = new_file, alloc
        self._offset = self._end = SEGMENT_HEADER_SIZE
        old.close()
        # A log that filled a segment is in a long run: zero-fill the next
        # one now, not half way through this one.  At half way, a bulk load
        # (a segment in ~30 ms) waited for the zero-fill and its fsync at the
        # rollover: 3-40 ms of each, and was 1.1-1.3x slower in all
        # (docs/design.md, "Segments").
        self._prepare_requested = True
        self._start_prepare()

    def _extend_empty_segment(self, size: int) -> None:
        """Zero-fill the empty current segment up to ``size`` bytes.

        A record too big for an empty segment goes into it, not into a new
        one; its room is allocated here, before the record is queued, so that
        a full disk fails this append cleanly (as in a rollover) and never
        the record's write.  Called with the lock held; no record is queued.
        """
        try:
            self._file.zero_fill(self._alloc, size)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # zeros past the end read as an empty tail: nothing to undo
            self._fail(exc)
            raise StoreFailedError(
                f"wal: extending segment {self.segments[-1].first_lsn} failed ({exc}); "
                "reopen the store to recover"
            ) from exc
        self._alloc = size

    def _create_segment(self, first_lsn: int, size: int) -> tuple[File, int]:
        """Make a durable, zero-filled segment starting at ``first_lsn``.

        Uses the segment prepared in the background when it is big enough.
        Crash-safe at every step: before the rename the file is only
        ``prepared.tmp``, which recovery ignores; after it, a segment with a
        valid header and a zero tail, which reads as an empty segment.
        """
        self._wait_prepared()
        prepared = os.path.join(self._dir, PREPARED_SEGMENT_NAME)
        path = segment_path(self._dir, first_lsn)
        f = self._fs.open(prepared, write=True, create=True)
        try:
            # A prepared.tmp left by an earlier process may hold anything.
            have = f.size() if self._prepared_here else 0
            self._prepared_here = False
            if have < size:
                f.truncate(0)
                f.zero_fill(0, size)
                have = size
            f.write_at(encode_header(self._store_id, first_lsn), 0)
            f.sync()
            self._fs.rename(prepared, path)
            self._fs.sync_dir(self._dir)
        except BaseException:
            f.close()
            raise
        self.segments.append(SegmentRef(first_lsn, path))
        return f, have

    def _start_prepare(self) -> None:
        """Zero-fill the next segment on a background thread, ahead of need."""
        if self._prepare_thread is not None:
            return
        self._prepare_thread = threading.Thread(
            target=self._prepare, name="safepoint-wal-prepare", daemon=True
        )
        self._prepare_thread.start()

    def _prepare(self) -> None:
        prepared = os.path.join(self._dir, PREPARED_SEGMENT_NAME)
        try:
            f = self._fs.open(prepared, write=True, create=True)
            try:
                f.truncate(0)
                f.zero_fill(0, self._segment_bytes)
                f.sync()
            finally:
                f.close()
            self._prepared_here = True
        except OSError as exc:
            # Not fatal: the rollover that needs it retries and reports.
            self._prepare_error = exc

    def _wait_prepared(self) -> None:
        t = self._prepare_thread
        if t is not None:
            t.join()
        self._prepare_thread = None
        self._prepare_error = None

    def retire_through(self, lsn: int) -> list[str]:
        """Delete segments whose records are all at or below ``lsn``.

        Called after a checkpoint at ``lsn`` is durable.  The segment being
        written is never retired.  Returns the removed paths.
        """
        with self._lock:
            removable = []
            for i, seg in enumerate(self.segments[:-1]):
                if self.segments[i + 1].first_lsn - 1 <= lsn:
                    removable.append(seg)
                else:
                    break
            self.segments = self.segments[len(removable) :]
        try:
            for seg in removable:
                self._fs.remove(seg.path)
            if removable:
                self._fs.sync_dir(self._dir)
        except OSError as exc:
            # Retiring is safe to repeat, but a directory fsync that fails
            # says the file system is in trouble: refuse writes like any
            # other failed fsync until a reopen has recovered from the disk.
            with self._lock:
                self._fail(exc)
            raise StoreFailedError(
                f"wal: retiring segments failed ({exc}); reopen the store to recover"
            ) from exc
        return [s.path for s in removable]

    # --- background sync and closing --------------------------------------------

    def _interval_loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.sync()
            except (StoreFailedError, ClosedError):
                return

    def sync(self) -> None:
        """Make every appended record durable now, whatever the sync mode."""
        with self._lock:
            target = self._next_lsn - 1
        self.flush(target, durable=True)

    def abandon(self) -> None:
        """Drop the log as a killed process would: what is queued is never
        written, nothing more is synced, the files are closed.  For tests."""
        if self._interval_thread is not None:
            self._stop.set()
            self._interval_thread.join()
        with self._lock:
            self._closed = True
            self._pending = []
            if self._native is not None:
                self._native.abandon()
            self._wait_prepared()
            self._file.close()

    def close(self) -> None:
        """Write and sync what is queued, then close the files.

        Idempotent.  If the log has failed, closes without writing.
        """
        if self._closed:
            return
        if self._interval_thread is not None:
            self._stop.set()
            self._interval_thread.join()
        try:
            if self.failed is None:
                self.sync()
        finally:
            with self._lock:
                self._closed = True
                if self._native is not None:
                    # No leader may touch the descriptor once it is closed.
                    self._native.abandon()
                self._wait_prepared()
                self._file.close()
