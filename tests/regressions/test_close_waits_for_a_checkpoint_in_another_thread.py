"""Regression: close() did not wait for a checkpoint running in another thread.

close() stopped the background checkpointer and took the write lock, but a
checkpoint started with ``db.checkpoint()`` (or ``db.save()``) on another
thread holds the write lock only for its memtable swap.  close() then shut
the log and released the LMDB environment while that checkpoint was still
writing its LMDB transaction: the process hung inside LMDB, or the
checkpoint died with AttributeError on the closed base image.  close() now
waits for a running checkpoint (the checkpointer's lock) before it closes
anything.
"""

from __future__ import annotations

import threading

import safepoint
from safepoint.fs import FileSystem

JOIN_TIMEOUT_S = 10


class HeldRemovalsFS(FileSystem):
    """Real files; once armed, deleting a log segment waits for ``release``.

    A checkpoint deletes the segments it retired as its last step, after its
    LMDB commit, so holding that step holds a checkpoint mid-run.
    """

    def __init__(self) -> None:
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def remove(self, path: str) -> None:
        if self.armed and path.endswith(".wal"):
            self.entered.set()
            self.release.wait(JOIN_TIMEOUT_S)
        super().remove(path)


def fill_several_segments(db: safepoint.Store) -> dict[bytes, bytes]:
    written = {b"k%03d" % i: bytes([i]) * 300 for i in range(60)}
    for k, v in written.items():
        db.put(k, v)
    return written


def test_close_returns_only_after_a_checkpoint_in_another_thread_ends(tmp_path):
    path = tmp_path / "store.sp"
    fs = HeldRemovalsFS()
    db = safepoint.open(path, fs=fs, segment_bytes=4096, checkpoint_bytes=None)
    written = fill_several_segments(db)
    order: list[str] = []
    fs.armed = True

    def checkpoint() -> None:
        db.checkpoint()
        order.append("checkpoint ended")

    def close() -> None:
        db.close()
        order.append("close returned")

    ck = threading.Thread(target=checkpoint, daemon=True)
    ck.start()
    assert fs.entered.wait(JOIN_TIMEOUT_S), "the checkpoint never retired a segment"
    cl = threading.Thread(target=close, daemon=True)
    cl.start()
    cl.join(0.5)  # unfixed, close returns here while the checkpoint is held
    fs.release.set()
    ck.join(JOIN_TIMEOUT_S)
    cl.join(JOIN_TIMEOUT_S)
    assert order == ["checkpoint ended", "close returned"]
    with safepoint.open(path) as again:
        assert dict(again.items()) == written
        assert again.stats()["checkpoint_lsn"] == len(written)
