"""Regression: an open that failed while syncing the log's last segment left
that segment's file descriptor open.

Before appending to the segment recovery ended in, the writer fdatasyncs it
(its records may have been read from the page cache of a killed process).
When that fdatasync failed, the OSError propagated out of ``safepoint.open``
but the descriptor was never closed: every retried open leaked one.
"""

from __future__ import annotations

import errno
import os

import pytest

import safepoint
from safepoint.fs import File, FileSystem


class FailingSyncFile(File):
    __slots__ = ()

    def sync_data(self) -> None:
        raise OSError(errno.EIO, "injected fdatasync failure", self.path)


class FailingSegmentSyncFS(FileSystem):
    """Real files; every fdatasync of a log segment fails with EIO."""

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        f = super().open(path, write=write, create=create)
        if path.endswith(".wal"):
            return FailingSyncFile(f.fd, f.path)
        return f


def open_descriptors_of(suffix: str) -> int:
    """How many of this process's descriptors point to a file ending in ``suffix``."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # the listing's own descriptor, gone already
        n += target.endswith(suffix)
    return n


# Error paths


def test_an_open_whose_segment_sync_fails_leaves_no_descriptor_open(tmp_path):
    path = tmp_path / "store.sp"
    with safepoint.open(path) as db:
        db.put(b"k", b"v")
    before = open_descriptors_of(".wal")
    for _ in range(3):
        with pytest.raises(OSError, match="injected"):
            safepoint.open(path, fs=FailingSegmentSyncFS())
    assert open_descriptors_of(".wal") == before
    with safepoint.open(path) as db:
        assert db[b"k"] == b"v"
