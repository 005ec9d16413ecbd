"""Snapshots: named, checksummed, restorable copies of the whole store.

A save is a checkpoint, then a read transaction on the base image (the
snapshot's state, whatever later checkpoints do), then LMDB's compacting
copy of that transaction into a temporary directory, the manifest, fsyncs,
and one rename into place.  Writers wait only for the checkpoint's memtable
swap; the copy runs on a background thread (``wait=False`` returns its
future at once).  Layout and manifests: snapshot_files.py; the restore
protocol: restore.py; both with crash tables in docs/design.md.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import base as base_mod
from .errors import Error
from .fs import FileSystem
from .restore import complete_interrupted_restore, prepare_base, restore_intent
from .snapshot_files import (
    DATA_FILE,
    DEL_PREFIX,
    MANIFEST,
    MANIFEST_FORMAT,
    REPLACED_PREFIX,
    SNAPSHOT_DIR,
    TMP_PREFIX,
    TOKEN_CHARS,
    SnapshotInfo,
    check_metadata,
    check_metrics,
    check_name,
    check_step,
    clean_leftovers,
    encode_checked_json,
    file_crc,
    read_manifest,
    scan,
    snapshot_info,
    verify_snapshot,
)

if TYPE_CHECKING:
    from .retention import Retention
    from .store import Store

__all__ = [
    "SNAPSHOT_DIR",
    "RestoreInfo",
    "SnapshotInfo",
    "Snapshots",
    "check_name",
    "clean_leftovers",
    "read_manifest",
    "scan",
    "verify_snapshot",
]

log = logging.getLogger("safepoint")


def _token() -> str:
    return secrets.token_hex(TOKEN_CHARS // 2)


def _remove_quietly(fs: FileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.remove_tree(path)
    except OSError as exc:  # the next open removes it
        log.warning("safepoint: could not remove %s: %s", path, exc)


# --- the store's snapshot manager -------------------------------------------------


class Snapshots:
    """Saves, lists, deletes and restores one store's snapshots.

    Locks: ``_op_lock`` orders saves' synchronous parts and restores (a
    restore waits for background saves to finish and admits no new ones);
    ``_dir_lock`` covers changes to ``snapshots/`` (renames into place,
    retention, deletes).  Copies run on one background thread, so saves
    complete, and retention runs, in the order they were called.
    """

    def __init__(self, store: Store, retention: Retention | None) -> None:
        from .retention import Retention

        if retention is not None and not isinstance(retention, Retention):
            raise TypeError(
                f"retention must be a safepoint.Retention, not {type(retention).__name__}"
            )
        self._store = store
        self.retention = retention
        self._op_lock = threading.Lock()
        self._dir_lock = threading.RLock()
        self._pending: set[str] = set()
        self._futures: set[Future[SnapshotInfo]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._next_seq: int | None = None

    @property
    def _fs(self) -> FileSystem:
        return self._store._fs

    @property
    def _root(self) -> str:
        return str(self._store.path)

    @property
    def _dir(self) -> str:
        return os.path.join(self._root, SNAPSHOT_DIR)

    # --- save ------------------------------------------------------------------

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
        """See ``Store.save``."""
        name = check_name(name)
        job: dict[str, Any] = {
            "name": name,
            "step": check_step(step),
            "metrics": check_metrics(metrics),
            "metadata": check_metadata(metadata),
            "overwrite": bool(overwrite),
        }
        store = self._store
        store._check_writable()
        fs = self._fs
        with self._op_lock:
            with self._dir_lock:
                if name in self._pending:
                    raise ValueError(f"a snapshot named {name!r} is being saved")
                if not overwrite and fs.exists(os.path.join(self._dir, name)):
                    raise ValueError(
                        f"snapshot {name!r} exists (delete it, or pass overwrite=True)"
                    )
                if self._next_seq is None:
                    infos, _ = scan(fs, self._root)
                    self._next_seq = max((i.seq for i in infos), default=0) + 1
                job["seq"] = self._next_seq
                self._next_seq += 1
                self._pending.add(name)
            try:
                if not fs.exists(self._dir):
                    fs.makedirs(self._dir)
                    fs.sync_dir(self._root)
                store.checkpoint()
                # The read transaction pins the snapshot's state: checkpoints
                # after this one write new pages, never these.
                reader = store._base.reader()
                txn = reader.__enter__()
                try:
                    meta = store._base._meta
                    job["lsn"] = int(txn.get(base_mod._META_LSN, b"0", db=meta))
                    job["store_id"] = bytes(txn.get(base_mod._META_STORE_ID, b"", db=meta)).hex()
                    job["created"] = time.time()
                    future = self._submit(lambda: self._write(job, reader, txn))
                except BaseException:
                    reader.__exit__(None, None, None)
                    raise
            except BaseException:
                with self._dir_lock:
                    self._pending.discard(name)
                raise
        if wait:
            return future.result()
        return future

    def _submit(self, fn: Callable[[], SnapshotInfo]) -> Future[SnapshotInfo]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="safepoint-snapshot")
        future = self._executor.submit(fn)
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        return future

    def _write(self, job: dict[str, Any], reader: Any, txn: Any) -> SnapshotInfo:
        fs = self._fs
        name = job["name"]
        tmp = os.path.join(self._dir, f"{TMP_PREFIX}{name}-{_token()}")
        try:
            try:
                fs.makedirs(tmp)
                data_path = os.path.join(tmp, DATA_FILE)
                f = fs.open(data_path, write=True, create=True)
                try:
                    # LMDB writes the copy (its own I/O); we make it durable.
                    self._store._base.env.copyfd(f.fd, compact=True, txn=txn)
                    f.sync()
                finally:
                    f.close()
            finally:
                reader.__exit__(None, None, None)
            size, crc = file_crc(fs, data_path)
            body = {
                "format": MANIFEST_FORMAT,
                "name": name,
                "seq": job["seq"],
                "lsn": job["lsn"],
                "store_id": job["store_id"],
                "step": job["step"],
                "created": job["created"],
                "metrics": job["metrics"],
                "metadata": job["metadata"],
                "files": {DATA_FILE: {"size": size, "crc32c": crc}},
            }
            manifest = encode_checked_json(body)
            fs.write_file_synced(os.path.join(tmp, MANIFEST), manifest)
            fs.sync_dir(tmp)
            with self._dir_lock:
                self._install(tmp, name, job["overwrite"])
                self._pending.discard(name)
                self._apply_retention()
        except BaseException:
            with self._dir_lock:
                self._pending.discard(name)
            _remove_quietly(fs, tmp)
            raise
        return snapshot_info(name, body, len(manifest))

    def _install(self, tmp: str, name: str, overwrite: bool) -> None:
        """Rename the finished snapshot into place; durable when this returns."""
        fs = self._fs
        final = os.path.join(self._dir, name)
        old = None
        if fs.exists(final):
            if not overwrite:
                raise ValueError(f"snapshot {name!r} exists (delete it, or pass overwrite=True)")
            # A crash between these renames leaves the old copy under a name
            # that clean_leftovers() puts back.
            old = os.path.join(self._dir, f"{REPLACED_PREFIX}{_token()}-{name}")
            fs.rename(final, old)
        fs.rename(tmp, final)
        fs.sync_dir(self._dir)
        if old is not None:
            fs.remove_tree(old)
            fs.sync_dir(self._dir)

    def _apply_retention(self) -> list[str]:
        policy = self.retention
        if policy is None:
            return []
        infos, damaged = scan(self._fs, self._root)
        for name, exc in damaged.items():
            log.warning("safepoint: retention leaves damaged snapshot %s alone: %s", name, exc)
        dropped = policy.drop(infos)
        for name in dropped:
            try:
                self._remove(name)
            except OSError as exc:  # the save succeeded; the next pass retries
                log.warning("safepoint: retention could not delete snapshot %s: %s", name, exc)
        return dropped

    # --- list and delete -----------------------------------------------------------

    def list(self) -> list[SnapshotInfo]:
        """See ``Store.snapshots``."""
        self._store._check_open()
        infos, damaged = scan(self._fs, self._root)
        if damaged:
            raise next(iter(damaged.values()))
        return infos

    def delete(self, name: str) -> None:
        """See ``Store.delete_snapshot``."""
        name = check_name(name)
        self._store._check_writable()
        with self._dir_lock:
            if name in self._pending:
                raise ValueError(f"snapshot {name!r} is being saved; wait for it first")
            if not self._fs.exists(os.path.join(self._dir, name)):
                raise KeyError(name)
            self._remove(name)

    def _remove(self, name: str) -> None:
        """Rename aside (atomic: the snapshot is gone), then delete the files."""
        fs = self._fs
        trash = os.path.join(self._dir, f"{DEL_PREFIX}{_token()}-{name}")
        fs.rename(os.path.join(self._dir, name), trash)
        fs.sync_dir(self._dir)
        fs.remove_tree(trash)
        fs.sync_dir(self._dir)

    # --- restore ---------------------------------------------------------------------

    def restore(self, name: str) -> RestoreInfo:
        """See ``Store.restore``."""
        name = check_name(name)
        store = self._store
        store._check_writable()
        if store._txn_owner == threading.get_ident():
            # Checked before anything stops: quiescing waits for this very lock.
            raise RuntimeError(
                "this thread has an open transaction; restore after it commits or aborts"
            )
        fs, root = self._fs, self._root
        with self._op_lock:
            self.wait()
            _check_sole_user(store)
            with self._dir_lock:
                snap = os.path.join(self._dir, name)
                if not fs.exists(snap):
                    raise KeyError(name)
                m = verify_snapshot(fs, snap)
                info = snapshot_info(name, m, fs.file_size(os.path.join(snap, MANIFEST)))
                prepare_base(fs, root, snap, m["files"], info.lsn)
            intent = restore_intent(fs, root, name, info.lsn)
            from_lsn = store._last_lsn

            def swap() -> None:
                fs.write_file_atomic(os.path.join(root, intent.file), intent.encoded)
                complete_interrupted_restore(fs, root)

            store._reopen(swap)
        log.info(
            "safepoint: restored snapshot %s (lsn %d); the state at lsn %d is in %s",
            name,
            info.lsn,
            from_lsn,
            intent.aside,
        )
        return RestoreInfo(info, from_lsn, intent.aside)

    # --- background work ---------------------------------------------------------

    def wait(self) -> None:
        """Wait for every background save to finish (errors stay in their futures)."""
        for future in list(self._futures):
            try:
                future.result()
            except BaseException:  # noqa: BLE001, S110 - the caller's future reports it
                pass

    def close(self) -> None:
        """Wait for background saves, then stop the worker thread."""
        self.wait()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


@dataclass(frozen=True)
class RestoreInfo:
    """What ``Store.restore`` did."""

    snapshot: SnapshotInfo
    replaced_lsn: int  # the last LSN of the state the restore replaced
    set_aside: str  # where that state went, relative to the store directory


def _check_sole_user(store: Store) -> None:
    """A restore swaps base/; another handle on it in this process (a readonly
    Store sharing the LMDB environment) would go on reading the old files."""
    real = os.path.realpath(store._base.path)
    with base_mod._ENVS_LOCK:
        slot = base_mod._ENVS.get(real)
        users = slot[1] if slot else 0
    if users > 1:
        raise Error(
            f"restore: {users - 1} other handle(s) in this process have the store "
            f"{store.path} open (readonly views?); close them first"
        )
