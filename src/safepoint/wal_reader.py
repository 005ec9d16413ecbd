"""The write-ahead log reader: records after an LSN, and where and why it ends.

The reader only reads.  Deciding what to do about a damaged end (truncate it,
raise, set it aside) is recovery's job; the reader supplies the facts, in
particular whether the damage can be a torn tail.  It can be only when
nothing written after it proves it was once durable:

* no later segment exists (a rollover syncs the old segment before it
  creates the next one), and
* every valid record after the damage carries ``durable_lsn`` below the
  damaged LSN (it was written before that LSN had been synced).
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from . import records
from .errors import CorruptionError
from .format import (
    CLEAN_ENDS,
    RECORD_CRC_START,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    SP_BAD_LSN,
    SP_ZERO,
    STATUS_NAMES,
)
from .fs import FileSystem
from .segment import SegmentRef, check_header, list_segments

Buffer = bytes | memoryview | mmap.mmap
_ZERO_CHUNK_BYTES = 1 << 16
_ZEROS = bytes(_ZERO_CHUNK_BYTES)
_RECORD_LENGTH = struct.Struct("<I")
# Not every platform has both (mmap.madvise and the constants are Linux/BSD).
_ADVICE = tuple(
    getattr(mmap, name) for name in ("MADV_SEQUENTIAL", "MADV_WILLNEED") if hasattr(mmap, name)
)


@dataclass(frozen=True)
class LogRecord:
    """One valid record.  ``payload`` borrows the segment's bytes."""

    lsn: int
    time_ns: int
    durable_lsn: int
    payload: memoryview
    path: str
    offset: int


@dataclass(frozen=True)
class LogSpan:
    """Consecutive valid records of one segment, for replay.

    ``data[start:stop]`` holds the records ``first_lsn`` to
    ``first_lsn + count - 1``, whole and checked (CRC, LSN, payload).
    ``data`` is the segment's mapped bytes, borrowed: valid while referenced.
    """

    data: Buffer
    start: int
    stop: int
    first_lsn: int
    count: int
    path: str


@dataclass
class LogEnd:
    """Where a read of the log stopped and why."""

    clean: bool  # the log simply ends: nothing damaged or torn
    next_lsn: int  # the LSN the next record would have
    path: str | None = None  # segment where it stopped (None: no segments)
    offset: int = 0  # byte offset of the stop in that segment
    status: int = 0  # a format.SP_* code
    reason: str = ""
    tail_end: int = 0  # end of the non-zero bytes after the stop, in that segment
    proof: str | None = None  # why this is damage, not a torn tail
    later_records: int = 0  # valid records found after the stop
    later_segments: tuple[str, ...] = ()  # segments after the stopping one
    folded_damage: str | None = None  # damage skipped in records the base holds

    @property
    def torn_tail(self) -> bool:
        """True when the end is damaged but can be a write torn by a crash."""
        return not self.clean and self.proof is None


def _last_nonzero(data: Buffer, start: int) -> int:
    """Offset just after the last non-zero byte at or after ``start``.

    Walks back from the end in chunks compared whole against zeros (memcmp
    speed): a preallocated segment is mostly zeros and is read at every open.
    """
    end = len(data)
    view = memoryview(data)
    while end > start:
        lo = max(start, end - _ZERO_CHUNK_BYTES)
        chunk = bytes(view[lo:end])
        if chunk != _ZEROS[: end - lo]:
            return lo + len(chunk.rstrip(b"\x00"))
        end = lo
    return start


def _advise_sequential(data: Buffer) -> None:
    """Tell the kernel a mapped segment is about to be read once, front to
    back: it then reads ahead in large requests (a cold open reads the log
    at disk speed, not page fault by page fault) and maps pages in bulk."""
    if isinstance(data, mmap.mmap) and hasattr(data, "madvise"):
        for advice in _ADVICE:
            try:
                data.madvise(advice)
            except OSError:  # an old kernel: only a hint
                pass


