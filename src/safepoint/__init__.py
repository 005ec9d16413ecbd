"""safepoint: an embedded, transactional, crash-safe key-value state store.

    import safepoint
    with safepoint.open("run.sp") as db:
        db[b"step"] = b"42"          # durable when this returns

See docs/index.md for the guide and SPEC-level guarantees.
"""

from __future__ import annotations

import os
import sys
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
    check_interpreter()
    return Store(path, **options)


def check_interpreter() -> None:
    """Refuse a free-threaded CPython running without its GIL.

    A few hot paths (lock-free single-key reads of the memtable, the base
    image's resize gate) rely on the GIL making dict and list operations
    atomic (docs/design.md, "Threads").  Rather than risk a torn read, say so;
    such an interpreter can run with ``PYTHON_GIL=1``.
    """
    gil_enabled = getattr(sys, "_is_gil_enabled", None)
    if gil_enabled is not None and not gil_enabled():
        raise RuntimeError(
            "safepoint needs the GIL: this free-threaded Python runs without it; "
            "set PYTHON_GIL=1 (or run python with -X gil=1)"
        )


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
