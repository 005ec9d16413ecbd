"""Regression: close() and checkpoint() called inside the calling thread's own
transaction hung forever.

close() took the store's write lock, which the thread's open transaction
already held (threading.Lock is not reentrant).  checkpoint() checked for an
open transaction only after taking the checkpointer's lock, so when a
checkpoint on another thread (the background one) was already waiting for
this thread's write lock, the two waited on each other.  Both now refuse
with RuntimeError before waiting on anything, as nested transactions and
restore do; the transaction then aborts like any block that raises.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

import safepoint

JOIN_TIMEOUT_S = 10  # a regression hangs the helper thread, not the test run


def run_in_thread(fn: Callable[[], None]) -> BaseException | None:
    """Run ``fn`` in a daemon thread; its exception, or None.  Fails the test
    if the thread is still running after JOIN_TIMEOUT_S (a deadlock)."""
    outcome: list[BaseException | None] = []

    def guard() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    t = threading.Thread(target=guard, daemon=True)
    t.start()
    t.join(JOIN_TIMEOUT_S)
    if t.is_alive():
        pytest.fail("the call deadlocked on the thread's own transaction")
    return outcome[0]


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail("condition not reached")
        time.sleep(0.001)


def test_close_inside_the_threads_own_transaction_raises_runtime_error(path):
    db = safepoint.open(path)

    def body() -> None:
        with db.transaction() as txn:
            txn.put(b"k", b"v")
            db.close()

    exc = run_in_thread(body)
    assert isinstance(exc, RuntimeError), repr(exc)
    assert "transaction" in str(exc)
    db.close()


def test_a_refused_close_aborts_the_transaction_and_the_store_closes_after_it(path):
    db = safepoint.open(path)

    def body() -> None:
        with db.transaction() as txn:
            txn.put(b"k", b"v")
            db.close()

    run_in_thread(body)
    assert b"k" not in db
    db.close()
    with pytest.raises(safepoint.ClosedError):
        db.put(b"after", b"close")
    with safepoint.open(path) as again:
        assert b"k" not in again


def test_checkpoint_inside_a_transaction_while_another_checkpoint_waits_raises(path):
    db = safepoint.open(path, checkpoint_bytes=None)
    db.put(b"a", b"1")
    checkpointer = db._checkpointer

    def body() -> None:
        with db.transaction() as txn:
            txn.put(b"b", b"2")
            # The background checkpoint starts and waits for our write lock.
            checkpointer.request()
            wait_until(checkpointer._lock.locked)
            db.checkpoint()

    exc = run_in_thread(body)
    assert isinstance(exc, RuntimeError), repr(exc)
    assert "transaction" in str(exc)
    db.close()
    with safepoint.open(path) as again:
        assert again[b"a"] == b"1"
        assert b"b" not in again
