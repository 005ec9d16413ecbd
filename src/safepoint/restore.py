"""Restoring a snapshot: the crash-safe swap of the base image and the log.

Protocol (docs/design.md, "Snapshots and restore"):

1. Verify the snapshot (manifest CRC, every file's size and CRC32C).
2. Prepare ``base.new/``: copy the snapshot's files (checked again while
   copying), give the copy a fresh store id, fsync files and directories.
   A crash here leaves ``base.new/`` without ``RESTORE.json``: the next open
   removes it and the store is the old one.
3. With the store quiesced (no writer, the log closed), write the intent
   ``RESTORE.json`` atomically.  This is the commit point: once it is
   durable, every open completes the restore before reading anything.
4. Move the log's segments to ``lost/restore-<time>-<name>/wal/``, the old
   base image to ``.../base/``, rename ``base.new/`` to ``base/``, fsync the
   directories, delete ``RESTORE.json``.  Each step is a rename checked for
   before it is done, so repeating the whole step after a crash at any point
   finishes it; until ``RESTORE.json`` is gone no open reads the store.

Why a fresh store id: the new log starts at the snapshot's LSN + 1, so LSNs
of the replaced history are used again.  Records are CRC-seeded and segment
headers stamped with the store id, so bytes of the old history (in ``lost/``
or anywhere else) can never validate as records of the restored store.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import base as base_mod
from . import records
from .base import BaseImage
from .errors import CorruptionError, Error
from .format import parse_segment_name
from .fs import FileSystem
from .recovery import LOST_DIR
from .snapshot_files import (
    clean_leftovers,
    decode_checked_json,
    encode_checked_json,
    store_relative,
)

INTENT_FILE = "RESTORE.json"
NEW_BASE_DIR = "base.new"
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Intent:
    """A restore about to be committed: the file to write and where the old state goes."""

    file: str
    encoded: bytes
    aside: str  # relative to the store directory


def prepare_base(fs: FileSystem, root: str, snap_dir: str, files: dict[str, Any], lsn: int) -> None:
    """Build ``base.new/`` from a verified snapshot; durable when this returns.

    Raises CorruptionError (after removing ``base.new/``) if a file changed
    since it was verified or the copy's checkpoint LSN is not ``lsn``.
    """
    new = os.path.join(root, NEW_BASE_DIR)
    if fs.exists(new):
        fs.remove_tree(new)
    try:
        fs.makedirs(new)
        for fname, want in sorted(files.items()):
            _copy_checked(fs, os.path.join(snap_dir, fname), os.path.join(new, fname), want)
        _give_fresh_store_id(new, lsn)
        fs.sync_dir(new)
        fs.sync_dir(root)
    except BaseException:
        if fs.exists(new):
            fs.remove_tree(new)
        raise


def _copy_checked(fs: FileSystem, src: str, dst: str, want: dict[str, Any]) -> None:
    fin = fs.open(src)
    try:
        fout = fs.open(dst, write=True, create=True)
        try:
            fout.truncate(0)
            crc = offset = 0
            while True:
                chunk = fin.read_at(_CHUNK_BYTES, offset)
                if not chunk:
                    break
                crc = records.crc32c(chunk, crc)
                fout.write_at(chunk, offset)
                offset += len(chunk)
            if offset != want.get("size") or crc != want.get("crc32c"):
                raise CorruptionError(
                    "snapshot: file changed while it was restored (size or checksum)",
                    file=store_relative(src),
                )
            fout.sync()
        finally:
            fout.close()
    finally:
        fin.close()


def _give_fresh_store_id(path: str, lsn: int) -> bytes:
    img = BaseImage(path)
    try:
        if img.checkpoint_lsn != lsn:
            raise CorruptionError(
                f"snapshot: the base image copy is at lsn {img.checkpoint_lsn}, "
                f"the manifest says {lsn}",
                file=os.path.join(NEW_BASE_DIR, "data.mdb"),
            )
        store_id = uuid.uuid4().bytes
        # LMDB makes the commit durable before it returns.
        with img.env.begin(write=True, db=img._meta) as txn:
            txn.put(base_mod._META_STORE_ID, store_id)
        return store_id
    finally:
        img.close()


def restore_intent(fs: FileSystem, root: str, name: str, lsn: int) -> Intent:
    """The intent for restoring snapshot ``name`` at ``lsn``, with an unused aside dir."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = f"{LOST_DIR}/restore-{stamp}-{name}"
    n = 1
    while fs.exists(os.path.join(root, aside)):
        aside = f"{LOST_DIR}/restore-{stamp}-{name}.{n}"
        n += 1
    body = {"format": 1, "snapshot": name, "lsn": lsn, "aside": aside, "created": time.time()}
    return Intent(INTENT_FILE, encode_checked_json(body), aside)


def complete_interrupted_restore(
    fs: FileSystem, root: str, *, readonly: bool = False
) -> str | None:
    """Finish a committed restore, or undo an uncommitted one; called at open.

    Runs before the base image is opened, with the store locked.  Also
    clears what interrupted snapshot saves and deletes left behind.  Returns
    the set-aside directory of a restore it completed, else None.  A
    read-only open changes nothing: it raises Error if a restore is pending.
    """
    intent_path = os.path.join(root, INTENT_FILE)
    if readonly:
        if fs.exists(intent_path):
            raise Error(
                f"store {root}: a restore was interrupted; open it for writing once to complete it"
            )
        return None
    if fs.exists(intent_path + ".tmp"):
        # write_file_atomic's temporary: the intent never became durable.
        fs.remove(intent_path + ".tmp")
    new = os.path.join(root, NEW_BASE_DIR)
    if not fs.exists(intent_path):
        if fs.exists(new):
            fs.remove_tree(new)
            fs.sync_dir(root)
        clean_leftovers(fs, root)
        return None
    intent = decode_checked_json(fs.read_file(intent_path), INTENT_FILE)
    rel = intent.get("aside")
    if not isinstance(rel, str) or not rel.startswith(f"{LOST_DIR}/restore-") or ".." in rel:
        raise CorruptionError(f"restore: intent names a bad aside dir {rel!r}", file=INTENT_FILE)
    aside = os.path.join(root, rel)
    _ensure_dir(fs, os.path.join(root, LOST_DIR))
    _ensure_dir(fs, aside)
    _ensure_dir(fs, os.path.join(aside, "wal"))
    wal = os.path.join(root, "wal")
    if fs.exists(wal):
        moved = False
        for entry in fs.listdir(wal):
            if parse_segment_name(entry) is not None:
                fs.rename(os.path.join(wal, entry), _unused(fs, os.path.join(aside, "wal", entry)))
                moved = True
        if moved:
            fs.sync_dir(os.path.join(aside, "wal"))
            fs.sync_dir(wal)
    if fs.exists(new):
        old = os.path.join(root, "base")
        if fs.exists(old):
            # After a crash mid-swap, the reopen may have created an empty
            # base/; it goes aside too, under the next free name.
            fs.rename(old, _unused(fs, os.path.join(aside, "base")))
        fs.rename(new, old)
        fs.sync_dir(aside)
        fs.sync_dir(root)
    fs.remove(intent_path)
    fs.sync_dir(root)
    clean_leftovers(fs, root)
    return rel


def _ensure_dir(fs: FileSystem, path: str) -> None:
    if not fs.exists(path):
        fs.makedirs(path)
        fs.sync_dir(os.path.dirname(path))


def _unused(fs: FileSystem, path: str) -> str:
    if not fs.exists(path):
        return path
    n = 1
    while fs.exists(f"{path}.{n}"):
        n += 1
    return f"{path}.{n}"
