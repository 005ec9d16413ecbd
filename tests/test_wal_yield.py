"""The group-commit engine's yield (sp_wal_yield): how a checkpoint's fold,
which holds the GIL between short steps, learns that a committer needs it.

It must wait while another thread is back from a durable flush and has not
called flush again (up to 1 ms after its return), or while a flush in flight
is due to end within the step, and not otherwise; and never past its bound.
Real files and real threads; the waits are measured with generous margins
(these machines are shared), and only their order matters.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from safepoint import records
from safepoint.format import OP_PUT
from safepoint.wal import WalWriter
from test_wal_native import new_writer, payload

STEP_S = 100e-6


def durable_commit(wal: WalWriter, i: int) -> int:
    lsn = wal.append(payload(i))
    wal.flush(lsn, durable=True)
    return lsn


def commit_in_a_thread(wal: WalWriter, i: int) -> None:
    """A durable commit by another thread, which then does nothing."""
    t = threading.Thread(target=durable_commit, args=(wal, i))
    t.start()
    t.join()


def test_nothing_due_means_no_wait(wal: WalWriter):
    assert wal.yield_to_committers(STEP_S, 1.0) == 0.0
    wal.append(payload(1))  # appended, never flushed: nobody waits on it
    assert wal.yield_to_committers(STEP_S, 1.0) == 0.0


def test_a_committer_back_from_its_flush_is_waited_for_until_it_flushes_again(wal: WalWriter):
    back = threading.Event()
    go = threading.Event()

    def two_commits() -> None:
        durable_commit(wal, 1)
        back.set()
        go.wait(10)
        time.sleep(0.0003)
        lsn = wal.append(payload(2))
        wal.flush(lsn, durable=False)  # in a flush again: done with the GIL

    t = threading.Thread(target=two_commits)
    t.start()
    back.wait(10)
    go.set()
    waited = wal.yield_to_committers(STEP_S, 1.0)
    t.join()
    assert 0.0 < waited < 0.5  # ended by the flush (or its 1 ms bound)
    # Its last flush was not durable: nothing is due any more.
    assert wal.yield_to_committers(STEP_S, 1.0) == 0.0


def test_a_committer_that_does_not_come_back_is_given_up_after_a_millisecond(wal: WalWriter):
    commit_in_a_thread(wal, 1)
    t0 = time.perf_counter()
    waited = wal.yield_to_committers(STEP_S, 1.0)
    elapsed = time.perf_counter() - t0
    assert waited > 0.0
    assert elapsed < 0.5  # the 1 ms bound, not the 1 s one
    time.sleep(0.002)
    assert wal.yield_to_committers(STEP_S, 1.0) == 0.0


def test_the_yielders_own_flush_is_not_waited_for(wal: WalWriter):
    """A checkpoint flushes the log itself before its fold."""
    durable_commit(wal, 1)
    assert wal.yield_to_committers(STEP_S, 1.0) == 0.0


def test_the_wait_never_passes_its_bound(wal: WalWriter):
    commit_in_a_thread(wal, 1)
    t0 = time.perf_counter()
    wal.yield_to_committers(STEP_S, 0.0)
    assert time.perf_counter() - t0 < 0.5


def test_a_flush_in_flight_is_waited_for(wal: WalWriter):
    """With a step longer than any fdatasync, a flush in flight is due: the
    yield returns only after it ends.  A record of a few MB makes the flush
    long enough to be caught in flight."""
    durable_commit(wal, 0)  # an fdatasync measured: the engine's estimate
    big = records.encode_payload([(OP_PUT, b"big", b"x" * (8 << 20))])
    for _attempt in range(5):
        time.sleep(0.002)  # the main thread's own return has expired
        appended = threading.Event()
        ended: list[float] = []

        def commit_big(appended: threading.Event = appended, ended: list[float] = ended) -> None:
            lsn = wal.append(big)
            appended.set()
            wal.flush(lsn, durable=True)
            ended.append(time.perf_counter())

        t = threading.Thread(target=commit_big)
        t.start()
        appended.wait(10)
        time.sleep(0.0005)
        started = time.perf_counter()
        waited = wal.yield_to_committers(10.0, 5.0)
        returned = time.perf_counter()
        t.join()
        if ended[0] > started:  # caught in flight
            assert waited > 0.0
            assert returned >= ended[0]
            return
    raise AssertionError("no flush of 8 MB was still in flight 0.5 ms after its append")


def test_the_python_engine_cannot_tell(tmp_path: Path):
    wal = new_writer(tmp_path, "python")
    try:
        durable_commit(wal, 1)
        assert wal.yield_to_committers(STEP_S, 1.0) is None
    finally:
        wal.close()


def test_a_closed_or_failed_engine_never_waits(tmp_path: Path):
    wal = new_writer(tmp_path, "native", segment_bytes=1 << 20)
    commit_in_a_thread(wal, 1)
    native = wal._native
    assert native is not None
    native.fail(5)
    assert native.yield_to_committers(STEP_S, 1.0) == 0.0
    wal.close()
