"""Regression: two threads closing the same writer at once could give its
shared LMDB environment back twice, closing it under a read-only view of the
same store in the same process.

A writer and a view in one process share one LMDB environment, counted in a
registry.  Both close() calls passed the "already closed?" check, queued on
the store's locks, and then ran ``BaseImage.close`` side by side: each read
``self.env`` before either cleared it, so the count dropped by two and the
view's environment was closed (its reads then failed with raw LMDB errors).
``BaseImage.close`` now takes the environment out atomically.  One closer
is paused inside it with sys.settrace, standing for the thread switch.
"""

from __future__ import annotations

import linecache
import sys
import threading
import time

import safepoint
from safepoint.base import BaseImage
from safepoint.store import Store

TIMEOUT_S = 10


def close_paused_after_reading_env(db, paused, resume) -> None:
    """db.close(), paused in BaseImage.close once it holds the environment it
    will give back (at ``if env is not None``)."""
    code = BaseImage.close.__code__

    def tracer(frame, event, arg):
        if frame.f_code is not code or frame.f_locals.get("self") is not db._base:
            return None

        def local(frame, event, arg):
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if event == "line" and "if env is not None" in line:
                paused.set()
                resume.wait(TIMEOUT_S)
                return None
            return local

        return local

    sys.settrace(tracer)
    try:
        db.close()
    finally:
        sys.settrace(None)


def wait_until_blocked_in_close(*threads: threading.Thread) -> None:
    """Wait until each thread waits on a lock inside Store.close (past its
    closed check): its innermost Python frame is close, at the ``with``."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        frames = sys._current_frames()
        if all(_at_close_locks(frames.get(t.ident)) for t in threads):
            return
        time.sleep(0.001)
    raise AssertionError("the closers never reached the store's locks")


def _at_close_locks(frame) -> bool:
    return (
        frame is not None
        and frame.f_code is Store.close.__code__
        and "_lock" in linecache.getline(frame.f_code.co_filename, frame.f_lineno)
    )


def test_two_threads_closing_a_writer_leave_a_readonly_views_environment_open(tmp_path):
    path = tmp_path / "store.sp"
    db = safepoint.open(path, checkpoint_bytes=None)
    db.put(b"k", b"v")
    db.checkpoint()
    view = safepoint.open(path, readonly=True)
    entered, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        # Both closers pass the closed check, then queue behind this.
        with db.transaction():
            entered.set()
            release.wait(TIMEOUT_S)

    holder = threading.Thread(target=hold_the_write_lock, daemon=True)
    holder.start()
    assert entered.wait(TIMEOUT_S)
    paused, resume = threading.Event(), threading.Event()
    first = threading.Thread(
        target=close_paused_after_reading_env, args=(db, paused, resume), daemon=True
    )
    second = threading.Thread(target=db.close, daemon=True)
    first.start()
    wait_until_blocked_in_close(first)  # first in line for the store's locks
    second.start()
    wait_until_blocked_in_close(first, second)
    release.set()
    assert paused.wait(TIMEOUT_S)
    second.join(TIMEOUT_S)
    resume.set()
    first.join(TIMEOUT_S)
    holder.join(TIMEOUT_S)
    assert view[b"k"] == b"v"
    assert dict(view.items()) == {b"k": b"v"}
    view.close()
