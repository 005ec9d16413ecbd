"""Failed I/O (SPEC §3.5): what the store does when fsync fails, the disk
fills up or writes come back short, and what a power loss then leaves.

Faults are injected by safepoint.testing's FaultFS, under the store's own
file layer; "power loss" is a crash state materialised by
``drop_unsynced`` (everything not fsynced is gone) unless a test says
otherwise.
"""

from __future__ import annotations

import pytest

import safepoint
from safepoint.testing import FaultFS, explore

LOG = "wal/*.wal"  # the log's record fsyncs (segment headers are synced as prepared.tmp)
VALUE = b"v" * 300  # 13 records fill a 4096-byte segment


# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


@pytest.fixture
def db(root, fs):
    store = safepoint.open(root, fs=fs, segment_bytes=4096, checkpoint_bytes=None)
    yield store
    store.close()


# --- helper verbs ---------------------------------------------------------------


def power_loss(fs, tmp_path, model="drop_unsynced", name="after"):
    """Open what a power loss now would leave; returns its contents."""
    out = fs.crash(model).materialise(tmp_path / name)
    with safepoint.open(out) as again:
        return dict(again.items())


def commit_many(db, n, start=0):
    """Commit n puts; return the keys acknowledged."""
    keys = []
    for i in range(start, start + n):
        key = b"k%04d" % i
        db.put(key, VALUE)
        keys.append(key)
    return keys


def commit_until_disk_full(db, limit=200):
    keys = []
    for i in range(limit):
        try:
            db.put(b"k%04d" % i, VALUE)
        except safepoint.DiskFullError:
            return keys, b"k%04d" % i
        keys.append(b"k%04d" % i)
    raise AssertionError("the disk never filled up")


# --- EIO on fsync ----------------------------------------------------------------------


def test_commit_whose_log_fsync_fails_raises_store_failed_error(db, fs):
    fs.failures.fail_fsync(1, match=LOG)
    with pytest.raises(safepoint.StoreFailedError, match="Input/output error"):
        db.put(b"a", b"1")


def test_every_write_after_a_failed_fsync_raises_store_failed_error(db, fs):
    fs.failures.fail_fsync(1, match=LOG)
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"a", b"1")
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"b", b"2")
    with pytest.raises(safepoint.StoreFailedError):
        db.delete(b"a")
    with pytest.raises(safepoint.StoreFailedError):
        with db.transaction() as txn:
            txn.put(b"c", b"3")
    with pytest.raises(safepoint.StoreFailedError):
        db.checkpoint()


def test_acknowledged_commits_survive_a_failed_fsync_and_a_power_loss(db, fs, tmp_path):
    acked = commit_many(db, 20)
    fs.failures.fail_fsync(1, match=LOG)
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"failed", b"x")
    state = power_loss(fs, tmp_path)
    assert set(acked) <= set(state) and b"failed" not in state


def test_reopen_after_a_failed_fsync_recovers_and_accepts_commits(root, db, fs):
    acked = commit_many(db, 5)
    fs.failures.fail_fsync(1, match=LOG)
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"maybe", b"x")
    db.close()
    with safepoint.open(root, segment_bytes=4096) as again:
        assert set(acked) <= set(again.keys())
        again.put(b"after", b"reopen")
        assert again.get(b"after") == b"reopen"


def test_checkpoint_whose_log_fsync_fails_raises_and_fails_the_store(root, fs):
    with safepoint.open(root, fs=fs, sync="none", checkpoint_bytes=None) as db:
        db.put(b"a", b"1")  # written, not yet synced: the checkpoint must sync it
        fs.failures.fail_fsync(1, match=LOG)
        with pytest.raises(safepoint.StoreFailedError):
            db.checkpoint()
        with pytest.raises(safepoint.StoreFailedError):
            db.put(b"b", b"2")


# --- ENOSPC ---------------------------------------------------------------------------


def test_commit_on_a_full_disk_raises_disk_full_error(db, fs):
    fs.failures.disk_full_after(0)
    with pytest.raises(safepoint.DiskFullError, match="disk full"):
        commit_many(db, 200)


def test_commit_that_hit_a_full_disk_is_not_applied(db, fs, tmp_path):
    fs.failures.disk_full_after(0)
    _, refused = commit_until_disk_full(db)
    assert db.get(refused) is None
    assert refused not in power_loss(fs, tmp_path)


def test_full_disk_loses_no_acknowledged_commit(db, fs, tmp_path):
    fs.failures.disk_full_after(0)
    acked, _ = commit_until_disk_full(db)
    state = power_loss(fs, tmp_path)
    assert acked and set(acked) <= set(state)


