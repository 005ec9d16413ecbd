"""Read-only access to a store's base image for the tools.

The tools open LMDB themselves, read-only, rather than through
``safepoint.base.BaseImage``: they must work on a store that the store
itself refuses to open (a wrong format version, a damaged meta record), and
must change nothing on disk.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from ..base import check_entry
from ..errors import CorruptionError
from ..format import LMDB_LIB_VERSION
from .logscan import Problem

BASE_FILE = "base/data.mdb"


@dataclass
class BaseFacts:
    """What the base image's meta database says."""

    store_id: bytes | None
    checkpoint_lsn: int
    checkpoints: int
    format_version: int | None
    engine: str | None
    entries: int


@contextmanager
def open_base(root: Path) -> Iterator[tuple[lmdb.Environment, Any, Any]]:
    """(env, data db, meta db), read-only.  Raises lmdb.Error if LMDB cannot."""
    path = root / "base"
    if not (path / "data.mdb").exists():
        raise FileNotFoundError(f"{path / 'data.mdb'} does not exist")
    env = lmdb.open(
        str(path),
        readonly=True,
        create=False,
        subdir=True,
        max_dbs=4,
        lib_version=LMDB_LIB_VERSION,
        readahead=False,
    )
    try:
        yield env, env.open_db(b"data", create=False), env.open_db(b"meta", create=False)
    finally:
        env.close()


def read_facts(env: lmdb.Environment, data_db: Any, meta_db: Any) -> BaseFacts:
    """The meta facts and the entry count (values unchecked)."""
    with env.begin(db=meta_db) as txn:
        sid = txn.get(b"store_id")
        lsn = txn.get(b"checkpoint_lsn")
        ckpts = txn.get(b"checkpoints")
        fmt = txn.get(b"format_version")
        engine = txn.get(b"lmdb_engine")
        entries = int(txn.stat(data_db)["entries"])
    return BaseFacts(
        store_id=bytes(sid) if sid is not None else None,
        checkpoint_lsn=_int(lsn),
        checkpoints=_int(ckpts),
        format_version=_int(fmt) if fmt is not None else None,
        engine=bytes(engine).decode("utf-8", "replace") if engine is not None else None,
        entries=entries,
    )


def _int(raw: bytes | None) -> int:
    if raw is None:
        return 0
    try:
        return int(bytes(raw))
    except ValueError:
        return -1


def check_entries(
    root: Path,
    env: lmdb.Environment,
    data_db: Any,
    checkpoint_lsn: int,
    on_entry: Callable[[], None] | None = None,
) -> Iterator[Problem]:
    """A Problem for every base-image entry whose CRC does not match.

    The offset is found by searching data.mdb for the entry's bytes (LMDB
    does not say where a value lives); None if they cannot be found.
    """
    with env.begin(db=data_db, buffers=True) as txn:
        cur = txn.cursor()
        for key, stored in cur:
            try:
                check_entry(bytes(key), stored)
            except CorruptionError as exc:
                k, v = bytes(key), bytes(stored)
                msg = str(exc).removeprefix("base: ")
                cut = msg.find(f" in {BASE_FILE}")
                msg = msg[:cut] if cut > 0 else msg
                yield Problem(
                    BASE_FILE,
                    locate_entry(root / BASE_FILE, k, v),
                    None,
                    f"{msg} (base image at checkpoint lsn {checkpoint_lsn})",
                )
            if on_entry:
                on_entry()


def locate_entry(path: Path, key: bytes, stored: bytes) -> int | None:
    """Offset in data.mdb of an entry's key (or, for a large value kept on its
    own pages, of the value), found by its bytes."""
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            pos = m.find(key + stored)
            if pos >= 0:
                return pos
            if len(stored) >= 16:
                pos = m.find(stored)
                if pos >= 0:
                    return pos
    except (OSError, ValueError):
        return None
    return None


def data_size(root: Path) -> int:
    """Bytes of base/data.mdb (0 if missing)."""
    try:
        return os.path.getsize(root / BASE_FILE)
    except OSError:
        return 0
