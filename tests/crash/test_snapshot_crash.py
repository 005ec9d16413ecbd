"""Crashes during snapshot saves and restores leave a consistent store.

Two kinds of crash:

* **Every crash point**: a FileSystem that dies at its nth mutating
  operation (it and every later one raise, as if the process had stopped
  there).  The operation count of a clean run is measured first, then the
  save or restore is repeated on a fresh copy of the store for every n.
  Reopened with the real file layer, the store must hold exactly the old or
  the new state.  This checks the ordering of the protocol at each step;
  LMDB's own commits are atomic and not counted.
* **Real processes killed with SIGKILL** at seeded random moments while
  they restore or save in a loop (``SAFEPOINT_CRASH_SEED`` picks the seed).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import safepoint
from safepoint.fs import File, FileSystem
from safepoint.snapshots import verify_snapshot

SEED = int(os.environ.get("SAFEPOINT_CRASH_SEED", "20261127"))
OPTIONS = {"segment_bytes": 4096, "checkpoint_bytes": None}
# The writer zero-fills its next segment on this thread, at its own pace;
# counting its operations would make crash points nondeterministic.
UNCOUNTED_THREADS = ("safepoint-wal-prepare",)


class Died(OSError):
    """The simulated crash: the process stopped at this operation."""


class CrashAt(FileSystem):
    """Dies at its ``n``th mutating operation (never, if None); counts them."""

    def __init__(self, n: int | None = None) -> None:
        self.n = n
        self.count = 0
        self.armed = False
        self.dead = False
        self._lock = threading.Lock()

    def tick(self, what: str, path: str) -> None:
        if not self.armed or threading.current_thread().name.startswith(UNCOUNTED_THREADS):
            return
        with self._lock:
            if not self.dead and self.n is not None and self.count >= self.n:
                self.dead = True
            self.count += 1
            if self.dead:
                raise Died(f"simulated crash at {what} {path}")

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        if write or create:
            self.tick("open", path)
        f = super().open(path, write=write, create=create)
        return _Counted(f.fd, f.path, self) if write else f

    def rename(self, src: str, dst: str) -> None:
        self.tick("rename", src)
        super().rename(src, dst)

    def remove(self, path: str) -> None:
        self.tick("remove", path)
        super().remove(path)

    def makedirs(self, path: str) -> None:
        self.tick("makedirs", path)
        super().makedirs(path)

    def sync_dir(self, path: str) -> None:
        self.tick("sync_dir", path)
        super().sync_dir(path)


class _Counted(File):
    __slots__ = ("fs",)

    def __init__(self, fd: int, path: str, fs: CrashAt) -> None:
        super().__init__(fd, path)
        self.fs = fs

    def write_at(self, data, offset):  # type: ignore[no-untyped-def]
        self.fs.tick("write", self.path)
        super().write_at(data, offset)

    def truncate(self, size: int) -> None:
        self.fs.tick("truncate", self.path)
        super().truncate(size)

    def sync(self) -> None:
        self.fs.tick("fsync", self.path)
        super().sync()

    def sync_data(self) -> None:
        self.fs.tick("fdatasync", self.path)
        super().sync_data()


# --- the two states ---------------------------------------------------------------------

STATE_A = {b"gen": b"A", **{b"k%02d" % i: b"A" * 100 for i in range(20)}}
STATE_B = {b"gen": b"B", b"extra": b"B", **{b"k%02d" % i: b"B" * 100 for i in range(10)}}


def write_state(db: safepoint.Store, target: dict[bytes, bytes]) -> None:
    """Make the store hold exactly ``target``, in one transaction."""
    with db.transaction() as txn:
        for k in list(txn.keys()):
            if k not in target:
                txn.delete(k)
        for k, v in target.items():
            txn.put(k, v)


def which_state(store: Path, tag: str) -> str:
    """Open twice with the real file layer; the state must be A or B both times."""
    seen = []
    for _ in range(2):
        with safepoint.open(store, **OPTIONS) as db:
            got = dict(db.items())
            names = [s.name for s in db.snapshots()]
        assert got in (STATE_A, STATE_B), f"{tag}: a mix of states: {sorted(got.items())[:4]}"
        assert "a" in names, f"{tag}: snapshot a is gone: {names}"
        seen.append("A" if got == STATE_A else "B")
    assert seen[0] == seen[1], f"{tag}: the second open found another state"
    assert not (store / "base.new").exists() and not (store / "RESTORE.json").exists()
    return seen[0]


def template(tmp_path: Path) -> Path:
    """A closed store in state B with snapshot ``a`` of state A."""
    store = tmp_path / "template.sp"
    with safepoint.open(store, **OPTIONS) as db:
        write_state(db, STATE_A)
        db.save("a", step=1, metrics={"loss": 1.0})
        for _ in range(3):  # enough records to roll over into a few segments
            write_state(db, STATE_B)
    return store


def crash_run(src: Path, dst: Path, n: int | None, action, **options) -> CrashAt:  # type: ignore[no-untyped-def]
    """Copy ``src`` to ``dst``, open it with a CrashAt(n), run ``action``; on a
    crash drop the store as a killed process would."""
    shutil.copytree(src, dst)
    fs = CrashAt(n)
    db = safepoint.open(dst, fs=fs, **OPTIONS, **options)
    fs.armed = True
    try:
        action(db)
    except Exception:
        # Died itself, or what the store made of it (a failed fsync fails the
        # log: StoreFailedError).
        if not fs.dead:
            raise
        db._simulate_kill()
        return fs
    finally:
        fs.armed = False
    db.close()
    return fs


# --- every crash point ------------------------------------------------------------------


def test_restore_crashed_at_every_operation_leaves_the_old_or_the_new_state(tmp_path):
    src = template(tmp_path)
    total = crash_run(src, tmp_path / "clean", None, lambda db: db.restore("a")).count
    assert which_state(tmp_path / "clean", "clean run") == "A"
    outcomes = []
    for n in range(total):
        dst = tmp_path / f"crash-{n}"
        fs = crash_run(src, dst, n, lambda db: db.restore("a"))
        assert fs.dead, f"operation {n} of {total} was never reached"
        outcomes.append(which_state(dst, f"crash at operation {n} of {total}"))
        shutil.rmtree(dst)
    # Early crashes keep the old state, late ones the restored one, and the
    # switch happens once: at the durable intent.
    assert outcomes[0] == "B" and outcomes[-1] == "A"
    switch = outcomes.index("A")
    assert outcomes[switch:] == ["A"] * (total - switch), outcomes


def test_store_crashed_during_a_restore_can_restore_again(tmp_path):
    src = template(tmp_path)
    total = crash_run(src, tmp_path / "clean", None, lambda db: db.restore("a")).count
    for n in (total // 3, total // 2, 2 * total // 3):
        dst = tmp_path / f"crash-{n}"
        crash_run(src, dst, n, lambda db: db.restore("a"))
        with safepoint.open(dst, **OPTIONS) as db:
            write_state(db, STATE_B)
            db.restore("a")
            assert dict(db.items()) == STATE_A


def test_save_crashed_at_every_operation_leaves_no_partial_snapshot(tmp_path):
    src = template(tmp_path)
    # keep_last=1 deletes "a" after the save: crashes land in that too.
    policy = safepoint.Retention(keep_last=1)

    def save(db: safepoint.Store) -> None:
        db.save("b", step=2)

    total = crash_run(src, tmp_path / "clean", None, save, retention=policy).count
    seen = set()
    for n in range(total):
        dst = tmp_path / f"crash-{n}"
        fs = crash_run(src, dst, n, save, retention=policy)
        tag = f"crash at operation {n} of {total}"
        assert fs.dead, f"{tag}: never reached"
        with safepoint.open(dst, **OPTIONS) as db:
            assert dict(db.items()) == STATE_B, tag
            infos = {s.name: s for s in db.snapshots()}
        assert set(infos) in ({"a"}, {"a", "b"}, {"b"}), f"{tag}: {sorted(infos)}"
        for name in infos:
            verify_snapshot(FileSystem(), str(dst / "snapshots" / name))
        assert [p for p in os.listdir(dst / "snapshots") if p.startswith(".")] == [], tag
        seen.add(tuple(sorted(infos)))
        shutil.rmtree(dst)
    assert seen == {("a",), ("a", "b"), ("b",)}


# --- real processes killed with SIGKILL ---------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, safepoint
    sys.path.insert(0, sys.argv[3])
    from test_snapshot_crash import OPTIONS, STATE_A, STATE_B, write_state
    store, mode = sys.argv[1], sys.argv[2]
    keep = safepoint.Retention(keep_last=2)
    with safepoint.open(store, retention=keep, **OPTIONS) as db:
        print("ready", flush=True)
        i = int(db.get(b"i", b"0"))
        while True:
            if mode == "restore":
                db.restore("a")
                print("A", flush=True)
                write_state(db, STATE_B)
                print("B", flush=True)
            else:
                i += 1
                db[b"i"] = b"%d" % i
                db.save(f"s{i}", step=i)
                print("saved", i, flush=True)
    """
)


