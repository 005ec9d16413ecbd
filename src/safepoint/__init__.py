"""safepoint: an embedded, transactional, crash-safe key-value state store.

    import safepoint
    with safepoint.open("run.sp") as db:
        db[b"step"] = b"42"          # durable when this returns

See docs/index.md for the guide and SPEC-level guarantees.
"""

from __future__ import annotations

import os
from typing import Any

from .checkpoint import CheckpointInfo
from .errors import (
    ClosedError,
    CorruptionError,
    Error,
    LockedError,
    ReadOnlyError,
    StoreFailedError,
)
from .records import BACKEND
from .recovery import RecoveryReport
from .retention import Retention
from .snapshots import SnapshotInfo
from .store import DiskFullError, Store
from .transaction import Transaction
from .values import Codec

__version__ = "0.1.0"


def open(path: str | os.PathLike[str], **options: Any) -> Store:  # noqa: A001 - the API name
    """Open (creating if missing) the store in directory ``path``.

    Options: ``sync`` ("always" | "interval" | "none"), ``sync_interval``
    (seconds), ``checkpoint_bytes``, ``checkpoint_interval`` (seconds),
    ``recovery`` ("tolerate_tail" | "strict" | "point_in_time"), ``codec``
    (None | "pickle" | "json" | "numpy" | codec object), ``readonly``,
    ``segment_bytes``.  Recovery runs before this returns; what it did is in
    ``db.recovery``.  Raises LockedError if another live process has the
    store open for writing, CorruptionError if the files are damaged beyond
    what the recovery mode allows.
    """
    return Store(path, **options)


__all__ = [
    "BACKEND",
    "CheckpointInfo",
    "ClosedError",
    "Codec",
    "CorruptionError",
    "DiskFullError",
    "Error",
    "LockedError",
    "ReadOnlyError",
    "RecoveryReport",
    "Retention",
    "SnapshotInfo",
    "StoreFailedError",
    "Store",
    "Transaction",
    "open",
]
