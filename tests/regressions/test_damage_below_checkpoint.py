"""Regression: damage in log records the base image already holds.

Recovery used to stop at the first bad record even when its LSN was at or
below the checkpoint, refusing to open in tolerate_tail mode and, in
point_in_time, setting aside acknowledged commits made after the checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import safepoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers import flip_bit, record_at_lsn  # noqa: E402


def build(path: Path, *, after: int = 10) -> None:
    db = safepoint.open(path, checkpoint_bytes=None, segment_bytes=1 << 16)
    for i in range(10):
        db.put(b"k%d" % i, b"v%d" % i)
    db.checkpoint()
    for i in range(10, 10 + after):
        db.put(b"k%d" % i, b"v%d" % i)
    db.close()


def damage_record(path: Path, *lsns: int) -> None:
    places = [record_at_lsn(path, lsn) for lsn in lsns]
    for seg, rec in places:
        flip_bit(seg, rec.offset + rec.length - 1, 0)


def test_damage_below_the_checkpoint_is_skipped_and_reported(tmp_path: Path) -> None:
    build(tmp_path / "s")
    damage_record(tmp_path / "s", 5)
    with safepoint.open(tmp_path / "s") as db:
        assert {k: db[k] for k in db} == {b"k%d" % i: b"v%d" % i for i in range(20)}
        assert db.recovery.folded_damage is not None
        assert "lsn 5" in db.recovery.folded_damage
        db.put(b"new", b"x")
    with safepoint.open(tmp_path / "s") as db:
        assert db[b"new"] == b"x"
        assert len(db) == 21


def test_damage_below_the_checkpoint_with_no_later_records_opens(tmp_path: Path) -> None:
    build(tmp_path / "s", after=0)
    damage_record(tmp_path / "s", 5)
    with safepoint.open(tmp_path / "s") as db:
        assert len(db) == 10
        db.put(b"new", b"x")
    with safepoint.open(tmp_path / "s") as db:
        assert db[b"new"] == b"x"


def test_point_in_time_keeps_acknowledged_commits_after_the_checkpoint(tmp_path: Path) -> None:
    build(tmp_path / "s")
    damage_record(tmp_path / "s", 5)
    with safepoint.open(tmp_path / "s", recovery="point_in_time") as db:
        assert len(db) == 20
        assert db.recovery.records_dropped == 0


# Error paths


def test_strict_mode_still_reports_damage_below_the_checkpoint(tmp_path: Path) -> None:
    build(tmp_path / "s")
    damage_record(tmp_path / "s", 5)
    with pytest.raises(safepoint.CorruptionError, match="lsn 5"):
        safepoint.open(tmp_path / "s", recovery="strict")


def test_a_missing_record_just_above_the_checkpoint_is_still_damage(tmp_path: Path) -> None:
    build(tmp_path / "s")
    damage_record(tmp_path / "s", 5, 11)
    with pytest.raises(safepoint.CorruptionError):
        safepoint.open(tmp_path / "s")
