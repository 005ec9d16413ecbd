"""Regression: a single-key read racing a failed checkpoint could return the
value from before an acknowledged commit.

Single-key reads take no lock: they look in the memtable, then the frozen
memtable, then the base image.  When a checkpoint failed after its swap,
it put the frozen entries back into the memtable and cleared ``_frozen``;
a reader that had already looked in the (new, nearly empty) memtable then
found no frozen memtable and read the base image's older value.  The
failure path now leaves the frozen reference in place (pointing at the
restored memtable) until the next checkpoint's swap replaces it.

The reader is paused at that exact point with sys.settrace, standing for
the thread switch that makes the race.  It reads through ``Store._get_py``,
the Python get: on the native backend ``Store.get`` is C (native/sp_get.c),
which reads both memtables with no thread switch between them, and
tests/test_get_native.py holds it to this one's answers.
"""

from __future__ import annotations

import errno
import sys
import threading

import pytest

import safepoint
from safepoint.fs import File, FileSystem
from safepoint.store import Store

TIMEOUT_S = 10


# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


class HeldFailingSyncFile(File):
    __slots__ = ("owner",)

    def sync_data(self) -> None:
        owner = self.owner
        if owner.armed:
            owner.armed = False
            owner.entered.set()
            owner.go.wait(TIMEOUT_S)
            raise OSError(errno.EIO, "injected fdatasync failure", self.path)
        super().sync_data()


class HeldFailingSyncFS(FileSystem):
    """Real files; once armed, the next fdatasync waits for ``go``, then fails."""

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.go = threading.Event()

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        f = super().open(path, write=write, create=create)
        g = HeldFailingSyncFile(f.fd, f.path)
        g.owner = self
        return g


def read_paused_after_the_memtable(db: Store, key: bytes, paused, resume, out) -> None:
    """db.get(key) in Python, paused once it has looked in the memtable and
    before it looks for the frozen one (get inlines _lookup's layers; other
    reads call it)."""
    codes = (Store._get_py.__code__, Store._lookup.__code__)

    def tracer(frame, event, arg):
        if frame.f_code not in codes:
            return None

        def local(frame, event, arg):
            if event == "line" and "frozen = self._frozen" in _source_line(frame):
                paused.set()
                resume.wait(TIMEOUT_S)
            return local

        return local

    sys.settrace(tracer)
    try:
        out.append(Store._get_py(db, key))
    finally:
        sys.settrace(None)


def _source_line(frame) -> str:
    import linecache

    return linecache.getline(frame.f_code.co_filename, frame.f_lineno)


def test_a_read_racing_a_failed_checkpoint_sees_the_acknowledged_value(tmp_path):
    fs = HeldFailingSyncFS()
    # sync="none": the checkpoint's own fdatasync of the log is the one failed.
    db = safepoint.open(tmp_path / "store.sp", fs=fs, sync="none", checkpoint_bytes=None)
    db.put(b"k", b"old")
    db.checkpoint()
    db.put(b"k", b"new")
    fs.armed = True
    failed: list[BaseException] = []

    def checkpoint() -> None:
        try:
            db.checkpoint()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            failed.append(exc)

    ck = threading.Thread(target=checkpoint, daemon=True)
    ck.start()
    assert fs.entered.wait(TIMEOUT_S)  # swapped: b"k" is in the frozen memtable
    paused, resume, got = threading.Event(), threading.Event(), []
    reader = threading.Thread(
        target=read_paused_after_the_memtable,
        args=(db, b"k", paused, resume, got),
        daemon=True,
    )
    reader.start()
    assert paused.wait(TIMEOUT_S)
    fs.go.set()  # the checkpoint fails and puts its entries back
    ck.join(TIMEOUT_S)
    assert failed and isinstance(failed[0], safepoint.StoreFailedError)
    resume.set()
    reader.join(TIMEOUT_S)
    assert got == [b"new"]
    assert db[b"k"] == b"new"
    db.close()
