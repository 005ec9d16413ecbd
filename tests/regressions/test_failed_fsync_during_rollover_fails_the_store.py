"""Regression: an fsync that failed while the log rolled over to a new
segment surfaced as a bare OSError from the commit, and the store went on
accepting writes.

SPEC §3.5 and docs/design.md ("Failures"): a failed fsync fails the commit
with StoreFailedError and every later write too, until the store is
reopened.  The rollover fsyncs the new segment's header (as prepared.tmp)
and the wal/ directory; a failure of either now fails the log like a failed
record fsync does.  A full disk there stays a clean DiskFullError
(tests/test_failures.py).
"""

from __future__ import annotations

import pytest

import safepoint
from safepoint.testing import FaultFS

VALUE = b"v" * 300  # 13 records fill a 4096-byte segment


# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


def commit_until_error(db):
    for i in range(100):
        try:
            db.put(b"k%03d" % i, VALUE)
        except Exception as exc:  # noqa: BLE001 - the error is what we test
            return exc
    raise AssertionError("no commit failed")


@pytest.mark.parametrize(
    ("match", "dirs"),
    [("wal", True), ("wal/prepared.tmp", False)],
    ids=["wal-directory-fsync", "new-segment-header-fsync"],
)
def test_failed_fsync_during_rollover_fails_the_commit_and_the_store(tmp_path, match, dirs):
    root = tmp_path / "store"
    fs = FaultFS(root)
    db = safepoint.open(root, fs=fs, segment_bytes=4096, checkpoint_bytes=None)
    try:
        # The background zero-fill of the next segment (started once the
        # current one is half full) fsyncs prepared.tmp too; let it run and
        # finish first so that the rollover's fsync is the one hit.
        for i in range(8):
            db.put(b"pre%d" % i, VALUE)
        db._wal._wait_prepared()
        fs.failures.fail_fsync(1, match=match, dirs=dirs)
        exc = commit_until_error(db)
        assert isinstance(exc, safepoint.StoreFailedError), repr(exc)
        with pytest.raises(safepoint.StoreFailedError):
            db.put(b"after", b"the failure")
    finally:
        db.close()
        fs.close()