def test_store_accepts_commits_again_once_space_is_freed(db, fs, tmp_path):
    fs.failures.disk_full_after(0)
    acked, refused = commit_until_disk_full(db)
    fs.failures.free_space()
    db.put(refused, VALUE)
    more = commit_many(db, 30, start=1000)
    state = power_loss(fs, tmp_path)
    assert set(acked) | {refused} | set(more) <= set(state)


def test_full_disk_does_not_fail_the_store(db, fs):
    fs.failures.disk_full_after(0)
    commit_until_disk_full(db)
    assert db.stats()["failed"] is None
    db.put(b"small", b"fits in the current segment")


# --- short writes ------------------------------------------------------------------------


def test_short_writes_lose_nothing(db, fs, tmp_path):
    fs.failures.short_writes(7)
    acked = commit_many(db, 30)
    with db.transaction() as txn:
        txn.put(b"big", b"B" * 6000)
    assert fs.failures.short_writes_made > 0
    state = power_loss(fs, tmp_path)
    assert set(acked) | {b"big"} <= set(state) and state[b"big"] == b"B" * 6000


# --- fsync that fails after the data reached the disk: "maybe committed" -------------------------


def test_fsync_failing_after_the_data_reached_disk_raises_store_failed_error(db, fs):
    fs.failures.fail_fsync(1, match=LOG, reached_disk=True)
    with pytest.raises(safepoint.StoreFailedError):
        db.put(b"maybe", b"x")


def test_maybe_committed_transaction_is_recovered_when_it_reached_disk(db, fs, tmp_path):
    acked = commit_many(db, 4)
    fs.failures.fail_fsync(1, match=LOG, reached_disk=True)
    with pytest.raises(safepoint.StoreFailedError):
        with db.transaction() as txn:
            txn.put(b"maybe-1", b"x")
            txn.put(b"maybe-2", b"y")
    state = power_loss(fs, tmp_path)
    assert set(acked) <= set(state)
    assert state.get(b"maybe-1") == b"x" and state.get(b"maybe-2") == b"y"


def test_maybe_committed_transaction_is_gone_when_it_did_not_reach_disk(db, fs, tmp_path):
    acked = commit_many(db, 4)
    fs.failures.fail_fsync(1, match=LOG, reached_disk=False)
    with pytest.raises(safepoint.StoreFailedError):
        with db.transaction() as txn:
            txn.put(b"maybe-1", b"x")
            txn.put(b"maybe-2", b"y")
    state = power_loss(fs, tmp_path)
    assert set(acked) <= set(state)
    assert b"maybe-1" not in state and b"maybe-2" not in state


def workload_until_failure(db):
    try:
        for i in range(16):
            if i % 4 == 3:
                with db.transaction() as txn:
                    txn.put(b"t%02d" % i, VALUE)
                    txn.delete(b"k%02d" % (i - 1))
            else:
                db.put(b"k%02d" % i, VALUE)
    except safepoint.StoreFailedError:
        pass


@pytest.mark.parametrize("reached_disk", [False, True], ids=["lost", "reached-disk"])
def test_every_crash_around_a_failed_fsync_recovers_consistently(reached_disk):
    result = explore(
        workload_until_failure,
        seed=4,
        sample_ops=10,
        arm=lambda f: f.fail_fsync(6, match=LOG, reached_disk=reached_disk),
    )
    assert result.commits == result.acknowledged + 1  # one maybe-committed
    assert result.states > 20
    assert result.violations == [], result.summary()


# Error paths


def test_failed_directory_fsync_while_opening_raises_oserror(root, fs):
    fs.failures.fail_fsync(1, match="", dirs=True)
    with pytest.raises(OSError):
        safepoint.open(root, fs=fs)


def tear_the_tail(root):
    """Write garbage after the last record of the newest segment."""
    segment = sorted((root / "wal").glob("*.wal"))[-1]
    data = segment.read_bytes()
    end = len(data.rstrip(b"\0"))
    with open(segment, "r+b") as f:
        f.seek(end + 8)
        f.write(b"\xab" * 64)


def test_recovery_that_must_set_a_torn_tail_aside_on_a_full_disk_fails_the_open(root, tmp_path):
    with safepoint.open(root, segment_bytes=4096) as db:
        acked = commit_many(db, 5)
    tear_the_tail(root)
    fs = FaultFS(root)
    fs.failures.disk_full_after(0)
    try:
        with pytest.raises(OSError, match="No space"):
            safepoint.open(root, fs=fs, segment_bytes=4096)
        fs.failures.free_space()
        with safepoint.open(root, fs=fs, segment_bytes=4096) as again:
            assert again.recovery.torn_tail and set(acked) <= set(again.keys())
    finally:
        fs.close()
