"""Snapshots: named, checksummed, restorable copies of the whole store.

On disk (docs/design.md, "Snapshots and restore"):

```
snapshots/<name>/data.mdb          compact copy of the base image at the snapshot's LSN
snapshots/<name>/manifest.json     name, LSN, step, metrics, sizes, CRC32C of each file
                                   and of the manifest itself
snapshots/.tmp-<name>-<rand>/      a save in progress (removed at open)
snapshots/.del-<rand>-<name>/      a delete in progress (removed at open)
snapshots/.replaced-<rand>-<name>/ the old copy during save(overwrite=True)
base.new/, RESTORE.json            a restore in progress (see restore.py's protocol below)
lost/restore-<time>-<name>/        what a restore set aside: the old base/ and wal/
```

A save is a checkpoint, then a read transaction on the base image (the
snapshot's state, whatever later checkpoints do), then LMDB's compacting
copy of that transaction into a temporary directory, the manifest, fsyncs,
and one rename into place.  Writers wait only for the checkpoint's memtable
swap; the copy runs on a background thread (``wait=False`` returns its
future at once).
"""

from __future__ import annotations

import json
import logging
import numbers
import operator
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import base as base_mod
from . import records
from .errors import CorruptionError, Error
from .fs import FileSystem
from .restore import complete_interrupted_restore, prepare_base, restore_intent

if TYPE_CHECKING:
    from .retention import Retention
    from .store import Store

log = logging.getLogger("safepoint")

SNAPSHOT_DIR = "snapshots"
MANIFEST = "manifest.json"
DATA_FILE = "data.mdb"
MANIFEST_FORMAT = 1
MAX_NAME_CHARS = 128
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+=@,-]*")
_CHUNK_BYTES = 1 << 20
# Leftover directories of interrupted operations start with a dot, which a
# snapshot name never does, so they can never be mistaken for snapshots.
TMP_PREFIX = ".tmp-"
DEL_PREFIX = ".del-"
REPLACED_PREFIX = ".replaced-"
_TOKEN_CHARS = 8


@dataclass(frozen=True)
class SnapshotInfo:
    """One snapshot, as its manifest describes it."""

    name: str
    lsn: int  # the state of every commit at or below this LSN
    step: int | None
    created: float  # seconds since the epoch
    metrics: dict[str, float]
    metadata: dict[str, Any]
    size_bytes: int  # data files plus manifest
    seq: int = 0  # creation order among the store's snapshots (oldest first)


# --- names and arguments -------------------------------------------------------


