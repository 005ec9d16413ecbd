"""The store: the public object that ``safepoint.open`` returns.

Layers, newest first: a transaction's own writes, the memtable, the frozen
memtable (during a checkpoint) and the LMDB base image.  Locks:

* ``_write_lock`` serialises write transactions (serializable isolation);
  held from a transaction's start to the moment its record is queued and
  applied, *not* while its fsync runs, so committers share fsyncs;
* ``_mem_lock`` makes applying a transaction, swapping memtables and taking
  an iterator's snapshot atomic with respect to each other.

A single-key read takes no lock: it reads the memtable, the frozen memtable
and the base image in that order, and a checkpoint only ever moves values
towards the base, so it sees either the old or the new value.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from . import records
from .base import BaseImage
from .checkpoint import Checkpointer, CheckpointInfo
from .errors import (
    ClosedError,
    Error,
    ReadOnlyError,
    StoreFailedError,
)
from .format import LMDB_ENGINE, MAX_KEY_SIZE
from .fs import DEFAULT_FS, File, FileSystem
from .keys import key_range, to_key
from .memtable import Memtable, new_memtable
from .recovery import RECOVERY_MODES, RecoveryReport
from .retention import Retention
from .snapshots import RestoreInfo, SnapshotInfo, Snapshots
from .store_open import open_store
from .values import BytesCodec, Codec, resolve
from .view import count_keys, snapshot_items
from .wal import DEFAULT_SEGMENT_BYTES, SYNC_MODES, WalWriter
from .workflows import StepLoop

log = logging.getLogger("safepoint")
_MISSING = object()


class DiskFullError(Error):
    """Raised when a commit fails because the disk is full (ENOSPC/EDQUOT).

    Nothing of the failed commit is applied or logged; commits succeed again
    once space is freed.
    """


class Store(MutableMapping):  # type: ignore[type-arg]
    """A transactional, crash-safe key-value store in one directory.

    Use ``safepoint.open(path, ...)`` to create one.  Thread-safe.
    """

    # Set when the directory is opened (store_open.open_store).
    store_id: bytes
    recovery: RecoveryReport
    _base: BaseImage
    _last_lsn: int

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: str = "always",
        sync_interval: float = 1.0,
        checkpoint_bytes: int | None = 64 << 20,
        checkpoint_interval: float | None = None,
        recovery: str = "tolerate_tail",
        codec: str | Codec | None = None,
        readonly: bool = False,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
        fs: FileSystem | None = None,
        retention: Retention | None = None,
    ) -> None:
        if sync not in SYNC_MODES:
            raise ValueError(f"sync must be one of {SYNC_MODES}, not {sync!r}")
        if sync == "interval" and not sync_interval > 0:
            raise ValueError("sync_interval must be a positive number of seconds")
        if checkpoint_bytes is not None and checkpoint_bytes <= 0:
            raise ValueError("checkpoint_bytes must be positive (or None for no limit)")
        if checkpoint_interval is not None and not checkpoint_interval > 0:
            raise ValueError("checkpoint_interval must be positive seconds (or None)")
        # Checked here too (recovery and the writer check again) so that a bad
        # option fails before the store directory is created.
        if recovery not in RECOVERY_MODES:
            raise ValueError(f"recovery must be one of {RECOVERY_MODES}, not {recovery!r}")
        if segment_bytes < 4096:
            raise ValueError("segment_bytes must be at least 4096")
        self.path = Path(path)
        self.readonly = readonly
        self.sync_mode = sync
        self._codec = resolve(codec)
        self._encode = self._codec.encode
        self._decode = self._codec.decode
        self._fs = fs or DEFAULT_FS
        self._checkpoint_bytes = checkpoint_bytes
        self._write_lock = threading.Lock()
        self._mem_lock = threading.Lock()
        self._txn_owner: int | None = None
        self._closed = False
        self._failed: BaseException | None = None
        self._lock_file: File | None = None
        self._mem = new_memtable()
        self._frozen: Memtable | None = None
        self._wal: WalWriter | None = None
        self._checkpointer: Checkpointer | None = None
        self._ckpt_bytes_mark = 0
        self._ckpt_lsn_mark = 0
        self._open_args = (recovery, sync, sync_interval, segment_bytes, checkpoint_interval)
        self._snapshots = Snapshots(self, retention)
        root = str(self.path)
        try:
            open_store(
                self, root, recovery, sync, sync_interval, segment_bytes, checkpoint_interval
            )
        except BaseException:
            self._release()
            raise

    # --- opening ------------------------------------------------------------------

    def _on_wal_failure(self, exc: BaseException) -> None:
        self._failed = exc
        log.error("safepoint: the log failed (%s); writes are refused until reopen", exc)

    # --- state checks -----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"store {self.path} is closed")

    def _check_writable(self) -> None:
        if self._closed:
            raise ClosedError(f"store {self.path} is closed")
        if self.readonly:
            raise ReadOnlyError(f"store {self.path} was opened readonly=True")
        if self._failed is not None:
            raise StoreFailedError(
                f"store {self.path}: an fsync or write failed ({self._failed}); "
                "writes are refused until the store is reopened"
            )

    # --- single-key reads -----------------------------------------------------------------

    def _lookup(self, key: bytes) -> bytes | None:
        """The raw value of ``key`` (None if absent), newest layer first."""
        v = self._mem.get(key, _MISSING)
        if v is not _MISSING:
            return v  # type: ignore[no-any-return]
        frozen = self._frozen
        if frozen is not None:
            v = frozen.get(key, _MISSING)
            if v is not _MISSING:
                return v  # type: ignore[no-any-return]
        return self._base.get(key)

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is missing."""
        # _check_open, to_key and _lookup inlined: the hot read path.
        if self._closed:
            raise ClosedError(f"store {self.path} is closed")
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = to_key(key)
        raw = self._mem.get(key, _MISSING)
        if raw is _MISSING:
            frozen = self._frozen
            if frozen is None or (raw := frozen.get(key, _MISSING)) is _MISSING:
                raw = self._base.get(key)
        if raw is None:
            return default
        # Bytes come back as they are: skip the codec's call.
        return raw if type(self._codec) is BytesCodec else self._decode(raw)

    # The Python get under its own name: the oracle of the C one installed
    # below, and what that one hands every case it does not handle.
    _get_py = get

    def __getitem__(self, key: Any) -> Any:
        raw = self.get(key, _MISSING)
        if raw is _MISSING:
            raise KeyError(key)
        return raw

    def __contains__(self, key: object) -> bool:
        self._check_open()
        return self._lookup(to_key(key)) is not None

    # --- writes -----------------------------------------------------------------

    def put(self, key: Any, value: Any) -> None:
        """Set ``key`` to ``value`` in a transaction of its own.

        With sync="always" the write is durable when this returns.
        """
        # to_key and the bytes codec skipped for the common case: a commit's
        # own Python time is what 8 threads queue for (the GIL).
        if type(key) is not bytes or not 0 < len(key) <= MAX_KEY_SIZE:
            key = to_key(key)
        if type(value) is not bytes or type(self._codec) is not BytesCodec:
            value = self._encode(value)
        self._commit({key: value})

    def delete(self, key: Any) -> None:
        """Remove ``key``; no error if it is missing."""
        k = to_key(key)
        self._commit({k: None}, only_if_present=True)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __delitem__(self, key: Any) -> None:
        k = to_key(key)
        if not self._commit({k: None}, only_if_present=True):
            raise KeyError(key)

    def update(self, other: Any = (), /, **kwargs: Any) -> None:  # type: ignore[override]
        """Set many keys in one transaction (one record, one fsync)."""
        encode_pairs = records.encode_pairs_or_none
        if type(other) is list and not kwargs and encode_pairs is not None:
            # A bulk load's list of bytes pairs: its payload straight from the
            # list, with no transaction's dict in between (a fifth of a bulk
            # put's time).  Anything else goes through a transaction.
            payload = encode_pairs(other) if type(self._codec) is BytesCodec else None
            if payload is not None:
                self._commit_payload(payload)
                return
        with self.transaction() as txn:
            txn.update(other, **kwargs)

    def transaction(self) -> Transaction:
        """A write transaction: ``with db.transaction() as txn: ...``.

        Atomic and serializable: one write transaction runs at a time, it
        reads its own writes, an exception in the block aborts it (nothing
        logged or applied), and leaving the block commits it; with
        sync="always" it is durable when the block exits.
        """
        from .transaction import Transaction

        return Transaction(self)

    def _begin_write(self) -> None:
        me = threading.get_ident()
        if self._txn_owner == me:
            raise RuntimeError(
                "this thread already has an open transaction; use its txn.put / txn.delete "
                "(nested transactions would deadlock)"
            )
        if self._closed or self.readonly or self._failed is not None:
            self._check_writable()
        self._write_lock.acquire()
        self._txn_owner = me
        if self._failed is not None or self._closed:
            self._end_write()
            self._check_writable()

    def _end_write(self) -> None:
        self._txn_owner = None
        self._write_lock.release()

    def _commit(self, writes: dict[bytes, bytes | None], only_if_present: bool = False) -> bool:
        """Commit ``writes`` as one transaction; False if there was nothing to do."""
        self._begin_write()
        try:
            if only_if_present:
                writes = {k: v for k, v in writes.items() if self._lookup(k) is not None}
            lsn = self._append_locked(writes)
        finally:
            self._end_write()
        if lsn is None:
            return False
        self._finish(lsn)
        return True

    def _commit_payload(self, payload: bytes) -> None:
        """Commit the puts a payload holds as one transaction (see update)."""
        self._begin_write()
        try:
            lsn = self._append_locked(None, payload)
        finally:
            self._end_write()
        assert lsn is not None
        self._finish(lsn)

    def _append_locked(
        self, writes: dict[bytes, bytes | None] | None, payload: bytes | None = None
    ) -> int | None:
        """Queue the record and apply it; the write lock is held.  ``writes``
        may be None when ``payload`` is given (the memtable reads either)."""
        if payload is None:
            if not writes:
                return None
            encode_c = records.encode_writes_or_none
            payload = None if encode_c is None else encode_c(writes)
            if payload is None:
                payload = records.encode_writes(writes)
        wal = self._wal
        assert wal is not None
        lsn: int | None = None
        try:
            lsn = wal.append(payload)
            with self._mem_lock:
                mem = self._mem
                mem.apply_commit(writes, payload)
                mem.last_lsn = lsn
                self._last_lsn = lsn
        except OSError as exc:
            if lsn is None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(
                    f"store {self.path}: disk full while extending the log; the commit was "
                    "not applied (free space and retry)"
                ) from exc
            raise
        except BaseException as exc:
            if lsn is not None or not isinstance(exc, Exception):
                # Interrupted (Ctrl-C) between logging the record and applying
                # all of it: a checkpoint would now fold a memtable lacking
                # part of a logged transaction under a later LSN.  Refuse work
                # until reopen, whose replay applies the whole record.
                self._failed = exc
                log.error(
                    "safepoint: a commit was interrupted (%r); writes are refused until reopen", exc
                )
            raise
        return lsn

    def _finish(self, lsn: int) -> None:
        """Wait for the commit's durability, then maybe trigger a checkpoint."""
        wal = self._wal
        assert wal is not None
        wal.flush(lsn)
        limit = self._checkpoint_bytes
        if limit is not None and wal.bytes_appended - self._ckpt_bytes_mark >= limit:
            self._ckpt_bytes_mark = wal.bytes_appended
            assert self._checkpointer is not None
            self._checkpointer.request()

    # --- iteration -----------------------------------------------------------------

    def _snapshot_iter(
        self, lo: bytes | None, hi: bytes | None, top: dict[bytes, bytes | None] | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, raw value) in key order over one consistent state."""
        self._check_open()
        return snapshot_items(self, lo, hi, top)

    def keys(self, prefix: Any = None, *, start: Any = None, stop: Any = None) -> Iterator[bytes]:  # type: ignore[override]
        """Keys in byte-wise order; ``prefix`` and/or ``[start, stop)`` narrow it.

        The iterator sees one consistent state: writes made while it runs
        are not visible to it.
        """
        lo, hi = key_range(prefix, start, stop)
        for k, _ in self._snapshot_iter(lo, hi):
            yield k

    def items(  # type: ignore[override]
        self, prefix: Any = None, *, start: Any = None, stop: Any = None
    ) -> Iterator[tuple[bytes, Any]]:
        """(key, value) pairs in key order, over one consistent state."""
        lo, hi = key_range(prefix, start, stop)
        decode = self._decode
        for k, v in self._snapshot_iter(lo, hi):
            yield k, decode(v)

    def values(self, prefix: Any = None, *, start: Any = None, stop: Any = None) -> Iterator[Any]:  # type: ignore[override]
        """Values in key order, over one consistent state."""
        for _, v in self.items(prefix, start=start, stop=stop):
            yield v

    def __iter__(self) -> Iterator[bytes]:
        return self.keys()

    def __len__(self) -> int:
        self._check_open()
        return count_keys(self)

    # --- checkpoints -----------------------------------------------------------------

    def checkpoint(self) -> CheckpointInfo:
        """Fold the log into the base image now; returns what it did.

        Writers wait only for the memtable swap; readers never wait.
        """
        self._check_writable()
        # Checked before waiting for the checkpointer: a checkpoint already
        # running (the background one) waits for this thread's write lock.
        self._refuse_inside_own_transaction("checkpoint")
        assert self._checkpointer is not None
        return self._checkpointer.run()

    def _refuse_inside_own_transaction(self, what: str) -> None:
        if self._txn_owner == threading.get_ident():
            raise RuntimeError(
                f"this thread already has an open transaction; {what} after it commits or aborts "
                "(it would wait for the transaction's own write lock)"
            )

    def _lsn_since_checkpoint(self) -> int:
        return self._last_lsn - self._ckpt_lsn_mark

    # --- snapshots -----------------------------------------------------------------
    # Thin delegates: the mechanics live in snapshots.py, restore.py, workflows.py.

    def save(
        self,
        name: str,
        *,
        step: int | None = None,
        metrics: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        wait: bool = True,
        overwrite: bool = False,
    ) -> SnapshotInfo | Future[SnapshotInfo]:
        """Save the current state as snapshot ``name``; return its SnapshotInfo.

        A checkpoint, then a compact copy of the base image, checksummed,
        fsynced and renamed into ``snapshots/<name>/``; then the store's
        retention policy runs.  Writers wait only for the checkpoint's
        memtable swap.  With ``wait=False`` the copy runs in the background
        and a Future is returned; the snapshot holds the state at the call
        even if writes continue.  ``metrics`` are numbers (for retention),
        ``metadata`` anything JSON can hold.  Raises ValueError for a bad
        name or an existing one (unless ``overwrite``).
        """
        return self._snapshots.save(
            name, step=step, metrics=metrics, metadata=metadata, wait=wait, overwrite=overwrite
        )

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first.  CorruptionError if a manifest is damaged."""
        return self._snapshots.list()

    def restore(self, name: str) -> RestoreInfo:
        """Roll the whole store back to snapshot ``name``.

        Every CRC of the snapshot is checked first (CorruptionError, store
        untouched); then the base image and the log are swapped so that
        after a crash at any point the store opens as the old or the new
        state.  The replaced state (old base image and log) is moved to
        ``lost/restore-<time>-<name>/``, not deleted.  Like close and reopen:
        other threads must not use the store meanwhile.
        """
        return self._snapshots.restore(name)

    def delete_snapshot(self, name: str) -> None:
        """Delete snapshot ``name`` (KeyError if there is none); atomic."""
        self._snapshots.delete(name)

    def steps(
        self,
        total: int | None,
        *,
        key: Any = b"safepoint/steps",
        handle_signals: bool | None = None,
    ) -> StepLoop:
        """A crash-resumable loop over steps ``0..total-1`` (forever if None).

        ``for step in db.steps(n):`` yields Step objects; writes made with
        ``step.put`` commit together with the step counter (under ``key``)
        when the body ends, so after a crash the loop resumes at the first
        uncommitted step.  In the main thread SIGTERM and SIGINT let the
        current step commit, then end the loop (``loop.interrupted``).
        """
        return StepLoop(self, total, key=key, handle_signals=handle_signals)

    def _reopen(self, change: Callable[[], None]) -> None:
        """Quiesce the store, let ``change`` rewrite its files, open them again.

        Writers wait on the write lock, the checkpointer and the log stop,
        the base image closes; LOCK stays held throughout so that no other
        process opens the store in between.  If ``change`` or the reopen
        fails, the store is closed (the next open completes or undoes).
        """
        assert self._checkpointer is not None and self._wal is not None
        self._checkpointer.stop()
        self._begin_write()
        try:
            self._closed = True  # other threads get ClosedError meanwhile
            try:
                self._wal.close()
                self._base.close()
                self._mem, self._frozen = new_memtable(), None
                self._ckpt_bytes_mark = 0
                change()
                self._closed = False
                open_store(self, str(self.path), *self._open_args)
            except BaseException:
                self._closed = True
                self._release()
                raise
        finally:
            self._end_write()

    # --- introspection -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Numbers about the store: LSNs, log and memtable sizes, checkpoints."""
        self._check_open()
        wal = self._wal
        ck = self._checkpointer
        return {
            "path": str(self.path),
            "lsn": self._last_lsn,
            "durable_lsn": wal.durable_lsn if wal else self._last_lsn,
            "checkpoint_lsn": self._base.checkpoint_lsn,
            "wal_segments": len(wal.segments) if wal else None,
            "wal_bytes_since_checkpoint": (wal.bytes_appended - self._ckpt_bytes_mark)
            if wal
            else 0,
            "wal_bytes_appended": wal.bytes_appended if wal else 0,
            "wal_fsyncs": wal.fsyncs if wal else 0,
            "wal_engine": wal.engine if wal else None,
            "checkpoints": self._base.checkpoints,
            "checkpoint_error": repr(ck.error) if ck and ck.error else None,
            "memtable_entries": len(self._mem) + self._frozen_entries(),
            "memtable_bytes": self._mem.payload_bytes + self._frozen_bytes(),
            "base_bytes": self._base.size_bytes(),
            "sync": self.sync_mode,
            "readonly": self.readonly,
            "failed": repr(self._failed) if self._failed else None,
            "backend": records.BACKEND,
            "lmdb_engine": LMDB_ENGINE,
            "store_id": self.store_id.hex(),
            "recovery": self.recovery.__dict__.copy(),
        }

    def _frozen_entries(self) -> int:
        """Entries of the frozen memtable, unless it is the memtable itself
        (as after a failed checkpoint, until the next swap)."""
        frozen = self._frozen
        return len(frozen) if frozen is not None and frozen is not self._mem else 0

    def _frozen_bytes(self) -> int:
        """Payload bytes of the frozen memtable, counted as _frozen_entries is."""
        frozen = self._frozen
        return frozen.payload_bytes if frozen is not None and frozen is not self._mem else 0

    # --- closing -----------------------------------------------------------------

    def close(self) -> None:
        """Make everything committed durable, then release the store.

        Idempotent.  After close every method raises ClosedError.
        """
        if self._closed:
            return
        self._refuse_inside_own_transaction("close the store")
        try:
            if self._checkpointer is not None:
                self._checkpointer.stop()
            if self._wal is not None:
                assert self._checkpointer is not None
                # A checkpoint run by another thread (db.checkpoint, save) must
                # end before the log and the base image close under it: LMDB
                # closing an environment during its write hangs or crashes.
                with self._checkpointer._lock, self._write_lock:
                    self._closed = True
                    self._wal.close()
        finally:
            self._closed = True
            self._release()

    def _simulate_kill(self) -> None:
        """Drop the store as SIGKILL would, for tests: records queued but not
        yet written are lost, nothing is synced, files and LOCK are released.
        Every commit that returned with sync="always" is on disk."""
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._wal is not None:
            self._wal.abandon()
        self._release()

    def _release(self) -> None:
        # The memtable may hold the log's segments mapped (each mmap keeps a
        # descriptor): let them go with the store, not with its last reference.
        with self._mem_lock:
            self._mem, self._frozen = new_memtable(), None
        snapshots = getattr(self, "_snapshots", None)
        if snapshots is not None:
            snapshots.close()  # background saves read the base image
        base = getattr(self, "_base", None)
        if base is not None:
            base.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("readonly" if self.readonly else "open")
        return f"<safepoint.Store {str(self.path)!r} {state}>"


from .transaction import Transaction  # noqa: E402  (circular: Transaction uses Store)

# Store.get in C (native/sp_get.c): the method above, transcribed, for the
# native backend; the Python method stays as its oracle and takes every case
# the C declines.  As with the other native modules, a native build that
# fails to import is an error, not a silent fallback.
if records.BACKEND == "native":
    try:
        from . import _sp_get
    except ImportError as exc:
        raise ImportError(
            f"safepoint: the native get (safepoint._sp_get) failed to import ({exc}). "
            "Reinstall safepoint where a C compiler is available, or set "
            "SAFEPOINT_BACKEND=python to run on the pure-Python reference."
        ) from exc
    Store.get = _sp_get.StoreGet(Store._get_py, _MISSING, BytesCodec, MAX_KEY_SIZE)  # type: ignore[method-assign,assignment]
