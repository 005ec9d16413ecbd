"""A checkpoint's fold leaves the GIL to durable committers (checkpoint.py's
pacers): a writer keeps committing while a checkpoint runs, the checkpoint
reports how long it yielded, and every commit, made before, during or
after, is there after a reopen.

On the native engine with sync="always" the fold waits exactly when the
engine says a committer needs the GIL (sp_wal_yield); on the Python engine
(a fault-injecting file system here) and in the other sync modes it keeps a
fixed duty cycle.
Rates are not asserted (benchmarks/ measure them); that the writer is not
starved, and that nothing is lost, is.
"""

from __future__ import annotations

import threading
import time

import pytest

import safepoint
from safepoint import records
from safepoint.testing import FaultFS

ENTRIES = 40_000


def fill(db: safepoint.Store) -> None:
    for i in range(0, ENTRIES, 1000):
        db.update((b"fill-%08d" % j, b"v" * 100) for j in range(i, i + 1000))


@pytest.mark.parametrize("engine", ["native", "python"])
def test_a_writer_keeps_committing_during_a_checkpoint_and_nothing_is_lost(tmp_path, engine):
    path = tmp_path / "s.sp"
    fs = None if engine == "native" else FaultFS(path)
    db = safepoint.open(path, sync="always", checkpoint_bytes=None, fs=fs)
    # SAFEPOINT_BACKEND=python runs the Python engine on real files too.
    native = engine == "native" and records.BACKEND == "native"
    assert db.stats()["wal_engine"] == ("native" if native else "python")
    fill(db)
    done: list[tuple[bytes, float]] = []
    stop = threading.Event()
    started = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            key = b"w-%08d" % i
            db.put(key, b"x" * 100)
            done.append((key, time.perf_counter()))
            started.set()
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    started.wait(10)
    c0 = time.perf_counter()
    info = db.checkpoint()
    c1 = time.perf_counter()
    time.sleep(0.05)
    stop.set()
    t.join()
    assert info.entries >= ENTRIES
    during = [k for k, at in done if c0 <= at <= c1]
    assert during, "the writer made no commit while the checkpoint ran"
    assert info.yielded_s > 0.0
    assert info.yielded_s < info.duration_s
    db.close()
    with safepoint.open(path, checkpoint_bytes=None, fs=fs) as db:
        for key, _ in done:
            assert db.get(key) == b"x" * 100
        assert db.get(b"fill-%08d" % (ENTRIES - 1)) == b"v" * 100


def test_with_no_commits_the_fold_never_yields(tmp_path):
    with safepoint.open(tmp_path / "s.sp", sync="always", checkpoint_bytes=None) as db:
        fill(db)
        info = db.checkpoint()
        assert info.entries == ENTRIES
        if records.BACKEND == "native":
            assert info.yielded_s == 0.0
        else:
            # The duty cycle cannot see a committer starved of the GIL, so it
            # assumes one for the first 20 ms after the swap (_ACTIVE_S).
            assert info.yielded_s < 0.1


def test_the_engine_pacer_is_used_on_the_native_engine_with_durable_commits(tmp_path, monkeypatch):
    from safepoint import checkpoint

    made: list[str] = []
    for name in ("_Pacer", "_EnginePacer"):
        cls = getattr(checkpoint, name)

        class Recording(cls):  # type: ignore[misc, valid-type]
            __slots__ = ()

            def __init__(self, *args, _name=name, **kwargs):
                made.append(_name)
                super().__init__(*args, **kwargs)

        monkeypatch.setattr(checkpoint, name, Recording)
    with safepoint.open(tmp_path / "n.sp", checkpoint_bytes=None) as db:
        db.put(b"k", b"v")
        db.checkpoint()
    with safepoint.open(
        tmp_path / "p.sp", checkpoint_bytes=None, fs=FaultFS(tmp_path / "p.sp")
    ) as db:
        db.put(b"k", b"v")
        db.checkpoint()
    # Without durable flushes the engine cannot tell when a committer needs
    # the GIL: sync="none" keeps the duty cycle.
    with safepoint.open(tmp_path / "s.sp", checkpoint_bytes=None, sync="none") as db:
        db.put(b"k", b"v")
        db.checkpoint()
    first = "_EnginePacer" if records.BACKEND == "native" else "_Pacer"
    assert made == [first, "_Pacer", "_Pacer"]
