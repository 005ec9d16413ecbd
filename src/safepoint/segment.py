"""WAL segment files: naming, headers and listing.

A segment is one file of the log: a 40-byte header (docs/format.md) followed
by records and a zero-filled tail.  Its name is its first LSN, zero-padded so
that name order is LSN order.
"""

from __future__ import annotations

import os
from typing import NamedTuple

from . import records
from .errors import CorruptionError
from .format import (
    FORMAT_VERSION,
    KNOWN_VERSIONS,
    SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    STORE_ID_SIZE,
    parse_segment_name,
    segment_name,
)
from .fs import FileSystem


class SegmentRef(NamedTuple):
    """A segment file found in the wal directory."""

    first_lsn: int
    path: str


def encode_header(store_id: bytes, first_lsn: int) -> bytes:
    """The 40-byte header of a new segment."""
    if len(store_id) != STORE_ID_SIZE:
        raise ValueError(f"store id must be {STORE_ID_SIZE} bytes")
    body = SEGMENT_MAGIC + FORMAT_VERSION.to_bytes(4, "little")
    tail = store_id + first_lsn.to_bytes(8, "little")
    crc = records.crc32c(body + tail)
    return SEGMENT_HEADER.pack(SEGMENT_MAGIC, FORMAT_VERSION, crc, store_id, first_lsn)


def check_header(data: bytes | memoryview, path: str, store_id: bytes | None) -> tuple[bytes, int]:
    """Validate a segment header; return (store_id, first_lsn).

    Raises CorruptionError naming the file for a short file, wrong magic, an
    unknown version, a bad header CRC or a header of another store.
    """
    base = os.path.basename(path)
    # Errors name the file as the store's tree shows it, like the reader's.
    name = os.path.join("wal", base)
    if len(data) < SEGMENT_HEADER_SIZE:
        raise CorruptionError(
            f"wal: segment header is short ({len(data)} of {SEGMENT_HEADER_SIZE} bytes)",
            file=name,
            offset=0,
        )
    magic, version, crc, sid, first_lsn = SEGMENT_HEADER.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        raise CorruptionError("wal: not a safepoint segment (bad magic)", file=name, offset=0)
    if version not in KNOWN_VERSIONS:
        raise CorruptionError(
            f"wal: segment format version {version} is not one this safepoint reads "
            f"(it reads {', '.join(map(str, KNOWN_VERSIONS))}); upgrade safepoint",
            file=name,
            offset=8,
        )
    head = bytes(data[:SEGMENT_HEADER_SIZE])
    if records.crc32c(head[:12] + head[16:]) != crc:
        raise CorruptionError("wal: segment header checksum mismatch", file=name, offset=0)
    if store_id is not None and sid != store_id:
        raise CorruptionError(
            f"wal: segment belongs to another store (store id {sid.hex()}, "
            f"expected {store_id.hex()})",
            file=name,
            offset=16,
        )
    expected = parse_segment_name(base)
    if expected is not None and expected != first_lsn:
        raise CorruptionError(
            f"wal: segment header says first lsn {first_lsn} but the name says {expected}",
            file=name,
            offset=32,
            lsn=first_lsn,
        )
    return sid, first_lsn


def list_segments(fs: FileSystem, wal_dir: str) -> list[SegmentRef]:
    """Segments in ``wal_dir``, oldest first."""
    out = []
    for name in fs.listdir(wal_dir):
        lsn = parse_segment_name(name)
        if lsn is not None:
            out.append(SegmentRef(lsn, os.path.join(wal_dir, name)))
    out.sort()
    return out


def segment_path(wal_dir: str, first_lsn: int) -> str:
    """Path of the segment that starts at ``first_lsn``."""
    return os.path.join(wal_dir, segment_name(first_lsn))
