"""Regression: a record bigger than the room in an empty segment was written
past the segment's preallocated zeros, so a full disk struck the record
write itself: the log failed (StoreFailedError, every later write refused
until reopen) and the failed commit stayed visible to readers.

An empty segment (a new store's first, or the one a reopen continues in)
takes any record without a rollover.  docs/design.md ("Failures") and SPEC
§3.5 promise that a full disk strikes only where space is allocated, fails
the commit cleanly with DiskFullError and lets later commits succeed once
space is freed.  The writer now zero-fills the missing room before queueing
the record, as a rollover does for a new segment.
"""

from __future__ import annotations

import pytest

import safepoint

SEGMENT_BYTES = 4096
BIG = b"x" * (3 * SEGMENT_BYTES)


# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


@pytest.fixture
def db(root, fs):
    db = safepoint.open(root, fs=fs, segment_bytes=SEGMENT_BYTES, checkpoint_bytes=None)
    db._wal._wait_prepared()  # the background zero-fill takes its space first
    fs.failures.disk_full_after(0)
    yield db
    db.close()


def test_a_big_first_record_on_a_full_disk_raises_disk_full_error(db):
    with pytest.raises(safepoint.DiskFullError):
        db.put(b"big", BIG)


def test_a_big_first_record_that_hit_a_full_disk_is_not_applied(db):
    with pytest.raises(safepoint.DiskFullError):
        db.put(b"big", BIG)
    assert b"big" not in db
    assert db.stats()["lsn"] == 0


def test_the_big_record_commits_once_space_is_freed_and_survives_reopen(root, db, fs):
    with pytest.raises(safepoint.DiskFullError):
        db.put(b"big", BIG)
    fs.failures.free_space()
    db.put(b"big", BIG)
    db.put(b"small", b"y")
    db.close()
    with safepoint.open(root, segment_bytes=SEGMENT_BYTES) as again:
        assert again.recovery.clean
        assert dict(again.items()) == {b"big": BIG, b"small": b"y"}
        assert again.stats()["lsn"] == 2
