"""Regression: a failed wal/ directory fsync while a checkpoint retires
segments raised a bare OSError and the store kept accepting writes, against
SPEC §3.5 (after a failed fsync, writes are refused until reopen)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import safepoint
from safepoint.fs import FileSystem


class FailingDirSync(FileSystem):
    """Fails the next fsync of a wal/ directory once armed."""

    armed = False

    def sync_dir(self, path: str) -> None:
        if self.armed and os.path.basename(path) == "wal":
            self.armed = False
            raise OSError(errno.EIO, "injected EIO", path)
        super().sync_dir(path)


def test_failed_directory_fsync_while_retiring_fails_the_store(tmp_path: Path) -> None:
    fs = FailingDirSync()
    db = safepoint.open(tmp_path / "s", fs=fs, segment_bytes=4096, checkpoint_bytes=None)
    for i in range(200):
        db.put(b"k%03d" % i, b"v" * 40)
    assert db.stats()["wal_segments"] > 1
    fs.armed = True
    with pytest.raises(safepoint.StoreFailedError):
        db.checkpoint()
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"after", b"x")
    db.close()
    with safepoint.open(tmp_path / "s") as db:
        assert len(db) == 200
        db.put(b"after", b"x")