def _map_ahead(fs: FileSystem, path: str) -> Buffer:
    """A segment mapped and advised for one sequential read."""
    data = fs.map_file(path)
    _advise_sequential(data)
    return data


def _skip_records(data: Buffer, offset: int, count: int) -> int:
    """The offset just after ``count`` whole records starting at ``offset``
    (already validated by a scan)."""
    length = _RECORD_LENGTH.unpack_from
    for _ in range(count):
        offset += RECORD_HEADER_SIZE + length(data, offset + RECORD_CRC_START)[0]
    return offset


class LogReader:
    """Reads one store's log; ``read(after_lsn)`` yields, then sets ``end``."""

    def __init__(self, fs: FileSystem, wal_dir: str, store_id: bytes) -> None:
        self._fs = fs
        self._dir = wal_dir
        self._store_id = store_id
        self._seed = records.store_seed(store_id)
        self.segments: list[SegmentRef] = list_segments(fs, wal_dir)
        self.end: LogEnd | None = None
        self._folded_damage: str | None = None

    def read(self, after_lsn: int) -> Iterator[LogRecord]:
        """Yield every valid record with LSN > ``after_lsn``, in order, one by
        one (recovery replays whole spans instead: ``read_spans``)."""
        for span in self.read_spans(after_lsn):
            view = memoryview(span.data)
            pos = span.start
            for _ in range(span.count):
                _, length, lsn, time_ns, durable_lsn = RECORD_HEADER.unpack_from(view, pos)
                body = pos + RECORD_HEADER_SIZE
                yield LogRecord(
                    lsn, time_ns, durable_lsn, view[body : body + length], span.path, pos
                )
                pos = body + length

    def read_spans(self, after_lsn: int) -> Iterator[LogSpan]:
        """Yield every valid record with LSN > ``after_lsn``, in order, as
        one span per segment.

        Raises CorruptionError for a damaged segment header and for a gap
        before the first needed record (a missing segment), since no
        recovery mode can continue past either.  Any other stop is described
        in ``self.end`` once the iterator is exhausted.
        """
        segs = self.segments
        expect = after_lsn + 1
        if not segs:
            self.end = LogEnd(clean=True, next_lsn=expect)
            return
        start = 0
        for i, seg in enumerate(segs):
            if seg.first_lsn <= expect:
                start = i
        if segs[start].first_lsn > expect:
            raise CorruptionError(
                f"wal: records {expect}..{segs[start].first_lsn - 1} are missing "
                "(the log starts after the base image ends)",
                file=_name(segs[start].path),
                offset=0,
                lsn=expect,
            )
        next_lsn: int | None = None
        ahead: Buffer | None = None
        for i in range(start, len(segs)):
            seg = segs[i]
            data = ahead if ahead is not None else _map_ahead(self._fs, seg.path)
            # Map the next segment now: the kernel reads it ahead while this
            # one is replayed, so a cold open overlaps disk and CPU.
            ahead = _map_ahead(self._fs, segs[i + 1].path) if i + 1 < len(segs) else None
            _, first = check_header(memoryview(data), seg.path, self._store_id)
            if next_lsn is not None and first != next_lsn:
                what = "missing" if first > next_lsn else "repeated"
                self.end = LogEnd(
                    clean=False,
                    next_lsn=next_lsn,
                    path=seg.path,
                    offset=0,
                    status=SP_BAD_LSN,
                    reason=f"segment starts at lsn {first}: records from {next_lsn} {what}",
                    proof="a whole segment's records are missing or repeated",
                    later_segments=tuple(s.path for s in segs[i:]),
                )
                return
            res = records.scan_span(data, self._seed, first, start=SEGMENT_HEADER_SIZE)
            offset = SEGMENT_HEADER_SIZE
            if res.next_lsn <= after_lsn and not self._ends_cleanly(data, res):
                # Damage in records the base image already holds: they are not
                # needed, so resynchronise at the first record that is.
                resumed = self._resume_after_folded_damage(data, seg, res, expect, segs[i + 1 :])
                if resumed is None:
                    return
                offset, first, res = resumed
            skip = max(0, after_lsn + 1 - first)
            if first + skip < res.next_lsn:
                yield LogSpan(
                    data,
                    _skip_records(data, offset, skip),
                    res.offset,
                    first + skip,
                    res.next_lsn - first - skip,
                    seg.path,
                )
            next_lsn = res.next_lsn
            tail_end = _last_nonzero(data, res.offset)
            if res.status in CLEAN_ENDS and tail_end == res.offset:
                continue
            self.end = self._describe_stop(data, seg, res, tail_end, segs[i + 1 :])
            return
        assert next_lsn is not None
        last = segs[-1]
        self.end = LogEnd(
            clean=True,
            next_lsn=next_lsn,
            folded_damage=self._folded_damage,
            path=last.path,
            offset=res.offset,
            status=res.status,
        )

    @staticmethod
    def _ends_cleanly(data: Buffer, res: records.ScanSpan) -> bool:
        return res.status in CLEAN_ENDS and _last_nonzero(data, res.offset) == res.offset

    def _resume_after_folded_damage(
        self,
        data: Buffer,
        seg: SegmentRef,
        res: records.ScanSpan,
        expect: int,
        later: list[SegmentRef],
    ) -> tuple[int, int, records.ScanSpan] | None:
        """Skip damage below the base image's LSN; None when the log ends there.

        Returns (offset, lsn, scan) of the scan resumed at record ``expect``
        when it is found intact after the damage.  When no record at or
        above ``expect`` follows and no segment does either, the log simply
        ends inside the base image: ``end`` is set clean with no tail to
        append to.  Otherwise ``expect`` itself is missing, which is damage
        like any other: the damaged scan is returned as it was.
        """
        where = f"{_name(seg.path)} at offset {res.offset} (lsn {res.next_lsn})"
        self._folded_damage = (
            f"{STATUS_NAMES.get(res.status, res.status)} in {where}, "
            "below the base image's checkpoint"
        )
        found = records.find_valid(data, self._seed, expect, start=res.offset + 1)
        if found is not None and found[1] == expect:
            return found[0], expect, records.scan_span(data, self._seed, expect, start=found[0])
        if found is None and not later:
            self.end = LogEnd(clean=True, next_lsn=expect, folded_damage=self._folded_damage)
            return None
        return res.offset, res.next_lsn, res

    def _describe_stop(
        self,
        data: Buffer,
        seg: SegmentRef,
        res: records.ScanSpan,
        tail_end: int,
        later: list[SegmentRef],
    ) -> LogEnd:
        status = res.status
        reason = STATUS_NAMES.get(status, f"status {status}")
        if status in CLEAN_ENDS:
            status = SP_ZERO
            reason = "non-zero bytes after a zero-filled header"
        expect = res.next_lsn
        proof = None
        if later:
            proof = f"a later segment ({_name(later[0].path)}) exists"
        count = 0
        pos = res.offset + 1
        while True:
            found = records.find_valid(data, self._seed, expect, start=pos)
            if found is None:
                break
            off, lsn = found
            chain = records.scan(data, self._seed, lsn, start=off)
            for r in chain.records:
                count += 1
                if proof is None and r.durable_lsn >= expect:
                    proof = (
                        f"record {r.lsn} at offset {r.offset} was written after "
                        f"lsn {expect} was durable"
                    )
            pos = max(chain.offset, off) + 1
            if pos > len(data):
                break  # the chain ran to the last byte of the segment
        return LogEnd(
            clean=False,
            next_lsn=expect,
            path=seg.path,
            offset=res.offset,
            status=status,
            reason=reason,
            tail_end=tail_end,
            proof=proof,
            later_records=count,
            later_segments=tuple(s.path for s in later),
            folded_damage=self._folded_damage,
        )


def _name(path: str) -> str:
    import os

    return os.path.join("wal", os.path.basename(path))
