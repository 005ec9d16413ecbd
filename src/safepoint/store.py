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

``Store`` is this module plus the mixins it inherits, each a part of its
API in a file of its own: store_snapshots.py (save, restore, snapshots,
steps), store_stats.py (stats) and store_close.py (close, and the reopen
that a restore runs); store_open.py opens the directory.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any, NoReturn

from . import records
from .base import BaseImage
from .checkpoint import Checkpointer, CheckpointInfo
from .errors import (
    ClosedError,
    Error,
    ReadOnlyError,
    StoreFailedError,
)
from .format import MAX_KEY_SIZE
from .fs import DEFAULT_FS, File, FileSystem
from .keys import key_range, to_key
from .memtable import Memtable, new_memtable
from .recovery import RECOVERY_MODES, RecoveryReport
from .retention import Retention
from .snapshots import Snapshots
from .store_close import StoreClosing
from .store_open import open_store
from .store_snapshots import StoreSnapshots
from .store_stats import StoreStats
from .values import BytesCodec, Codec, resolve
from .view import count_keys, snapshot_items
from .wal import DEFAULT_SEGMENT_BYTES, SYNC_MODES, WalWriter

log = logging.getLogger("safepoint")
_MISSING = object()


class DiskFullError(Error):
    """Raised when a commit fails because the disk is full (ENOSPC/EDQUOT).

    Nothing of the failed commit is applied or logged; commits succeed again
    once space is freed.
    """


class Store(StoreSnapshots, StoreStats, StoreClosing, MutableMapping):  # type: ignore[type-arg]
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

    # The Python put under its own name: the oracle of the C one installed
    # below, and what that one hands every case it does not handle.
    _put_py = put

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
                self._commit(None, payload=payload)
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

    def _commit(
        self,
        writes: dict[bytes, bytes | None] | None,
        only_if_present: bool = False,
        payload: bytes | None = None,
    ) -> bool:
        """Commit ``writes`` (or the puts a ``payload`` holds, see update) as
        one transaction; False if there was nothing to do."""
        self._begin_write()
        try:
            if only_if_present and writes is not None:
                writes = {k: v for k, v in writes.items() if self._lookup(k) is not None}
            lsn = self._append_locked(writes, payload)
        finally:
            self._end_write()
        if lsn is None:
            return False
        self._finish(lsn)
        return True

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
        except BaseException as exc:
            self._append_failed(exc, lsn)
        return lsn

    def _append_failed(self, exc: BaseException, lsn: int | None) -> NoReturn:
        """Raise what a failure ``exc`` inside _append_locked becomes; ``lsn``
        is the record's if it was logged.  Shared with the C put
        (native/sp_put.c), so both paths keep one policy."""
        if isinstance(exc, OSError):
            if lsn is None and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFullError(
                    f"store {self.path}: disk full while extending the log; the commit was "
                    "not applied (free space and retry)"
                ) from exc
        elif lsn is not None or not isinstance(exc, Exception):
            # Interrupted (Ctrl-C) between logging the record and applying
            # all of it: a checkpoint would now fold a memtable lacking
            # part of a logged transaction under a later LSN.  Refuse work
            # until reopen, whose replay applies the whole record.
            self._failed = exc
            log.error(
                "safepoint: a commit was interrupted (%r); writes are refused until reopen", exc
            )
        raise exc

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

    # --- closing (close itself: store_close.py) ------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("readonly" if self.readonly else "open")
        return f"<safepoint.Store {str(self.path)!r} {state}>"


from .transaction import Transaction  # noqa: E402  (circular: Transaction uses Store)


def _native_import_error(module: str, what: str, exc: ImportError) -> ImportError:
    """The error for a native module of a native build that fails to import."""
    return ImportError(
        f"safepoint: the native {what} (safepoint.{module}) failed to import ({exc}). "
        "Reinstall safepoint where a C compiler is available, or set "
        "SAFEPOINT_BACKEND=python to run on the pure-Python reference."
    )


def _c_put(fallback: Any) -> Any:
    """A C ``put`` (native/sp_put.c): the put above transcribed for its
    common case, handing every case it declines to ``fallback`` (for
    ``Store.put``, ``Store._put_py``, its oracle; docs/design.md, "Store.put
    in C")."""
    try:
        from . import _sp_put
        from ._sp_memtable import NativeMemtable
    except ImportError as exc:
        raise _native_import_error("_sp_put", "put", exc) from exc
    from .wal_native import NativeGroupCommit, ffi, lib

    def address(name: str) -> int:
        return int(ffi.cast("uintptr_t", ffi.addressof(lib, name)))

    return _sp_put.StorePut(
        fallback,
        Store,
        BytesCodec,
        WalWriter,
        NativeGroupCommit,
        NativeMemtable,
        address("sp_wal_append"),
        address("sp_wal_flush"),
    )


# Store.get in C (native/sp_get.c): the method above, transcribed, for the
# native backend; the Python method stays as its oracle and takes every case
# the C declines.  As with the other native modules, a native build that
# fails to import is an error, not a silent fallback.
if records.BACKEND == "native":
    try:
        from . import _sp_get
    except ImportError as exc:
        raise _native_import_error("_sp_get", "get", exc) from exc
    Store.get = _sp_get.StoreGet(Store._get_py, _MISSING, BytesCodec, MAX_KEY_SIZE)  # type: ignore[method-assign,assignment]
    Store.put = _c_put(Store._put_py)  # type: ignore[method-assign]
