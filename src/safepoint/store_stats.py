"""Introspection: ``Store.stats``, the numbers a caller or the command line
reads about a store.

Split out of store.py as a mixin that ``Store`` inherits, so that
``db.stats`` stays a method of ``Store`` with its docstring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import records
from .format import LMDB_ENGINE

if TYPE_CHECKING:
    from pathlib import Path

    from .base import BaseImage
    from .checkpoint import Checkpointer
    from .memtable import Memtable
    from .recovery import RecoveryReport
    from .wal import WalWriter


class StoreStats:
    """The introspection methods of ``Store`` (store.py)."""

    if TYPE_CHECKING:
        # Store's (store.py), declared for mypy: this class is only ever a
        # base of Store.
        path: Path
        readonly: bool
        sync_mode: str
        store_id: bytes
        recovery: RecoveryReport
        _base: BaseImage
        _last_lsn: int
        _wal: WalWriter | None
        _checkpointer: Checkpointer | None
        _mem: Memtable
        _frozen: Memtable | None
        _ckpt_bytes_mark: int
        _failed: BaseException | None

        def _check_open(self) -> None: ...

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
