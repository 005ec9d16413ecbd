"""Many threads at once: committers, readers, iterators and checkpoints.

Transfers between accounts keep the total balance constant, so any reader
that sees half a transaction sees a wrong total; replaying the transfers in
LSN order must give exactly the final balances (serializability).  Group
commit is checked by counting the log's fdatasync calls through a
FileSystem subclass.  Threads are joined with a generous timeout so that a
deadlock fails the test instead of hanging CI; no speed is asserted.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable

import pytest

import safepoint
from safepoint.fs import File, FileSystem

JOIN_TIMEOUT_S = 120
ACCOUNTS = [b"acct/%02d" % i for i in range(12)]
START_BALANCE = 1000
TOTAL = START_BALANCE * len(ACCOUNTS)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "store.sp"


def run_threads(targets: list[Callable[[], None]]) -> None:
    """Run each target in its own thread; re-raise the first failure."""
    errors: list[BaseException] = []

    def guard(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    threads = [threading.Thread(target=guard, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), "threads still running: deadlock?"


def balance(value: bytes) -> int:
    return int(value)


def transfer(db: safepoint.Store, rng: random.Random) -> tuple[int, bytes, bytes, int]:
    """Move a random amount between two accounts; returns (lsn, src, dst, amount)."""
    src, dst = rng.sample(ACCOUNTS, 2)
    amount = rng.randint(1, 50)
    with db.transaction() as txn:
        # Read-modify-write inside the transaction: a stale read would show
        # up as a mismatch with the serial replay.
        txn.put(src, b"%d" % (balance(txn[src]) - amount))
        txn.put(dst, b"%d" % (balance(txn[dst]) + amount))
    assert txn.lsn is not None
    return txn.lsn, src, dst, amount


class CountingFileSystem(FileSystem):
    """Real files; counts fdatasync calls on files written in wal/."""

    def __init__(self) -> None:
        self.wal_syncs = 0
        self._lock = threading.Lock()

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        f = super().open(path, write=write, create=create)
        # Segments are opened as wal/prepared.tmp and renamed into place.
        if write and os.path.basename(os.path.dirname(path)) == "wal":
            return CountingFile(f.fd, f.path, self)
        return f

    def count_sync(self) -> None:
        with self._lock:
            self.wal_syncs += 1


class CountingFile(File):
    """A WAL segment whose fdatasync calls are counted."""

    __slots__ = ("_fs",)

    def __init__(self, fd: int, path: str, fs: CountingFileSystem) -> None:
        super().__init__(fd, path)
        self._fs = fs

    def sync_data(self) -> None:
        self._fs.count_sync()
        super().sync_data()


# --- transfers, readers and checkpoints ------------------------------------------------------


def test_concurrent_transfers_readers_and_checkpoints_stay_serializable(path):
    db = safepoint.open(path, segment_bytes=1 << 16, checkpoint_bytes=32 << 10)
    db.update({a: b"%d" % START_BALANCE for a in ACCOUNTS})
    done = threading.Event()
    logs: list[list[tuple[int, bytes, bytes, int]]] = [[] for _ in range(8)]
    own_keys = 40
    snapshots_checked = [0]

    def writer(i: int) -> Callable[[], None]:
        def run() -> None:
            rng = random.Random(i)
            for n in range(own_keys):
                logs[i].append(transfer(db, rng))
                db.put(b"own/%d/%03d" % (i, n), b"%d" % n)
                logs[i].append(transfer(db, rng))

        return run

    def reader() -> None:
        while not done.is_set():
            snap = dict(db.items(prefix=b"acct/"))
            assert list(snap) == ACCOUNTS
            assert sum(map(balance, snap.values())) == TOTAL, "saw half a transaction"
            snapshots_checked[0] += 1

    def checkpointer() -> None:
        while not done.wait(0.02):
            db.checkpoint()

    def writers() -> None:
        try:
            run_threads([writer(i) for i in range(8)])
        finally:
            done.set()

    try:
        run_threads([writers, reader, reader, checkpointer])
        assert snapshots_checked[0] > 0
        # Replaying the transfers serially in commit order gives the final state.
        model = {a: START_BALANCE for a in ACCOUNTS}
        for _, src, dst, amount in sorted(t for log in logs for t in log):
            model[src] -= amount
            model[dst] += amount
        expected = {a: b"%d" % v for a, v in model.items()}
        for i in range(8):
            expected.update({b"own/%d/%03d" % (i, n): b"%d" % n for n in range(own_keys)})
        assert dict(db.items()) == expected
        assert db.stats()["checkpoints"] > 0
        db._simulate_kill()
        db = safepoint.open(path)
        assert dict(db.items()) == expected
    finally:
        db.close()


def test_read_modify_write_transactions_lose_no_update(path):
    with safepoint.open(path, segment_bytes=1 << 16) as db:
        db.put(b"counter", b"0")

        def increment() -> None:
            for _ in range(50):
                with db.transaction() as txn:
                    txn.put(b"counter", b"%d" % (int(txn[b"counter"]) + 1))

        run_threads([increment] * 8)
        assert db[b"counter"] == b"400"


def test_single_key_reads_never_miss_a_key_during_checkpoints(path):
    # Reads take no lock; a checkpoint moves values memtable -> frozen -> base
    # under them, and a key present all along must never read as missing.
    keys = [b"k%03d" % i for i in range(50)]
    with safepoint.open(path, segment_bytes=1 << 16) as db:
        db.update({k: b"0" for k in keys})
        done = threading.Event()

        def overwrite() -> None:
            for version in range(1, 150):
                db.put(keys[version % len(keys)], b"%d" % version)
            done.set()

        def checkpoint() -> None:
            while not done.is_set():
                db.checkpoint()

        def read() -> None:
            while not done.is_set():
                for k in keys:
                    assert db.get(k) is not None, f"{k!r} read as missing"
                    assert k in db

        run_threads([overwrite, checkpoint, read, read])


def test_a_readonly_view_stays_consistent_for_concurrent_readers(path):
    with safepoint.open(path, segment_bytes=1 << 16) as db:
        db.update({a: b"%d" % START_BALANCE for a in ACCOUNTS})
        db.checkpoint()
        transfer(db, random.Random(0))
        with safepoint.open(path, readonly=True) as view:
            frozen = dict(view.items())
            done = threading.Event()

            def write_and_checkpoint() -> None:
                rng = random.Random(1)
                for n in range(60):
                    transfer(db, rng)
                    if n % 10 == 0:
                        db.checkpoint()
                done.set()

            def read() -> None:
                while not done.is_set():
                    assert dict(view.items()) == frozen
                    assert view.get(ACCOUNTS[0]) == frozen[ACCOUNTS[0]]
                    assert len(view) == len(ACCOUNTS)

            run_threads([write_and_checkpoint, read, read])


# --- group commit --------------------------------------------------------------------------------


def test_concurrent_durable_commits_share_fsyncs(path):
    # 8 threads x 200 commits.  While a leader's fdatasync runs (the GIL is
    # released), the other seven queue their records, so one sync carries
    # several commits.  A count equal to the commits would mean no sharing.
    fs = CountingFileSystem()
    threads, per_thread = 8, 200
    with safepoint.open(path, fs=fs, checkpoint_bytes=None) as db:
        start = fs.wal_syncs

        def commit(i: int) -> Callable[[], None]:
            return lambda: [db.put(b"t%d/%03d" % (i, n), b"v") for n in range(per_thread)]

        run_threads([commit(i) for i in range(threads)])
        commits = threads * per_thread
        syncs = fs.wal_syncs - start
        assert 0 < syncs < commits
        assert db.stats()["durable_lsn"] == db.stats()["lsn"] == commits
        db._simulate_kill()
    with safepoint.open(path) as again:
        assert len(again) == commits


# --- closing under load -----------------------------------------------------------------------------


def test_close_under_load_keeps_every_acknowledged_commit(path):
    db = safepoint.open(path, segment_bytes=1 << 16)
    acked: list[list[bytes]] = [[] for _ in range(6)]
    started = threading.Barrier(7)

    def commit(i: int) -> Callable[[], None]:
        def run() -> None:
            started.wait()
            n = 0
            while True:
                key = b"t%d/%05d" % (i, n)
                try:
                    db.put(key, b"v")
                except safepoint.ClosedError:
                    return
                acked[i].append(key)
                n += 1

        return run

    def close_soon() -> None:
        started.wait()
        while sum(map(len, acked)) < 100:
            threading.Event().wait(0.005)
        db.close()

    run_threads([commit(i) for i in range(6)] + [close_soon])
    with safepoint.open(path) as again:
        stored = set(again.keys())
    assert all(k in stored for keys in acked for k in keys)


def race_readers_with_close(path) -> list[BaseException]:
    """Open the store, start three readers, close it under them; return how
    each reader ended."""
    db = safepoint.open(path, segment_bytes=1 << 16)
    ended: list[BaseException] = []
    go = threading.Barrier(4)

    def read() -> None:
        go.wait()
        try:
            while True:
                for _ in db.items():
                    pass
                for i in range(0, 2000, 7):
                    db.get(b"k%04d" % i)
        except Exception as exc:  # noqa: BLE001 - the type is what is tested
            ended.append(exc)

    def close_soon() -> None:
        go.wait()
        threading.Event().wait(0.01)
        db.close()

    run_threads([read, read, read, close_soon])
    return ended


def test_readers_racing_close_get_closed_error_and_nothing_else(path):
    # Whatever a reader is doing when close() runs (a lock-free get, a base
    # image cursor), it ends with the store's ClosedError, not an LMDB error.
    with safepoint.open(path, segment_bytes=1 << 16) as db:
        db.update({b"k%04d" % i: b"v" * 100 for i in range(2000)})
    for _ in range(5):
        ended = race_readers_with_close(path)
        assert [type(e) for e in ended] == [safepoint.ClosedError] * 3, ended


READONLY_BESIDE_CHECKPOINTS = textwrap.dedent(
    """
    import sys, threading, safepoint
    db = safepoint.open(sys.argv[1], segment_bytes=1 << 16, checkpoint_bytes=None)
    stop = threading.Event()

    def checkpoints():
        n = 0
        while not stop.is_set():
            db.update({b"k%05d" % i: b"%d" % n for i in range(3000)})
            db.checkpoint()
            n += 1

    t = threading.Thread(target=checkpoints)
    t.start()
    for _ in range(50):
        with safepoint.open(sys.argv[1], readonly=True) as view:
            len(view)
    stop.set()
    t.join()
    db.close()
    """
)


def test_readonly_opens_beside_a_checkpointing_writer_do_not_deadlock(path):
    # Regression: a readonly open looked its databases up with a write
    # transaction taken while holding the GIL; a checkpoint of the writer in
    # the same process held LMDB's write lock and waited for the GIL, and the
    # process hung for good.  In a child process, so a hang fails the test.
    child = subprocess.run(
        [sys.executable, "-c", READONLY_BESIDE_CHECKPOINTS, str(path)],
        capture_output=True,
        text=True,
        timeout=JOIN_TIMEOUT_S,
    )
    assert child.returncode == 0, child.stderr
