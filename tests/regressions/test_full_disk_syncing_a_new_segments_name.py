"""Regression: a full disk reported by the fsync of ``wal/`` after a new
segment had been renamed into place was treated as a clean DiskFullError.

The rollover creates ``prepared.tmp``'s header, renames it to the new
segment's name, then fsyncs the directory.  When that fsync raised ENOSPC,
the commit failed "cleanly" and the log stayed in the old segment, but the
new, empty segment was already there under its name.  The next commit that
fit went into the old segment with the LSN the empty one claims to start
at, and from then on the store refused to open: "segment starts at lsn 2:
records from 3 repeated" (CorruptionError), its acknowledged commits
reachable only by setting them aside.  A failure once the segment is named
now fails the log like a failed fsync (StoreFailedError until reopen), and
the reopen finds an empty segment that simply continues the log.
"""

from __future__ import annotations

import errno

import pytest

import safepoint
from safepoint.fs import FileSystem

SEGMENT_BYTES = 4096
BIG = b"x" * 3000  # two do not fit in one 4096-byte segment


# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


class FullDiskOnWalDirSyncFS(FileSystem):
    """Real files; once armed, the next fsync of ``wal/`` raises ENOSPC."""

    def __init__(self) -> None:
        self.armed = False

    def sync_dir(self, path: str) -> None:
        if self.armed and path.rstrip("/").endswith("wal"):
            self.armed = False
            raise OSError(errno.ENOSPC, "No space left on device", path)
        super().sync_dir(path)


def open_store(path, fs):
    db = safepoint.open(path, fs=fs, segment_bytes=SEGMENT_BYTES, checkpoint_bytes=None)
    db._wal._wait_prepared()  # its own fsyncs are not the directory's
    return db


def test_a_full_disk_syncing_the_new_segments_name_fails_the_store(tmp_path):
    fs = FullDiskOnWalDirSyncFS()
    db = open_store(tmp_path / "store.sp", fs)
    db.put(b"first", BIG)
    fs.armed = True
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"second", BIG)  # rolls over
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"small", b"s")
    db.close()


def test_commits_after_that_failure_never_make_the_store_unopenable(tmp_path):
    path = tmp_path / "store.sp"
    fs = FullDiskOnWalDirSyncFS()
    db = open_store(path, fs)
    db.put(b"first", BIG)
    acknowledged = {b"first": BIG}
    fs.armed = True
    with pytest.raises((safepoint.DiskFullError, safepoint.StoreFailedError)):
        db.put(b"second", BIG)
    for i in range(6):  # as a caller retrying after a full disk would
        key, value = b"more%d" % i, bytes([i]) * 500  # the first fits the old segment
        try:
            db.put(key, value)
        except safepoint.StoreFailedError:
            break
        acknowledged[key] = value
    db.close()
    with safepoint.open(path, segment_bytes=SEGMENT_BYTES) as again:
        assert again.recovery.clean
        assert dict(again.items()) == acknowledged
        again.put(b"after", b"reopen")
