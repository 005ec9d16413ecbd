"""Helper verbs for tests that damage, cut and inspect a store's files.

Every verb works on real files with plain ``open``/``os`` calls, outside the
store's own file layer: they play the part of the disk, the crash or the
careless user, never of safepoint.  Import them as ``from helpers import
flip_bit`` (tests/ is on ``sys.path`` through tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import safepoint
from safepoint import records
from safepoint._records_common import RecordInfo
from safepoint.format import (
    PREPARED_SEGMENT_NAME,
    SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE,
    parse_segment_name,
)

PathLike = str | os.PathLike[str]

# --- damaging bytes ------------------------------------------------------------------


def flip_bit(path: PathLike, byte_offset: int, bit: int = 0) -> None:
    """Invert one bit of the byte at ``byte_offset`` in place."""
    if not 0 <= bit < 8:
        raise ValueError(f"bit must be in [0, 8), got {bit}")
    with open(path, "r+b") as f:
        f.seek(byte_offset)
        old = f.read(1)
        if len(old) != 1:
            raise ValueError(f"offset {byte_offset} is past the end of {path}")
        f.seek(byte_offset)
        f.write(bytes([old[0] ^ (1 << bit)]))


def truncate_at(path: PathLike, offset: int) -> None:
    """Cut the file to ``offset`` bytes, as a crash before a write reached disk."""
    os.truncate(path, offset)


def zero_range(path: PathLike, start: int, end: int) -> None:
    """Overwrite [start, end) with zeros (a lost or never-written sector)."""
    if not 0 <= start <= end:
        raise ValueError(f"bad range [{start}, {end})")
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(bytes(end - start))


def zero_tail(path: PathLike, start: int) -> None:
    """Overwrite everything from ``start`` to the end of the file with zeros,
    keeping its length (a preallocated segment whose tail never got written)."""
    zero_range(path, start, os.path.getsize(path))


def write_at(path: PathLike, offset: int, data: bytes) -> None:
    """Overwrite bytes at ``offset`` in place (garbage, a foreign header...)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def read_bytes(path: PathLike, start: int = 0, end: int | None = None) -> bytes:
    """Bytes [start, end) of a file (to the end if ``end`` is None)."""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read() if end is None else f.read(end - start)


def find_all(path: PathLike, needle: bytes) -> list[int]:
    """Every offset at which ``needle`` occurs in the file."""
    data = read_bytes(path)
    out = []
    pos = data.find(needle)
    while pos >= 0:
        out.append(pos)
        pos = data.find(needle, pos + 1)
    return out


# --- looking at the log ----------------------------------------------------------------


def wal_dir(store: PathLike) -> Path:
    """The ``wal/`` directory of a store."""
    return Path(store) / "wal"


def segments(store: PathLike) -> list[Path]:
    """The store's segment files, oldest first (prepared.tmp excluded)."""
    d = wal_dir(store)
    found = [p for p in d.iterdir() if parse_segment_name(p.name) is not None]
    return sorted(found, key=lambda p: p.name)


def last_segment(store: PathLike) -> Path:
    """The newest segment: the one being appended to."""
    segs = segments(store)
    if not segs:
        raise FileNotFoundError(f"no segments in {wal_dir(store)}")
    return segs[-1]


def prepared_path(store: PathLike) -> Path:
    """Where the writer zero-fills its next segment ahead of need."""
    return wal_dir(store) / PREPARED_SEGMENT_NAME


def segment_store_id(segment: PathLike) -> bytes:
    """The store id written in a segment's header (header not validated)."""
    head = read_bytes(segment, 0, SEGMENT_HEADER_SIZE)
    return SEGMENT_HEADER.unpack(head)[3]


def segment_first_lsn(segment: PathLike) -> int:
    """The first LSN written in a segment's header (header not validated)."""
    head = read_bytes(segment, 0, SEGMENT_HEADER_SIZE)
    return int(SEGMENT_HEADER.unpack(head)[4])


def segment_records(segment: PathLike) -> list[RecordInfo]:
    """The valid records of one segment, in order, with their offsets.

    Stops at the first record that is not valid, as the reader does.
    """
    data = read_bytes(segment)
    seed = records.store_seed(segment_store_id(segment))
    res = records.scan(data, seed, segment_first_lsn(segment), start=SEGMENT_HEADER_SIZE)
    return list(res.records)


def log_end(segment: PathLike) -> int:
    """Offset just after the last valid record of a segment."""
    recs = segment_records(segment)
    return recs[-1].offset + recs[-1].length if recs else SEGMENT_HEADER_SIZE


def record_at_lsn(store: PathLike, lsn: int) -> tuple[Path, RecordInfo]:
    """The segment and position of record ``lsn``."""
    for seg in segments(store):
        for r in segment_records(seg):
            if r.lsn == lsn:
                return seg, r
    raise LookupError(f"no valid record with lsn {lsn} in {wal_dir(store)}")


def lost_files(store: PathLike) -> list[Path]:
    """Files recovery set aside in ``lost/``, by name."""
    d = Path(store) / "lost"
    return sorted(d.iterdir()) if d.exists() else []


# --- whole stores ------------------------------------------------------------------------


def read_state(store: PathLike, **options: object) -> dict[bytes, bytes]:
    """Open the store, return its whole contents as a dict, close it."""
    with safepoint.open(store, **options) as db:
        return dict(db.items())


def copy_store(src: PathLike, dst: PathLike) -> Path:
    """Copy a closed store's directory (a saved disk image to damage)."""
    shutil.copytree(src, dst)
    return Path(dst)


# --- stores in tests -------------------------------------------------------------------

SMALL = {"segment_bytes": 1 << 16}  # small segments: rollovers happen in small tests


def lsn_of(db: safepoint.Store) -> int:
    """The LSN of the last logged record."""
    return int(db.stats()["lsn"])
