"""Opening a store's directory: lock, base image, recovery, log writer.

Split out of store.py, which keeps the API; ``Store.__init__`` calls
``open_store`` and, if it raises, releases what was acquired.  The order is
that of docs/design.md ("Recovery"): finish an interrupted restore, open the
base image (its checkpoint LSN), replay the log after it, then open the log
for appending where replay stopped.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .base import BaseImage
from .checkpoint import Checkpointer
from .errors import CorruptionError, Error, LockedError
from .fs import FileSystem
from .memtable import new_memtable
from .recovery import Recovered, recover
from .restore import complete_interrupted_restore
from .wal import WalWriter

if TYPE_CHECKING:
    from .store import Store


def open_store(
    store: Store,
    root: str,
    mode: str,
    sync: str,
    sync_interval: float,
    segment_bytes: int,
    checkpoint_interval: float | None,
) -> None:
    """Open ``store``'s directory ``root``: lock, base image, recovery, log.

    Sets the store's base image, store id, recovery report, LSNs, log writer
    and checkpointer.  Anything it raises leaves cleanup to the caller
    (``Store.__init__`` releases what was acquired).
    """
    fs = store._fs
    wal_dir = os.path.join(root, "wal")
    base_dir = os.path.join(root, "base")
    if store.readonly:
        complete_interrupted_restore(fs, root, readonly=True)
        if not fs.exists(os.path.join(base_dir, "data.mdb")):
            raise FileNotFoundError(f"no safepoint store at {root}")
    else:
        create_dirs(fs, root, wal_dir, base_dir)
        if store._lock_file is None:  # restore reopens with LOCK still held
            store._lock_file = fs.try_lock(os.path.join(root, "LOCK"))
        if store._lock_file is None:
            raise LockedError(
                f"store {root} is open for writing in another process "
                "(open it with readonly=True to read alongside)"
            )
        store._lock_file.truncate(0)
        store._lock_file.write_at(f"{os.getpid()}\n".encode(), 0)
        complete_interrupted_restore(fs, root)
    store._base = BaseImage(base_dir, readonly=store.readonly)
    store_id = store._base.store_id
    if store_id is None:
        if fs.exists(wal_dir) and any(n.endswith(".wal") for n in fs.listdir(wal_dir)):
            raise CorruptionError(
                "base: the base image has no store id but the log has segments "
                "(was base/ removed or replaced?)",
                file="base/data.mdb",
            )
        if store.readonly:
            raise Error(f"store {root} was never initialised")
        store_id = store._base.initialise()
    store.store_id = store_id
    base_lsn = store._base.checkpoint_lsn
    if store.readonly:
        rec = recover_readonly(store, root, base_dir, mode)
        base_lsn = store._base.checkpoint_lsn
    else:
        rec = recover(fs, root, store_id, base_lsn, store._mem, mode=mode)
    store.recovery = rec.report
    store._last_lsn = rec.next_lsn - 1
    store._ckpt_lsn_mark = base_lsn
    if store.readonly:
        return
    store._wal = WalWriter(
        fs,
        wal_dir,
        store_id,
        next_lsn=rec.next_lsn,
        segments=rec.segments,
        tail_offset=rec.tail_offset,
        segment_bytes=segment_bytes,
        sync=sync,
        sync_interval=sync_interval,
        on_failure=store._on_wal_failure,
    )
    store._checkpointer = Checkpointer(store, interval=checkpoint_interval)


def recover_readonly(store: Store, root: str, base_dir: str, mode: str) -> Recovered:
    """Replay for a read-only view while a writer may be checkpointing.

    The writer may retire the segments this view needs between pinning
    the base image and reading them; then pin a newer base and retry.
    """
    attempts = 5
    for attempt in range(attempts):
        try:
            return recover(
                store._fs,
                root,
                store.store_id,
                store._base.checkpoint_lsn,
                store._mem,
                mode=mode,
                readonly=True,
            )
        except (FileNotFoundError, CorruptionError):
            if attempt == attempts - 1:
                raise
        store._base.close()
        store._base = BaseImage(base_dir, readonly=True)
        store._mem = new_memtable()
    raise AssertionError("unreachable")


def create_dirs(fs: FileSystem, root: str, wal_dir: str, base_dir: str) -> None:
    """Make the store's directories, fsyncing the parents of new ones."""
    new = not fs.exists(root)
    fs.makedirs(root)
    for d in (wal_dir, base_dir):
        if not fs.exists(d):
            fs.makedirs(d)
            new = True
    if new:
        fs.sync_dir(root)
        parent = os.path.dirname(os.path.abspath(root))
        fs.sync_dir(parent)