def kill_child(store: Path, mode: str, rng: random.Random, tag: str) -> list[str]:
    """Run the child on ``store`` and SIGKILL it at a random moment; its output."""
    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(store), mode, here],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert ready.wait(60), f"{tag}: child never became ready"
        time.sleep(rng.uniform(0.02, 0.5))
        alive = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        err = proc.stderr.read() if proc.stderr else ""
        assert alive, f"{tag}: child exited by itself ({proc.returncode}):\n{err}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lines


def test_sigkill_during_restores_leaves_the_old_or_the_new_state(tmp_path):
    rng = random.Random(f"{SEED}-restore")
    store = tmp_path / "s.sp"
    shutil.copytree(template(tmp_path), store)
    restores = 0
    for r in range(6):
        tag = f"seed {SEED}, restore round {r}"
        lines = kill_child(store, "restore", rng, tag)
        which_state(store, tag)
        restores += lines.count("A")
    assert restores > 0, f"seed {SEED}: no restore ever completed before a kill"


def test_sigkill_during_saves_leaves_only_whole_snapshots(tmp_path):
    rng = random.Random(f"{SEED}-save")
    store = tmp_path / "s.sp"
    shutil.copytree(template(tmp_path), store)
    acked = 0
    for r in range(6):
        tag = f"seed {SEED}, save round {r}"
        lines = kill_child(store, "save", rng, tag)
        saved = [int(x.split()[1]) for x in lines if x.startswith("saved ")]
        acked = max([acked, *saved])
        with safepoint.open(store, **OPTIONS) as db:
            names = [s.name for s in db.snapshots()]
            counter = int(db.get(b"i", b"0"))
        assert counter >= acked, f"{tag}: counter {counter} < acknowledged {acked}"
        if acked:
            assert f"s{acked}" in names, f"{tag}: acknowledged s{acked} missing from {names}"
        for name in names:
            verify_snapshot(FileSystem(), str(store / "snapshots" / name))
        assert not [p for p in os.listdir(store / "snapshots") if p.startswith(".")], tag
    assert acked > 0, f"seed {SEED}: no save was ever acknowledged"
    newest = f"s{acked}"
    copy = shutil.copytree(store, tmp_path / "check.sp")
    with safepoint.open(copy, **OPTIONS) as db:
        db.restore(newest)
        assert db[b"i"] == b"%d" % acked


# Error paths


def test_a_mixed_state_fails_the_state_check(tmp_path):
    with safepoint.open(tmp_path / "m", **OPTIONS) as db:
        write_state(db, {**STATE_B, b"k15": b"A" * 100})
        db.save("a")
    with pytest.raises(AssertionError, match="a mix of states"):
        which_state(tmp_path / "m", "self-check")


def test_crash_at_fires_at_the_nth_operation(tmp_path):
    fs = CrashAt(2)
    fs.armed = True
    fs.makedirs(str(tmp_path / "a"))
    fs.makedirs(str(tmp_path / "b"))
    with pytest.raises(Died):
        fs.makedirs(str(tmp_path / "c"))
    with pytest.raises(Died):
        fs.sync_dir(str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]
