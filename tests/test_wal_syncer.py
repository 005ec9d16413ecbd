"""The native engine's syncer (native/sp_wal_sync.c): a thread that leads
durable flushes so that one committer can wait for its record spinning.

It must change nothing a reader of the log can see -- the same records in
the same order, every acknowledged record durable, failures failing the log
as before -- and only where it pays: not for the first flush, not with
spinning off (``set_spin(0)``), not in a child after fork, not after close.
Real files, real threads, a real fork; the descriptor is pointed at
/dev/null to make the syncer's own fdatasync fail.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time

import pytest

from safepoint.errors import StoreFailedError
from safepoint.wal import WalWriter
from test_wal_native import new_writer, payload, read_lsns, refuse_fdatasync
from test_wal_yield import durable_commit as commit

ALWAYS = 1e9  # set_spin: spin whatever an fdatasync takes (on any disk)


def engine(wal: WalWriter):
    assert wal._native is not None
    return wal._native


def task_count() -> int:
    return len(os.listdir("/proc/self/task"))


def test_a_run_of_commits_is_synced_by_the_syncer_while_the_committer_spins(wal, tmp_path):
    engine(wal).set_spin(ALWAYS)
    # The first flush measures fdatasync and is led by its committer; after
    # that the syncer is awake for a run of back-to-back commits (unless a
    # burst of other work on the machine backs it off for a second).
    deadline = time.monotonic() + 10.0
    n = 0
    while engine(wal).state().spin_waits < 100 and time.monotonic() < deadline:
        n += 1
        commit(wal, n)
    st = engine(wal).state()
    assert st.spin_waits >= 100
    assert st.syncer_flushes >= st.spin_waits
    assert st.synced_lsn == n and st.fsyncs == n
    assert read_lsns(tmp_path) == list(range(1, n + 1))


def test_with_spinning_off_committers_lead_their_own_flushes(wal):
    engine(wal).set_spin(0.0)
    for i in range(100):
        commit(wal, i)
    st = engine(wal).state()
    assert st.syncer_flushes == 0 and st.spin_waits == 0
    assert st.synced_lsn == 100


def test_eight_threads_through_the_syncer_lose_and_reorder_nothing(wal, tmp_path):
    engine(wal).set_spin(ALWAYS)
    commit(wal, 0)
    acked: list[int] = []
    lock = threading.Lock()

    def committer(t: int) -> None:
        for i in range(150):
            lsn = commit(wal, t * 1000 + i)
            with lock:
                acked.append(lsn)

    threads = [threading.Thread(target=committer, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    st = engine(wal).state()
    assert sorted(acked) == list(range(2, 1202))
    assert st.synced_lsn == 1201
    assert st.syncer_flushes > 0
    assert st.fsyncs < 1201  # still group commit: fdatasyncs are shared
    assert read_lsns(tmp_path) == list(range(1, 1202))


def test_a_failed_fdatasync_in_the_syncer_fails_the_waiting_commit_and_the_log(wal):
    engine(wal).set_spin(ALWAYS)
    before = 0
    for i in range(50):
        commit(wal, i)
        before = engine(wal).state().syncer_flushes
        if before:
            break
    assert before > 0, "the syncer never led a flush"
    refuse_fdatasync(wal)
    with pytest.raises(StoreFailedError, match="reopen the store"):
        commit(wal, 99)
    assert isinstance(wal.failed, OSError) and wal.failed.errno == errno.EINVAL
    with pytest.raises(StoreFailedError):
        wal.append(payload(100))


def test_close_stops_the_syncer_thread(tmp_path):
    tasks = task_count()
    wal = new_writer(tmp_path, "native", segment_bytes=16 << 20)
    engine(wal).set_spin(ALWAYS)
    for i in range(20):
        commit(wal, i)
    assert engine(wal).state().syncer_flushes > 0
    assert task_count() > tasks  # the syncer (and the log's helper threads)
    wal.close()
    # The engine joined its thread on close; Python's own helpers may
    # linger for a moment, so count only the syncer's absence over time.
    for _ in range(200):
        if task_count() <= tasks:
            break
        threading.Event().wait(0.01)
    assert task_count() <= tasks


def test_a_child_after_fork_leads_its_own_flush_instead_of_waiting_for_no_syncer(wal):
    """The child has the engine's memory but not its thread: waiting for
    that thread would hang the child's commit for ever."""
    engine(wal).set_spin(ALWAYS)
    for i in range(50):
        commit(wal, i)
    assert engine(wal).state().syncer_flushes > 0
    threading.Event().wait(0.01)  # the syncer idles into its sleep
    pid = os.fork()
    if pid == 0:  # the child: one durable commit, then leave at once
        code = 1
        try:
            lsn = commit(wal, 1000)
            st = engine(wal).state()
            code = 0 if st.synced_lsn >= lsn else 2
        finally:
            os._exit(code)
    for _ in range(1000):  # up to 10 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        threading.Event().wait(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise AssertionError("the child's durable commit hung after fork")
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_on_a_machine_busy_with_other_work_committers_stop_spinning(wal):
    """Two CPU-bound processes per CPU: the syncer and a spinner now wait
    for CPU time behind them, the hand-offs slow down, and the engine backs
    off to committers leading their own flushes asleep."""
    engine(wal).set_spin(ALWAYS)
    commit(wal, 0)
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(2 * (os.cpu_count() or 1))
    ]
    try:
        threading.Event().wait(0.2)
        for i in range(1, 400):
            commit(wal, i)
            if engine(wal).state().spin_backoffs:
                break
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    st = engine(wal).state()
    assert st.spin_backoffs >= 1
    assert st.synced_lsn == st.written_lsn  # nothing lost on the way


def test_while_a_checkpoint_yields_between_steps_committers_lead_their_own_flushes(wal):
    """A fold calling yield_to_committers holds a CPU: for 10 ms after each
    call no committer spins and the syncer leads nothing."""
    engine(wal).set_spin(ALWAYS)
    for i in range(50):
        commit(wal, i)
    assert engine(wal).state().syncer_flushes > 0
    for attempt in range(20):
        before = engine(wal).state().syncer_flushes
        t0 = time.perf_counter()
        wal.yield_to_committers(100e-6, 0.001)
        commit(wal, 100 + attempt)
        if time.perf_counter() - t0 < 0.005:  # well inside the 10 ms hold
            assert engine(wal).state().syncer_flushes == before
            break
    else:
        raise AssertionError("no yield-and-commit took under 5 ms in 20 tries")
    time.sleep(0.02)  # the hold is over: a run of commits spins again
    before = engine(wal).state().syncer_flushes
    for i in range(50):
        commit(wal, 200 + i)
    assert engine(wal).state().syncer_flushes > before
