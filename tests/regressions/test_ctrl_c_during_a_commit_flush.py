"""Regression: a Ctrl-C (KeyboardInterrupt) that struck while a committer was
writing or syncing the log reached the caller as StoreFailedError.

The leader of a group commit fails the log on any exception from its I/O,
since it cannot tell what reached the disk; that stays.  But it then raised
StoreFailedError, an ``Exception``, in place of the KeyboardInterrupt, so
``except Exception`` handlers (retry loops) swallowed the user's Ctrl-C,
and ``except KeyboardInterrupt`` cleanup never ran.  The thread the
interrupt struck now gets the KeyboardInterrupt itself; other committers
and later writes still get StoreFailedError until the store is reopened.
"""

from __future__ import annotations

import pytest

import safepoint
from safepoint.fs import File, FileSystem

# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


class InterruptedSyncFile(File):
    __slots__ = ("owner",)

    def sync_data(self) -> None:
        super().sync_data()
        if self.owner.interrupt:
            self.owner.interrupt = False
            # The signal handler runs as the fdatasync returns.
            raise KeyboardInterrupt


class InterruptingFS(FileSystem):
    """Real files; once armed, the next fdatasync is interrupted by Ctrl-C."""

    def __init__(self) -> None:
        self.interrupt = False

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        f = super().open(path, write=write, create=create)
        g = InterruptedSyncFile(f.fd, f.path)
        g.owner = self
        return g


def test_ctrl_c_during_a_commits_fsync_raises_keyboard_interrupt(tmp_path):
    fs = InterruptingFS()
    db = safepoint.open(tmp_path / "store.sp", fs=fs, checkpoint_bytes=None)
    db.put(b"before", b"1")
    fs.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        db.put(b"during", b"2")
    db.close()


def test_after_ctrl_c_in_a_flush_writes_are_refused_until_reopen(tmp_path):
    path = tmp_path / "store.sp"
    fs = InterruptingFS()
    db = safepoint.open(path, fs=fs, checkpoint_bytes=None)
    db.put(b"before", b"1")
    fs.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        db.put(b"during", b"2")
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"after", b"3")
    db.close()
    with safepoint.open(path) as again:
        assert again[b"before"] == b"1"
        assert b"after" not in again


def test_ctrl_c_during_a_rollovers_fsync_raises_keyboard_interrupt(tmp_path):
    fs = InterruptingFS()
    # sync="none": records wait unsynced until the rollover syncs them.
    db = safepoint.open(
        tmp_path / "store.sp", fs=fs, sync="none", segment_bytes=4096, checkpoint_bytes=None
    )
    db.put(b"first", b"x" * 3000)
    fs.interrupt = True
    with pytest.raises(KeyboardInterrupt):
        db.put(b"second", b"y" * 3000)  # does not fit: the rollover syncs the first
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"after", b"3")
    db.close()
