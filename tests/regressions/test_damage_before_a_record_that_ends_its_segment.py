"""Regression: damage before a valid record that ends exactly at the end of
its segment made ``safepoint.open`` raise ValueError ("start must be in
[0, n], got n + 1") instead of cutting the torn tail or raising
CorruptionError.

A segment is full to its last byte whenever the records that fit end
exactly at its preallocated size, and a record larger than a segment gets a
segment of exactly its size.  wal_reader._describe_stop resumed its search
for later records one byte past the end of such a chain.  Found by the
fuzz/ recovery target.
"""

from __future__ import annotations

import pytest

import safepoint

VALUE = b"v" * 100


# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


def fill_segment_exactly(root):
    """Three unsynced records in a segment cut to end after the third;
    the middle one damaged.  Returns the segment path."""
    with safepoint.open(root, sync="none", segment_bytes=4096) as db:
        for i in range(3):
            db.put(b"k%d" % i, VALUE)
    segment = sorted((root / "wal").glob("*.wal"))[0]
    data = segment.read_bytes()
    end = len(data.rstrip(b"\0"))
    record = (end - 40) // 3
    damaged = bytearray(data[:end])
    damaged[40 + record + 50] ^= 1
    segment.write_bytes(bytes(damaged))
    return segment


def test_torn_record_before_a_record_ending_the_segment_is_cut(tmp_path):
    fill_segment_exactly(tmp_path / "store")
    with safepoint.open(tmp_path / "store", segment_bytes=4096) as db:
        assert db.recovery.torn_tail
        assert dict(db.items()) == {b"k0": VALUE}


def test_strict_recovery_reports_it_as_corruption(tmp_path):
    fill_segment_exactly(tmp_path / "store")
    with pytest.raises(safepoint.CorruptionError):
        safepoint.open(tmp_path / "store", recovery="strict", segment_bytes=4096)
