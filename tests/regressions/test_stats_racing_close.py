"""Regression: ``stats()`` racing ``close()`` in another thread raised
AttributeError ('NoneType' object has no attribute 'begin').

stats() checks that the store is open, then reads the checkpoint LSN and
count from the base image's meta database.  When close() released the base
image in between, that read used the cleared environment.  Reads of the
meta database now raise ClosedError like every other read racing close (3
in 600 racing calls failed before).  The reader is paused at that point
with sys.settrace, standing for the thread switch.
"""

from __future__ import annotations

import sys
import threading

import pytest

import safepoint
from safepoint.store import Store

TIMEOUT_S = 10


def test_stats_racing_close_raises_closed_error(tmp_path):
    db = safepoint.open(tmp_path / "store.sp")
    db.put(b"k", b"v")
    paused, resume, outcome = threading.Event(), threading.Event(), []
    stats_code = Store.stats.__code__

    def tracer(frame, event, arg):
        if frame.f_code is not stats_code:
            return None

        def local(frame, event, arg):
            # The first line after self._check_open() returned.
            if event == "line" and not paused.is_set() and "wal = self._wal" in _line(frame):
                paused.set()
                resume.wait(TIMEOUT_S)
            return local

        return local

    def read_stats() -> None:
        sys.settrace(tracer)
        try:
            outcome.append(db.stats())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        finally:
            sys.settrace(None)

    reader = threading.Thread(target=read_stats, daemon=True)
    reader.start()
    assert paused.wait(TIMEOUT_S)
    db.close()
    resume.set()
    reader.join(TIMEOUT_S)
    assert len(outcome) == 1
    with pytest.raises(safepoint.ClosedError):
        if isinstance(outcome[0], BaseException):
            raise outcome[0]


def _line(frame) -> str:
    import linecache

    return linecache.getline(frame.f_code.co_filename, frame.f_lineno)
