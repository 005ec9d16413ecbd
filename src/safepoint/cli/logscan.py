"""Read every record of every segment, reporting each problem and going on.

Recovery's reader (``wal_reader``) stops at the first problem after the
checkpoint, because that is where the state ends.  The tools want more: every
record from the first one on disk, and *every* problem, so after damage this
scanner resynchronises on the next valid record (``records.find_valid``) and
carries on.  It only reads; it never needs the store's lock.

Torn tail or damage is decided by the rule recovery uses (docs/design.md,
"Telling a torn tail from damage"): a stop is a torn tail only in the last
segment, and only if no later valid record there carries a ``durable_lsn`` at
or above the stopped LSN.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from .. import records
from ..errors import CorruptionError
from ..format import CLEAN_ENDS, SEGMENT_HEADER_SIZE, STATUS_NAMES
from ..fs import DEFAULT_FS
from ..segment import SegmentRef, check_header, list_segments


@dataclass(frozen=True)
class Problem:
    """One thing wrong on disk, located."""

    file: str  # relative to the store: wal/<segment> or base/data.mdb
    offset: int | None
    lsn: int | None
    message: str
    torn_tail: bool = False  # written after the last sync: recovery cuts it
    folded: bool = False  # a record the base image already holds: the store skips it

    def describe(self) -> str:
        """``wal/...wal at offset 96 (lsn 3): checksum mismatch``."""
        where = [self.file]
        where.append(f"at offset {self.offset}" if self.offset is not None else "(offset unknown)")
        if self.lsn is not None:
            where.append(f"(lsn {self.lsn})")
        return f"{' '.join(where)}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """For --json output."""
        return {
            "file": self.file,
            "offset": self.offset,
            "lsn": self.lsn,
            "message": self.message,
            "torn_tail": self.torn_tail,
            "folded": self.folded,
        }


@dataclass(frozen=True)
class Record:
    """One valid record and where it is.  ``payload`` borrows the segment's bytes."""

    lsn: int
    time_ns: int
    durable_lsn: int
    file: str
    offset: int
    length: int  # the whole record, header included
    payload: memoryview


def segment_name(seg: SegmentRef) -> str:
    """A segment's path relative to the store."""
    return f"wal/{os.path.basename(seg.path)}"


def bare_message(exc: CorruptionError) -> str:
    """The message of a CorruptionError without the location it appends."""
    text = str(exc)
    cut = [text.find(f" in {exc.file}") if exc.file else -1]
    if exc.offset is not None:
        cut.append(text.find(f" at offset {exc.offset}"))
    found = [c for c in cut if c > 0]
    return text[: min(found)] if found else text


def _last_nonzero(data: bytes, start: int) -> int:
    """Offset just after the last non-zero byte at or after ``start``."""
    end = len(data)
    step = 1 << 16
    view = memoryview(data)
    while end > start:
        lo = max(start, end - step)
        stripped = bytes(view[lo:end]).rstrip(b"\x00")
        if stripped:
            return lo + len(stripped)
        end = lo
    return start


def find_store_id(root: Path) -> bytes | None:
    """The store id from the first segment whose header is valid, if any.

    Only used when the base image cannot say: ids from a header are
    checked by the header's CRC, not against anything else.
    """
    for seg in list_segments(DEFAULT_FS, str(root / "wal")):
        try:
            data = DEFAULT_FS.read_file(seg.path)
            sid, _ = check_header(data, seg.path, None)
        except (CorruptionError, OSError):
            continue
        return sid
    return None


