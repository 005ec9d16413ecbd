"""Real processes killed with SIGKILL at random moments, then recovered.

A child (child_writer.py) commits a deterministic workload with
sync="always", small segments and frequent checkpoints, and prints an ack
after each commit returns.  The parent kills it at a seeded random moment
(some while it is still starting up and recovering from the previous kill),
reopens the store and checks:

* the state is exactly the model state after some prefix of the workload;
* that prefix holds every acknowledged commit;
* a second open recovers the same state (recovery is idempotent).

The next round's child continues on the same store, so later rounds recover
logs and base images left by earlier kills.  ``SAFEPOINT_CRASH_SEED`` picks
the seed (printed in every failure message).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import pytest
from hypothesis import settings

import safepoint

from .child_writer import OPTIONS, serial_model, thread_model

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child_writer.py")
SEED = int(os.environ.get("SAFEPOINT_CRASH_SEED", "20261127"))
THREADS = 4
STARTUP_TIMEOUT_S = 60.0
EARLY_KILL_FRACTION = 0.25  # rounds killed before "ready": during import or recovery
# 22 rounds in all under the "dev" profile, twice that under "ci" (conftest.py).
ROUNDS_SCALE = 2 if settings.default.max_examples >= 1000 else 1


@dataclass
class Round:
    """What one child said before it died."""

    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stderr: str = ""


def _pump(stream, rnd: Round) -> None:  # type: ignore[no-untyped-def]
    for raw in stream:
        line = raw.decode().rstrip("\n")
        rnd.lines.append(line)
        if line == "ready":
            rnd.ready.set()


def run_and_kill(store: str, mode: str, rng: random.Random, tag: str) -> Round:
    """Start a child on ``store``, SIGKILL it at a random moment, collect its acks."""
    args = [sys.executable, CHILD, store, mode, str(THREADS)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rnd = Round()
    reader = threading.Thread(target=_pump, args=(proc.stdout, rnd), daemon=True)
    reader.start()
    try:
        if rng.random() < EARLY_KILL_FRACTION:
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            assert rnd.ready.wait(STARTUP_TIMEOUT_S), f"{tag}: child never became ready"
            time.sleep(rng.uniform(0.01, 0.35))
        alive = proc.poll() is None
        if alive:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        rnd.stderr = proc.stderr.read().decode() if proc.stderr else ""
        assert alive, f"{tag}: child exited by itself ({proc.returncode}):\n{rnd.stderr}"
        assert proc.returncode == -signal.SIGKILL, f"{tag}: {proc.returncode}\n{rnd.stderr}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for s in (proc.stdout, proc.stderr):
            if s is not None:
                s.close()
    return rnd


def recovered_twice(store: str, tag: str) -> dict[bytes, bytes]:
    """Open, read everything, close; again; the two must agree."""
    with safepoint.open(store, **OPTIONS) as db:
        first = dict(db.items())
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.clean, f"{tag}: second open still cut: {db.recovery.summary()}"
        second = dict(db.items())
    assert second == first, f"{tag}: recovery is not idempotent"
    return first


def acks(rnd: Round) -> list[tuple[int, ...]]:
    return [tuple(map(int, line.split()[1:])) for line in rnd.lines if line.startswith("ack ")]


# --- the checks ----------------------------------------------------------------------------


def check_serial(state: dict[bytes, bytes], acked: list[int], before: int, tag: str) -> int:
    """State is the model after j transactions, j >= every ack; return j."""
    j = int(state.get(b"counter", b"0"))
    assert state == serial_model(j), f"{tag}: state is not the model after {j} transactions"
    last_ack = max(acked, default=before)
    # One commit at a time: at most the one after the last ack was in flight.
    assert last_ack <= j <= last_ack + 1, f"{tag}: recovered {j}, last ack {last_ack}"
    return j


def check_threads(
    state: dict[bytes, bytes], acked: list[tuple[int, ...]], before: dict[int, int], tag: str
) -> dict[int, int]:
    """Every thread's keys are its model after some prefix holding its acks;
    ``total`` and ``last`` agree with one serial order of those prefixes."""
    prefix = {t: int(state.get(b"t%d/counter" % t, b"0")) for t in range(THREADS)}
    expected: dict[bytes, bytes] = {}
    for t, j in prefix.items():
        expected.update(thread_model(t, j))
        mine = [n for (u, n) in acked if u == t]
        last_ack = max(mine, default=before[t])
        assert last_ack <= j <= last_ack + 1, f"{tag}: thread {t} at {j}, last ack {last_ack}"
    total = sum(prefix.values())
    if total:
        expected[b"total"] = b"%d" % total
        t, n = map(int, state.get(b"last", b"-1:-1").split(b":"))
        assert prefix.get(t) == n, f"{tag}: last={t}:{n} is no thread's latest commit"
        expected[b"last"] = b"%d:%d" % (t, n)
    assert state == expected, f"{tag}: state is not a serial order of per-thread prefixes"
    return prefix


def run_rounds(tmp_path, mode: str, rounds: int) -> None:
    store = str(tmp_path / "crash.sp")
    rounds *= ROUNDS_SCALE
    rng = random.Random(f"{SEED}-{mode}")
    done_serial = 0
    done_threads = dict.fromkeys(range(THREADS), 0)
    acknowledged = 0
    for r in range(rounds):
        tag = f"seed {SEED}, mode {mode}, round {r}"
        rnd = run_and_kill(store, mode, rng, tag)
        state = recovered_twice(store, tag)
        got = acks(rnd)
        acknowledged += len(got)
        if mode == "threads":
            done_threads = check_threads(state, got, done_threads, tag)
        else:
            done_serial = check_serial(state, [a[0] for a in got], done_serial, tag)
    # The rounds must have exercised something: commits were acknowledged.
    assert acknowledged > 0, f"seed {SEED}, mode {mode}: no commit was ever acknowledged"


# --- the tests --------------------------------------------------------------------------------


def test_sigkill_during_serial_commits_keeps_an_exact_prefix_with_every_ack(tmp_path):
    run_rounds(tmp_path, "serial", 8)


def test_sigkill_during_checkpoints_keeps_an_exact_prefix_with_every_ack(tmp_path):
    run_rounds(tmp_path, "checkpoint", 7)


def test_sigkill_during_concurrent_commits_keeps_a_serial_order_with_every_ack(tmp_path):
    run_rounds(tmp_path, "threads", 7)


# Error paths -------------------------------------------------------------------------------


def test_a_lost_acknowledged_commit_fails_the_serial_check():
    with pytest.raises(AssertionError, match="recovered 6, last ack 7"):
        check_serial(serial_model(6), [5, 6, 7], 0, "self-check")


def test_a_partly_applied_transaction_fails_the_thread_check():
    state = {**thread_model(0, 3), **thread_model(1, 2), b"total": b"5", b"last": b"0:3"}
    state[b"t1/counter"] = b"3"  # one key of thread 1's third transaction
    with pytest.raises(AssertionError, match="serial order"):
        check_threads(state, [(0, 3), (1, 2)], dict.fromkeys(range(THREADS), 0), "self-check")
