"""Closing a store: ``close``, the simulated kill of the tests, the release
of what an open acquired, and the close-and-reopen that a restore runs.

Split out of store.py as a mixin that ``Store`` inherits (``db.close``
stays a method of ``Store`` with its docstring).  Opening is store_open.py;
``_reopen`` is both halves around a change of the store's files, with LOCK
held throughout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from .memtable import new_memtable
from .store_open import open_store

if TYPE_CHECKING:
    from pathlib import Path

    from .base import BaseImage
    from .checkpoint import Checkpointer
    from .fs import File
    from .memtable import Memtable
    from .store import Store
    from .wal import WalWriter


class StoreClosing:
    """The closing methods of ``Store`` (store.py)."""

    if TYPE_CHECKING:
        # Store's, declared for mypy: this class is only ever a base of Store.
        path: Path
        _write_lock: threading.Lock
        _mem_lock: threading.Lock
        _closed: bool
        _checkpointer: Checkpointer | None
        _wal: WalWriter | None
        _base: BaseImage
        _mem: Memtable
        _frozen: Memtable | None
        _lock_file: File | None
        _ckpt_bytes_mark: int
        _open_args: tuple[str, str, float, int, float | None]

        def _refuse_inside_own_transaction(self, what: str) -> None: ...
        def _begin_write(self) -> None: ...
        def _end_write(self) -> None: ...

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
                open_store(cast("Store", self), str(self.path), *self._open_args)
            except BaseException:
                self._closed = True
                self._release()
                raise
        finally:
            self._end_write()