def check_name(name: Any) -> str:
    """Return ``name`` if it can name a snapshot; raise TypeError/ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"snapshot name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("snapshot name must not be empty")
    if "/" in name or "\\" in name or os.sep in name:
        raise ValueError(f"snapshot name {name!r} must not contain a path separator")
    if name.startswith("."):
        raise ValueError(
            f"snapshot name {name!r} must not start with '.' (reserved for work in progress)"
        )
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"snapshot name is {len(name)} characters; the limit is {MAX_NAME_CHARS}")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(
            f"snapshot name {name!r} may contain only ASCII letters, digits and . _ - + = @ ,"
        )
    return name


def _check_step(step: Any) -> int | None:
    if step is None:
        return None
    if isinstance(step, bool):
        raise TypeError("step must be an int, not bool")
    try:
        n = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an int, not {type(step).__name__}") from None
    if n < 0:
        raise ValueError(f"step must not be negative, not {n}")
    return n


def _check_metrics(metrics: Any) -> dict[str, float]:
    if metrics is None:
        return {}
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics must be a dict of name -> number, not {type(metrics).__name__}")
    out = {}
    for k, v in metrics.items():
        if not isinstance(k, str):
            raise TypeError(f"metric names must be str, not {type(k).__name__}")
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"metric {k!r} must be a number, not {type(v).__name__}")
        out[k] = float(v)
    return out


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        text = json.dumps(dict(metadata))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serializable: {exc}") from None
    # Normalised as it will read back (tuples become lists, keys become str).
    return json.loads(text)  # type: ignore[no-any-return]


# --- manifests -------------------------------------------------------------------


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def encode_checked_json(body: dict[str, Any]) -> bytes:
    """JSON of ``body`` plus ``manifest_crc32c``: the CRC32C of its canonical form.

    Parsing and re-serialising JSON is exact for everything json produces
    (floats round-trip through repr), so the reader recomputes the CRC from
    the parsed document and needs no byte-exact copy of the text.
    """
    full = dict(body, manifest_crc32c=records.crc32c(_canonical(body)))
    return (json.dumps(full, sort_keys=True, indent=2) + "\n").encode()


def decode_checked_json(data: bytes, where: str) -> dict[str, Any]:
    """Inverse of ``encode_checked_json``; CorruptionError naming ``where``."""
    try:
        full = json.loads(data)
    except ValueError:
        raise CorruptionError("snapshot: not valid JSON", file=where) from None
    if not isinstance(full, dict) or not isinstance(full.get("manifest_crc32c"), int):
        raise CorruptionError("snapshot: no manifest_crc32c", file=where)
    crc = full.pop("manifest_crc32c")
    if records.crc32c(_canonical(full)) != crc:
        raise CorruptionError("snapshot: manifest checksum mismatch", file=where)
    if full.get("format") != MANIFEST_FORMAT:
        raise CorruptionError(
            f"snapshot: manifest format {full.get('format')!r} is not {MANIFEST_FORMAT}", file=where
        )
    return full  # type: ignore[no-any-return]


def read_manifest(fs: FileSystem, snap_dir: str) -> dict[str, Any]:
    """The checked manifest of the snapshot in ``snap_dir``."""
    path = os.path.join(snap_dir, MANIFEST)
    where = _rel(path)
    if not fs.exists(path):
        raise CorruptionError("snapshot: manifest.json is missing", file=where)
    return decode_checked_json(fs.read_file(path), where)


def _info(name: str, m: dict[str, Any], manifest_bytes: int) -> SnapshotInfo:
    try:
        files = m["files"]
        return SnapshotInfo(
            name=name,
            lsn=int(m["lsn"]),
            step=m["step"],
            created=float(m["created"]),
            metrics=dict(m["metrics"]),
            metadata=dict(m["metadata"]),
            size_bytes=sum(int(f["size"]) for f in files.values()) + manifest_bytes,
            seq=int(m["seq"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptionError(
            f"snapshot: manifest lacks a field ({exc!r})", file=f"{SNAPSHOT_DIR}/{name}/{MANIFEST}"
        ) from None


def file_crc(fs: FileSystem, path: str) -> tuple[int, int]:
    """(size, CRC32C) of a file, read in chunks."""
    f = fs.open(path)
    try:
        crc = offset = 0
        while True:
            chunk = f.read_at(_CHUNK_BYTES, offset)
            if not chunk:
                return offset, crc
            crc = records.crc32c(chunk, crc)
            offset += len(chunk)
    finally:
        f.close()


def verify_snapshot(fs: FileSystem, snap_dir: str) -> dict[str, Any]:
    """Check the manifest and the size and CRC32C of every file it lists.

    Returns the manifest; raises CorruptionError naming the damaged file.
    """
    m = read_manifest(fs, snap_dir)
    files = m.get("files")
    if not isinstance(files, dict) or DATA_FILE not in files:
        raise CorruptionError("snapshot: manifest lists no data file", file=_rel(snap_dir))
    for fname, want in sorted(files.items()):
        path = os.path.join(snap_dir, fname)
        if os.path.basename(fname) != fname or not fs.exists(path):
            raise CorruptionError("snapshot: file is missing", file=_rel(path))
        size, crc = file_crc(fs, path)
        if size != want.get("size"):
            raise CorruptionError(
                f"snapshot: file is {size} bytes, the manifest says {want.get('size')}",
                file=_rel(path),
            )
        if crc != want.get("crc32c"):
            raise CorruptionError("snapshot: checksum mismatch", file=_rel(path))
    return m


def scan(fs: FileSystem, root: str) -> tuple[list[SnapshotInfo], dict[str, CorruptionError]]:
    """Every snapshot of the store at ``root`` (oldest first), and the names
    whose manifests are damaged, with the error.  Leftovers are ignored."""
    d = os.path.join(root, SNAPSHOT_DIR)
    infos: list[SnapshotInfo] = []
    damaged: dict[str, CorruptionError] = {}
    if not fs.exists(d):
        return infos, damaged
    for name in fs.listdir(d):
        if name.startswith(".") or not _NAME_RE.fullmatch(name):
            continue
        snap = os.path.join(d, name)
        try:
            m = read_manifest(fs, snap)
            infos.append(_info(name, m, fs.file_size(os.path.join(snap, MANIFEST))))
        except CorruptionError as exc:
            damaged[name] = exc
    infos.sort(key=lambda i: (i.seq, i.created, i.name))
    return infos, damaged


def _rel(path: str) -> str:
    """A path from the store directory on, for messages."""
    parts = os.path.normpath(path).split(os.sep)
    if SNAPSHOT_DIR in parts:
        return "/".join(parts[len(parts) - parts[::-1].index(SNAPSHOT_DIR) - 1 :])
    return path


# --- leftovers -------------------------------------------------------------------


def clean_leftovers(fs: FileSystem, root: str) -> list[str]:
    """Finish or undo what interrupted saves, deletes and overwrites left.

    Called at open with the store locked.  A ``.replaced-`` copy whose
    snapshot name is free again is put back (the overwrite did not
    complete); every other leftover is removed.  Returns what was removed.
    """
    d = os.path.join(root, SNAPSHOT_DIR)
    if not fs.exists(d):
        return []
    removed = []
    for entry in fs.listdir(d):
        path = os.path.join(d, entry)
        if entry.startswith(REPLACED_PREFIX):
            name = entry[len(REPLACED_PREFIX) + _TOKEN_CHARS + 1 :]
            if _NAME_RE.fullmatch(name) and not fs.exists(os.path.join(d, name)):
                fs.rename(path, os.path.join(d, name))
                fs.sync_dir(d)
                continue
        elif not entry.startswith((TMP_PREFIX, DEL_PREFIX)):
            continue
        fs.remove_tree(path)
        removed.append(entry)
    if removed:
        fs.sync_dir(d)
    return removed


def _token() -> str:
    return secrets.token_hex(_TOKEN_CHARS // 2)


def _remove_quietly(fs: FileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.remove_tree(path)
    except OSError as exc:  # the next open removes it
        log.warning("safepoint: could not remove %s: %s", path, exc)


def _write_synced(fs: FileSystem, path: str, data: bytes) -> None:
    f = fs.open(path, write=True, create=True)
    try:
        f.truncate(0)
        f.write_at(data, 0)
        f.sync()
    finally:
        f.close()


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
            "step": _check_step(step),
            "metrics": _check_metrics(metrics),
            "metadata": _check_metadata(metadata),
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
            _write_synced(fs, os.path.join(tmp, MANIFEST), manifest)
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
        return _info(name, body, len(manifest))

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
        fs, root = self._fs, self._root
        with self._op_lock:
            self.wait()
            _check_sole_user(store)
            with self._dir_lock:
                snap = os.path.join(self._dir, name)
                if not fs.exists(snap):
                    raise KeyError(name)
                m = verify_snapshot(fs, snap)
                info = _info(name, m, fs.file_size(os.path.join(snap, MANIFEST)))
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
