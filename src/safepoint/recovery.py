"""Recovery at open: base image, then replay of the log written after it.

Steps (docs/design.md, "Recovery"):

1. Read the checkpoint LSN from the base image.
2. Replay every valid record above it into the memtable.
3. Decide about the end of the log by mode:
   - ``tolerate_tail``: a torn tail (see wal_reader) is cut; damage that a
     later record proves was once durable raises CorruptionError;
   - ``strict``: any damage, torn or not, raises CorruptionError;
   - ``point_in_time``: keep the valid prefix and set the rest aside.
4. Cut durably: the bytes are first copied to ``lost/`` (synced), then
   zeroed in the segment (synced).  A crash between the two repeats the same
   decision at the next open, so recovery is itself crash-safe.

Read-only opens replay into a private memtable and change no file.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

from .errors import CorruptionError
from .fs import FileSystem
from .memtable import Memtable
from .segment import SegmentRef
from .wal_reader import LogEnd, LogReader

log = logging.getLogger("safepoint")

RECOVERY_MODES = ("tolerate_tail", "strict", "point_in_time")
LOST_DIR = "lost"


@dataclass
class RecoveryReport:
    """What recovery did at open."""

    mode: str
    base_lsn: int  # the checkpoint the base image holds
    last_lsn: int  # the last record recovered (base_lsn if none)
    records_replayed: int
    duration_s: float
    clean: bool  # the log ended cleanly: nothing was cut
    torn_tail: bool = False  # a torn tail was cut (tolerate_tail/point_in_time)
    bytes_dropped: int = 0
    records_dropped: int = 0  # valid records after the cut (point_in_time)
    set_aside: list[str] = field(default_factory=list)  # files written to lost/
    stop_reason: str = ""
    folded_damage: str | None = None  # damage in records the base already held

    def summary(self) -> str:
        """One line for a log or a terminal."""
        s = (
            f"recovered to lsn {self.last_lsn}: base image at lsn {self.base_lsn}, "
            f"{self.records_replayed} records replayed in {self.duration_s * 1000:.1f} ms"
        )
        if not self.clean:
            s += f"; cut {self.bytes_dropped} bytes at the end of the log ({self.stop_reason})"
            if self.records_dropped:
                s += f", {self.records_dropped} later records set aside"
            if self.set_aside:
                s += f", kept in {', '.join(self.set_aside)}"
        return s


@dataclass
class Recovered:
    """Recovery's result: the report and where the writer continues."""

    report: RecoveryReport
    next_lsn: int
    segments: list[SegmentRef]
    tail_offset: int | None  # append in the last segment here; None: new one


def recover(
    fs: FileSystem,
    root: str,
    store_id: bytes,
    base_lsn: int,
    memtable: Memtable,
    *,
    mode: str = "tolerate_tail",
    readonly: bool = False,
) -> Recovered:
    """Replay the log of the store at ``root`` into ``memtable``."""
    if mode not in RECOVERY_MODES:
        raise ValueError(f"recovery must be one of {RECOVERY_MODES}, not {mode!r}")
    t0 = time.perf_counter()
    wal_dir = os.path.join(root, "wal")
    reader = LogReader(fs, wal_dir, store_id)
    replayed = 0
    last = base_lsn
    # Records are applied a segment's span at a time (Memtable.apply_records):
    # replay is the per-record hot loop of every open.
    for span in reader.read_spans(base_lsn):
        memtable.apply_records(span.data, span.start, span.stop)
        replayed += span.count
        last = span.first_lsn + span.count - 1
    if replayed:
        memtable.last_lsn = last
    end = reader.end
    assert end is not None
    segments = list(reader.segments)
    report = RecoveryReport(
        mode=mode,
        base_lsn=base_lsn,
        last_lsn=last,
        records_replayed=replayed,
        duration_s=0.0,
        clean=end.clean,
    )
    if end.folded_damage is not None:
        if mode == "strict":
            raise CorruptionError(f"wal: {end.folded_damage}")
        report.folded_damage = end.folded_damage
        log.warning("safepoint: ignored %s", end.folded_damage)
    if not end.clean:
        _handle_damage(fs, root, end, report, mode, readonly)
        moved = set(end.later_segments) if mode == "point_in_time" else set()
        segments = [s for s in segments if s.path not in moved]
    report.duration_s = time.perf_counter() - t0
    if replayed or not end.clean:
        log.info("safepoint: %s", report.summary())
    next_lsn = max(end.next_lsn, base_lsn + 1)
    tail: int | None = None
    if segments and end.path == segments[-1].path and end.next_lsn >= base_lsn + 1:
        tail = end.offset
    return Recovered(report, next_lsn, segments, tail)


def _handle_damage(
    fs: FileSystem, root: str, end: LogEnd, report: RecoveryReport, mode: str, readonly: bool
) -> None:
    assert end.path is not None
    name = os.path.join("wal", os.path.basename(end.path))
    why = end.reason + (f"; {end.proof}" if end.proof else "")
    if mode == "strict" or (mode == "tolerate_tail" and not end.torn_tail):
        hint = (
            ""
            if mode == "point_in_time"
            else "; open with recovery='point_in_time' to keep the valid prefix and set the rest aside"
        )
        raise CorruptionError(
            f"wal: {why} (expected lsn {end.next_lsn}){hint}",
            file=name,
            offset=end.offset,
            lsn=end.next_lsn,
        )
    report.torn_tail = end.torn_tail
    report.bytes_dropped = max(end.tail_end - end.offset, 0)
    report.records_dropped = end.later_records
    report.stop_reason = f"{why} in {name} at offset {end.offset}"
    if readonly:
        return
    lost = os.path.join(root, LOST_DIR)
    if not fs.exists(lost):
        fs.makedirs(lost)
        fs.sync_dir(root)
    f = fs.open(end.path, write=True)
    try:
        if end.tail_end > end.offset:
            cut = f.read_at(end.tail_end - end.offset, end.offset)
            kind = "torn" if end.torn_tail else "damaged"
            side = _unique(
                fs, os.path.join(lost, f"{os.path.basename(end.path)}.{end.offset}.{kind}")
            )
            fs.write_file_atomic(side, cut)
            report.set_aside.append(os.path.relpath(side, root))
            f.zero_fill(end.offset, end.tail_end)
            f.sync_data()
    finally:
        f.close()
    for path in end.later_segments:
        dst = _unique(fs, os.path.join(lost, os.path.basename(path)))
        fs.rename(path, dst)
        report.set_aside.append(os.path.relpath(dst, root))
        report.bytes_dropped += fs.file_size(dst)
    if end.later_segments:
        fs.sync_dir(lost)
        fs.sync_dir(os.path.join(root, "wal"))


def _unique(fs: FileSystem, path: str) -> str:
    if not fs.exists(path):
        return path
    n = 1
    while fs.exists(f"{path}.{n}"):
        n += 1
    return f"{path}.{n}"
