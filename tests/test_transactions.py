"""Write transactions: read-your-writes, all-or-nothing, aborts that leave no
trace (nothing applied, nothing logged), misuse that fails loudly instead of
deadlocking, and atomicity across a crash (in-process ``_simulate_kill`` and
a real process killed with SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import safepoint
from helpers import SMALL, lsn_of


class Abort(Exception):
    """Raised inside a transaction block to abort it."""


# Small segments: every writer open zero-fills one ahead, 16 MiB by default.


def crash_and_reopen(db: safepoint.Store) -> safepoint.Store:
    """Drop ``db`` as SIGKILL would and open the store again."""
    db._simulate_kill()
    return safepoint.open(db.path, **SMALL)


# --- reads inside a transaction ------------------------------------------------------


def test_a_transaction_reads_its_own_writes(db):
    with db.transaction() as txn:
        txn.put(b"a", b"1")
        assert txn.get(b"a") == b"1"
        assert txn[b"a"] == b"1"
        assert b"a" in txn


def test_a_transaction_sees_committed_state_under_its_writes(db):
    db.put(b"old", b"0")
    with db.transaction() as txn:
        txn.put(b"new", b"1")
        assert txn.get(b"old") == b"0"


def test_a_key_deleted_in_a_transaction_reads_as_missing(db):
    db.put(b"a", b"1")
    with db.transaction() as txn:
        txn.delete(b"a")
        assert txn.get(b"a") is None
        assert txn.get(b"a", b"default") == b"default"
        assert b"a" not in txn
        with pytest.raises(KeyError):
            txn[b"a"]


def test_deleting_a_key_twice_in_a_transaction_keeps_it_deleted(db):
    # Regression: the second delete used to drop the first one's tombstone,
    # bringing the committed value back.
    db.put(b"a", b"1")
    with db.transaction() as txn:
        txn.delete(b"a")
        txn.delete(b"a")
        assert txn.get(b"a") is None
    assert db.get(b"a") is None


def test_put_then_delete_in_a_transaction_removes_a_committed_key(db):
    db.put(b"a", b"1")
    with db.transaction() as txn:
        txn.put(b"a", b"2")
        txn.delete(b"a")
        assert txn.get(b"a") is None
    assert db.get(b"a") is None


def test_delete_then_put_in_a_transaction_keeps_the_new_value(db):
    db.put(b"a", b"1")
    with db.transaction() as txn:
        txn.delete(b"a")
        txn[b"a"] = b"2"
    assert db[b"a"] == b"2"


def test_transaction_items_include_its_own_writes_and_deletes(db):
    db.update({b"a": b"1", b"b": b"1", b"c": b"1"})
    with db.transaction() as txn:
        txn.delete(b"b")
        txn.put(b"d", b"2")
        txn.put(b"a", b"2")
        assert list(txn.items()) == [(b"a", b"2"), (b"c", b"1"), (b"d", b"2")]
        assert list(txn.keys()) == [b"a", b"c", b"d"]


def test_transaction_items_honour_prefix_and_bounds(db):
    db.update({b"p/1": b"x", b"q/1": b"x"})
    with db.transaction() as txn:
        txn.put(b"p/2", b"y")
        txn.put(b"q/2", b"y")
        assert list(txn.keys(b"p/")) == [b"p/1", b"p/2"]
        assert list(txn.keys(start=b"p/2", stop=b"q/2")) == [b"p/2", b"q/1"]


def test_writes_of_an_open_transaction_are_invisible_to_the_store_until_commit(db):
    with db.transaction() as txn:
        txn.put(b"a", b"1")
        assert db.get(b"a") is None
        assert list(db.items()) == []
    assert db.get(b"a") == b"1"


# --- commit and abort ---------------------------------------------------------------


def test_a_transaction_commits_as_one_record(db):
    before = lsn_of(db)
    with db.transaction() as txn:
        for i in range(10):
            txn.put(b"k%d" % i, b"v")
    assert lsn_of(db) == before + 1
    assert txn.lsn == before + 1
    assert len(db) == 10


def test_an_exception_in_the_block_applies_nothing_and_logs_nothing(db):
    db.put(b"kept", b"0")
    before = lsn_of(db)
    with pytest.raises(Abort):
        with db.transaction() as txn:
            txn.put(b"a", b"1")
            txn.delete(b"kept")
            raise Abort
    assert lsn_of(db) == before
    assert txn.lsn is None
    assert dict(db.items()) == {b"kept": b"0"}


def test_an_aborted_transaction_is_not_in_the_log_after_reopen(path, db):
    with pytest.raises(Abort):
        with db.transaction() as txn:
            txn.put(b"a", b"1")
            raise Abort
    lsn = lsn_of(db)
    db.close()
    with safepoint.open(path, **SMALL) as again:
        assert again.recovery.last_lsn == lsn
        assert again.get(b"a") is None


def test_an_empty_transaction_logs_nothing(db):
    before = lsn_of(db)
    with db.transaction():
        pass
    assert lsn_of(db) == before


def test_deleting_a_missing_key_in_a_transaction_logs_nothing(db):
    before = lsn_of(db)
    with db.transaction() as txn:
        txn.delete(b"never-there")
    assert lsn_of(db) == before


def test_putting_then_deleting_a_new_key_logs_nothing(db):
    before = lsn_of(db)
    with db.transaction() as txn:
        txn.put(b"a", b"1")
        txn.delete(b"a")
    assert lsn_of(db) == before
    assert db.get(b"a") is None


def test_putting_then_del_item_of_a_new_key_logs_nothing(db):
    before = lsn_of(db)
    with db.transaction() as txn:
        txn[b"a"] = b"1"
        del txn[b"a"]
    assert lsn_of(db) == before


def test_the_store_accepts_writes_after_an_aborted_transaction(db):
    with pytest.raises(Abort):
        with db.transaction():
            raise Abort
    db.put(b"a", b"1")
    assert db[b"a"] == b"1"


def test_a_second_thread_waits_for_an_open_transaction(db):
    # Serializable: the other writer runs after this transaction, not inside it.
    entered = threading.Event()
    done = threading.Event()

    def other_writer():
        entered.set()
        db.put(b"a", b"other")
        done.set()

    with db.transaction() as txn:
        txn.put(b"a", b"mine")
        t = threading.Thread(target=other_writer)
        t.start()
        entered.wait()
        assert not done.wait(0.2)
    t.join()
    assert db[b"a"] == b"other"


# --- crashes ---------------------------------------------------------------------------


def test_a_committed_transaction_survives_a_crash(db):
    with db.transaction() as txn:
        txn.put(b"a", b"1")
        txn.put(b"b", b"2")
    again = crash_and_reopen(db)
    try:
        assert dict(again.items()) == {b"a": b"1", b"b": b"2"}
    finally:
        again.close()


def test_a_crash_inside_the_block_applies_none_of_the_transaction(db):
    db.put(b"a", b"0")
    with pytest.raises(safepoint.ClosedError):
        with db.transaction() as txn:
            txn.put(b"a", b"1")
            txn.put(b"b", b"1")
            db._simulate_kill()
    with safepoint.open(db.path, **SMALL) as again:
        assert dict(again.items()) == {b"a": b"0"}


CHILD = textwrap.dedent(
    """
    import sys, time, safepoint
    db = safepoint.open(sys.argv[1], segment_bytes=1 << 16)
    db.put(b"before", b"1")
    txn = db.transaction()
    txn.__enter__()
    for i in range(100):
        txn.put(b"k%03d" % i, b"v" * 100)
    if sys.argv[2] == "commit":
        txn.__exit__(None, None, None)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def kill_child_at(path, stage: str) -> None:
    """Run CHILD up to ``stage`` ("open" or "commit"), then SIGKILL it."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), stage], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline() == "ready\n"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()


def test_sigkill_before_commit_leaves_none_of_the_transaction(path):
    kill_child_at(path, "open")
    with safepoint.open(path, **SMALL) as db:
        assert dict(db.items()) == {b"before": b"1"}


def test_sigkill_after_commit_keeps_all_of_the_transaction(path):
    kill_child_at(path, "commit")
    with safepoint.open(path, **SMALL) as db:
        assert len(db) == 101
        assert list(db.keys(b"k")) == [b"k%03d" % i for i in range(100)]


# Error paths -----------------------------------------------------------------------


def test_a_nested_transaction_on_the_same_thread_raises_runtime_error(db):
    with db.transaction() as txn:
        txn.put(b"a", b"1")
        with pytest.raises(RuntimeError, match="already has an open transaction"):
            with db.transaction():
                pass
    assert db[b"a"] == b"1"


def test_a_store_write_inside_a_transaction_on_the_same_thread_raises_runtime_error(db):
    with db.transaction():
        with pytest.raises(RuntimeError):
            db.put(b"a", b"1")
    db.put(b"a", b"2")
    assert db[b"a"] == b"2"


def test_a_transaction_cannot_be_entered_twice(db):
    txn = db.transaction()
    with txn:
        pass
    with pytest.raises(RuntimeError, match="only once"):
        with txn:
            pass


@pytest.mark.parametrize(
    "use",
    [
        lambda t: t.put(b"a", b"1"),
        lambda t: t.delete(b"a"),
        lambda t: t.get(b"a"),
        lambda t: t[b"a"],
        lambda t: b"a" in t,
        lambda t: list(t.items()),
        lambda t: list(t.keys()),
    ],
    ids=["put", "delete", "get", "getitem", "contains", "items", "keys"],
)
def test_a_transaction_used_after_its_block_raises_closed_error(db, use):
    with db.transaction() as txn:
        txn.put(b"a", b"1")
    with pytest.raises(safepoint.ClosedError):
        use(txn)


def test_a_transaction_used_before_its_block_raises_closed_error(db):
    txn = db.transaction()
    with pytest.raises(safepoint.ClosedError):
        txn.put(b"a", b"1")


def test_a_bad_key_inside_the_block_aborts_the_transaction(db):
    before = lsn_of(db)
    with pytest.raises(ValueError, match="limit is 511"):
        with db.transaction() as txn:
            txn.put(b"a", b"1")
            txn.put(b"x" * 512, b"1")
    assert lsn_of(db) == before
    assert db.get(b"a") is None


def test_del_of_a_missing_key_in_a_transaction_raises_key_error(db):
    with db.transaction() as txn:
        with pytest.raises(KeyError):
            del txn[b"missing"]


def test_a_transaction_on_a_closed_store_raises_closed_error(db):
    db.close()
    with pytest.raises(safepoint.ClosedError):
        with db.transaction():
            pass


def test_a_transaction_on_a_readonly_store_raises_read_only_error(path, db):
    db.put(b"a", b"1")
    with safepoint.open(path, readonly=True) as view:
        with pytest.raises(safepoint.ReadOnlyError):
            with view.transaction():
                pass