def scan_log(
    root: Path,
    store_id: bytes,
    *,
    checkpoint_lsn: int = 0,
    on_bytes: Callable[[int], None] | None = None,
) -> Iterator[Record | Problem]:
    """Every valid record and every problem in ``root/wal``, in log order.

    ``checkpoint_lsn`` (the base image's) lets the scan notice records that
    the base image needs but the log no longer has.  ``on_bytes`` is told
    how many bytes of each segment have been read (for a progress bar).
    """
    segs = list_segments(DEFAULT_FS, str(root / "wal"))
    seed = records.store_seed(store_id)
    if segs and segs[0].first_lsn > checkpoint_lsn + 1:
        yield Problem(
            segment_name(segs[0]),
            0,
            checkpoint_lsn + 1,
            f"records {checkpoint_lsn + 1}..{segs[0].first_lsn - 1} are missing: the base "
            f"image is at lsn {checkpoint_lsn} and the log starts at lsn {segs[0].first_lsn}",
        )
    next_lsn: int | None = None
    for i, seg in enumerate(segs):
        name = segment_name(seg)
        try:
            data = DEFAULT_FS.read_file(seg.path)
        except OSError as exc:
            yield Problem(name, None, next_lsn, f"cannot read the segment: {exc.strerror or exc}")
            next_lsn = None
            continue
        try:
            _, first = check_header(data, seg.path, store_id)
        except CorruptionError as exc:
            yield Problem(name, exc.offset, exc.lsn, bare_message(exc))
            next_lsn = None
            if on_bytes:
                on_bytes(len(data))
            continue
        if next_lsn is not None and first != next_lsn:
            what = (
                f"records {next_lsn}..{first - 1} are missing"
                if first > next_lsn
                else f"records from {first} are repeated"
            )
            yield Problem(name, 0, first, f"segment starts at lsn {first}: {what}")
        next_lsn = yield from _scan_segment(
            data, name, seed, first, last=i == len(segs) - 1, checkpoint_lsn=checkpoint_lsn
        )
        if on_bytes:
            on_bytes(len(data))


def _scan_segment(
    data: bytes, name: str, seed: int, first_lsn: int, *, last: bool, checkpoint_lsn: int
) -> Generator[Record | Problem, None, int]:
    """Records and problems of one segment; returns the LSN after its last record."""
    view = memoryview(data)
    expect = first_lsn
    pos = SEGMENT_HEADER_SIZE
    while True:
        res = records.scan(data, seed, expect, start=pos)
        for r in res.records:
            body = r.offset + records.RECORD_HEADER_SIZE
            yield Record(
                r.lsn,
                r.time_ns,
                r.durable_lsn,
                name,
                r.offset,
                r.length,
                view[body : r.offset + r.length],
            )
        expect = res.next_lsn
        tail_end = _last_nonzero(data, res.offset)
        if res.status in CLEAN_ENDS and tail_end == res.offset:
            return expect
        if res.status in CLEAN_ENDS:
            reason = "non-zero bytes after a zero-filled record header"
        else:
            reason = STATUS_NAMES.get(res.status, f"status {res.status}")
        chains = _later_chains(data, seed, expect, res.offset + 1)
        later = chains[0] if chains else []
        proven = [r for chain in chains for r in chain if r.durable_lsn >= expect]
        if last and not proven:
            yield Problem(
                name,
                res.offset,
                expect,
                f"torn tail: {reason}; {tail_end - res.offset} bytes written after the "
                "last sync (a crash mid-write; recovery cuts them and keeps a copy in lost/)",
                torn_tail=True,
            )
            return expect
        if proven:
            why = f"record {proven[0].lsn} was written after lsn {expect} was on disk"
        else:
            why = "a later segment exists, so this one was complete"
        gap = ""
        if later and later[0].lsn == expect + 1:
            gap = f"; record {expect} is unreadable"
        elif later and later[0].lsn > expect:
            gap = f"; records {expect}..{later[0].lsn - 1} are unreadable"
        folded = expect <= checkpoint_lsn
        if folded:
            gap += (
                f"; already in the base image (checkpoint lsn {checkpoint_lsn}): the store skips it"
            )
        yield Problem(
            name, res.offset, expect, f"{reason}; not a torn tail: {why}{gap}", folded=folded
        )
        if not later:
            return expect
        expect = later[0].lsn
        pos = later[0].offset


def _later_chains(
    data: bytes, seed: int, min_lsn: int, start: int
) -> list[list[records.RecordInfo]]:
    """Every run of valid records after ``start``, in order (empty if none)."""
    chains = []
    pos = start
    while pos < len(data):
        found = records.find_valid(data, seed, min_lsn, start=pos)
        if found is None:
            break
        off, lsn = found
        res = records.scan(data, seed, lsn, start=off)
        chains.append(list(res.records))
        pos = max(res.offset, off) + 1
    return chains
