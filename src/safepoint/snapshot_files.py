"""The files of snapshots: names, manifests, verification, listing, leftovers.

Everything here reads or repairs ``snapshots/`` without a store object, so
the command line (``safepoint verify``, ``info``) and recovery at open use it
too.  The manager that saves, deletes and restores is in snapshots.py.

```
snapshots/<name>/data.mdb          compact copy of the base image at the snapshot's LSN
snapshots/<name>/manifest.json     name, LSN, step, metrics, sizes, CRC32C of each file
                                   and of the manifest itself
snapshots/.tmp-<name>-<rand>/      a save in progress (removed at open)
snapshots/.del-<rand>-<name>/      a delete in progress (removed at open)
snapshots/.replaced-<rand>-<name>/ the old copy during save(overwrite=True)
```
"""

from __future__ import annotations

import json
import numbers
import operator
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import records
from .errors import CorruptionError
from .fs import FileSystem

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
TOKEN_CHARS = 8


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


def check_step(step: Any) -> int | None:
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


def check_metrics(metrics: Any) -> dict[str, float]:
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


def check_metadata(metadata: Any) -> dict[str, Any]:
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
    except (ValueError, RecursionError):  # RecursionError: nesting too deep
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
    where = store_relative(path)
    if not fs.exists(path):
        raise CorruptionError("snapshot: manifest.json is missing", file=where)
    return decode_checked_json(fs.read_file(path), where)


def snapshot_info(name: str, m: dict[str, Any], manifest_bytes: int) -> SnapshotInfo:
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
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
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
        raise CorruptionError(
            "snapshot: manifest lists no data file", file=store_relative(snap_dir)
        )
    for fname, want in sorted(files.items()):
        path = os.path.join(snap_dir, fname)
        if not isinstance(want, dict):
            raise CorruptionError(
                "snapshot: manifest entry of a file is not an object", file=store_relative(path)
            )
        if os.path.basename(fname) != fname or fname in ("", ".", "..") or not fs.exists(path):
            raise CorruptionError("snapshot: file is missing", file=store_relative(path))
        size, crc = file_crc(fs, path)
        if size != want.get("size"):
            raise CorruptionError(
                f"snapshot: file is {size} bytes, the manifest says {want.get('size')}",
                file=store_relative(path),
            )
        if crc != want.get("crc32c"):
            raise CorruptionError("snapshot: checksum mismatch", file=store_relative(path))
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
            infos.append(snapshot_info(name, m, fs.file_size(os.path.join(snap, MANIFEST))))
        except CorruptionError as exc:
            damaged[name] = exc
    infos.sort(key=lambda i: (i.seq, i.created, i.name))
    return infos, damaged


def store_relative(path: str) -> str:
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
            name = entry[len(REPLACED_PREFIX) + TOKEN_CHARS + 1 :]
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
