"""Base-image gets through a cached read transaction per thread.

A get of a key that is only in the base image reuses its thread's LMDB read
transaction until a commit, a map resize or close retires it (base.py,
``_ReadSlot``).  These tests pin what that must never change: a get sees
every checkpoint that committed before it, in any thread, after the map
grew, in a thread that never read before; an idle thread's transaction does
not pin old pages; a thread that ended gives its reader slot back.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

import lmdb
import pytest

import safepoint
from safepoint import base

TIMEOUT_S = 30


def open_store(path: Path, **options: object) -> safepoint.Store:
    options.setdefault("checkpoint_bytes", None)
    return safepoint.open(path, sync="none", **options)


def in_thread(fn):
    """Run ``fn`` in a new thread and return its result (or raise its error)."""
    out: list = []

    def run() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            out.append(("err", exc))

    t = threading.Thread(target=run)
    t.start()
    t.join(TIMEOUT_S)
    assert out, "the thread did not finish"
    kind, value = out[0]
    if kind == "err":
        raise value
    return value


def base_bytes(path: Path) -> int:
    return os.path.getsize(path / "base" / "data.mdb")


def test_a_get_after_a_checkpoint_sees_the_new_value_in_the_same_thread(path):
    with open_store(path) as db:
        db.put(b"k", b"old")
        db.checkpoint()
        assert db.get(b"k") == b"old"  # this thread now holds a read transaction
        db.put(b"k", b"new")
        db.checkpoint()  # the memtable is empty again: the get reads the base
        assert db.get(b"k") == b"new"


def test_a_get_after_a_checkpoint_sees_a_deleted_key_gone(path):
    with open_store(path) as db:
        db.put(b"k", b"v")
        db.checkpoint()
        assert db.get(b"k") == b"v"
        db.delete(b"k")
        db.checkpoint()
        assert db.get(b"k") is None


def test_a_reader_thread_sees_a_checkpoint_made_by_another_thread(path):
    with open_store(path) as db:
        db.put(b"k", b"1")
        db.checkpoint()
        read, go, done = threading.Event(), threading.Event(), threading.Event()
        seen: list[bytes | None] = []

        def reader() -> None:
            seen.append(db.get(b"k"))
            read.set()
            go.wait(TIMEOUT_S)
            seen.append(db.get(b"k"))
            done.set()

        t = threading.Thread(target=reader)
        t.start()
        assert read.wait(TIMEOUT_S)
        db.put(b"k", b"2")
        db.checkpoint()
        go.set()
        assert done.wait(TIMEOUT_S)
        t.join(TIMEOUT_S)
        assert seen == [b"1", b"2"]


def test_a_get_in_a_thread_that_never_read_before_works(path):
    with open_store(path) as db:
        db.put(b"k", b"v")
        db.checkpoint()
        assert in_thread(lambda: db.get(b"k")) == b"v"
        assert in_thread(lambda: db.get(b"missing")) is None


def test_gets_after_the_map_grew_see_the_new_checkpoint_in_every_thread(path, monkeypatch):
    monkeypatch.setattr(base, "_INITIAL_MAP_BYTES", 1 << 20)
    with open_store(path) as db:
        db.put(b"k", b"old")
        db.checkpoint()
        assert db.get(b"k") == b"old"
        ready, go = threading.Event(), threading.Event()
        seen: list[bytes | None] = []

        def reader() -> None:
            seen.append(db.get(b"k"))  # holds a cached transaction, idle
            ready.set()
            go.wait(TIMEOUT_S)
            seen.append(db.get(b"k"))
            seen.append(db.get(b"big0299"))

        t = threading.Thread(target=reader)
        t.start()
        assert ready.wait(TIMEOUT_S)
        with db.transaction() as txn:
            txn.put(b"k", b"new")
            for i in range(300):
                txn.put(b"big%04d" % i, b"v" * 4000)  # more than the 1 MiB map
        db.checkpoint()  # grows the map under the idle cached transactions
        assert db._base.env.info()["map_size"] > 1 << 20
        go.set()
        t.join(TIMEOUT_S)
        assert seen == [b"old", b"new", b"v" * 4000]
        assert db.get(b"k") == b"new"
        assert db.get(b"big0000") == b"v" * 4000


def test_gets_in_many_threads_never_go_back_to_an_older_value(path):
    """A counter rises while checkpoints run; every reader thread must see
    it rise monotonically (a stale read transaction would show an older
    value once the frozen memtable is dropped)."""
    with open_store(path) as db:
        db.put(b"n", b"%08d" % 0)
        db.checkpoint()
        stop = threading.Event()
        problems: list[str] = []

        def reader() -> None:
            last = -1
            while not stop.is_set():
                n = int(db.get(b"n"))
                if n < last:
                    problems.append(f"saw {n} after {last}")
                    return
                last = n

        readers = [threading.Thread(target=reader) for _ in range(3)]
        for t in readers:
            t.start()
        try:
            for i in range(1, 301):
                db.put(b"n", b"%08d" % i)
                if i % 10 == 0:
                    db.checkpoint()
        finally:
            stop.set()
            for t in readers:
                t.join(TIMEOUT_S)
        assert problems == []
        assert db.get(b"n") == b"%08d" % 300


def test_a_get_sees_a_value_committed_and_checkpointed_by_another_thread_before_it(path):
    """Read-your-writes across threads: once put + checkpoint returned in
    one thread, every later get in another sees the value."""
    with open_store(path) as db:
        db.put(b"k", b"%08d" % 0)
        db.checkpoint()
        committed = [0]
        stop = threading.Event()
        problems: list[str] = []

        def reader() -> None:
            while not stop.is_set():
                floor = committed[0]
                n = int(db.get(b"k"))
                if n < floor:
                    problems.append(f"saw {n} after {floor} was checkpointed")
                    return

        t = threading.Thread(target=reader)
        t.start()
        try:
            for i in range(1, 101):
                db.put(b"k", b"%08d" % i)
                db.checkpoint()
                committed[0] = i
        finally:
            stop.set()
            t.join(TIMEOUT_S)
        assert problems == []


def test_an_idle_reader_thread_does_not_make_the_base_image_grow(path):
    """Each checkpoint rewrites every key; LMDB can reuse the old pages only
    if no read transaction pins them.  A thread that read once and went idle
    must not keep its snapshot pinned across checkpoints."""
    with open_store(path) as db:
        keys = [b"k%04d" % i for i in range(400)]
        db.update({k: b"a" * 1000 for k in keys})
        db.checkpoint()
        idle = threading.Event()
        release = threading.Event()

        def read_once_then_idle() -> None:
            db.get(keys[0])
            idle.set()
            release.wait(TIMEOUT_S)

        t = threading.Thread(target=read_once_then_idle)
        t.start()
        assert idle.wait(TIMEOUT_S)
        try:
            for round_ in range(3):
                db.update({k: bytes([round_]) * 1000 for k in keys})
                db.checkpoint()
            settled = base_bytes(path)
            for round_ in range(3, 23):
                db.update({k: bytes([round_]) * 1000 for k in keys})
                db.checkpoint()
            # Pinned pages would add a whole copy of the data (~0.5 MB) each
            # checkpoint: 20 checkpoints, ~10 MB.
            assert base_bytes(path) <= settled + 200_000
        finally:
            release.set()
            t.join(TIMEOUT_S)


def test_threads_that_ended_give_their_reader_slots_back(path):
    """More threads than LMDB has reader slots (1024), one after another,
    each reading the base image once: an ended thread's cached transaction
    is released with it."""
    with open_store(path) as db:
        db.put(b"k", b"v")
        db.checkpoint()
        results: list[bytes | None] = []
        for _ in range(1100):
            t = threading.Thread(target=lambda: results.append(db.get(b"k")))
            t.start()
            t.join(TIMEOUT_S)
        assert results == [b"v"] * 1100


def test_a_get_after_reopening_reads_the_new_base_image(path):
    with open_store(path) as db:
        db.put(b"k", b"1")
        db.checkpoint()
        assert db.get(b"k") == b"1"
    with open_store(path) as db:
        assert db.get(b"k") == b"1"
        db.put(b"k", b"2")
        db.checkpoint()
        assert db.get(b"k") == b"2"


# Error paths


def test_a_get_after_close_raises_closed_error_even_with_a_cached_transaction(path):
    db = open_store(path)
    db.put(b"k", b"v")
    db.checkpoint()
    assert db.get(b"k") == b"v"
    db.close()
    with pytest.raises(safepoint.ClosedError):
        db.get(b"k")


def test_a_base_image_get_after_close_raises_closed_error(path):
    db = open_store(path)
    db.put(b"k", b"v")
    db.checkpoint()
    image = db._base
    assert image.get(b"k") == b"v"
    db.close()
    with pytest.raises(safepoint.ClosedError):
        image.get(b"k")


def write_raw_entry(path: Path, key: bytes, stored: bytes) -> None:
    """Put ``stored`` under ``key`` in the base image's data database by hand,
    bypassing the entry CRC (the store must be closed)."""
    env = lmdb.open(str(path / "base"), max_dbs=4, lib_version=0)
    try:
        data = env.open_db(b"data")
        with env.begin(write=True, db=data) as txn:
            txn.put(key, stored)
    finally:
        env.close()


def test_a_base_image_entry_with_a_wrong_crc_raises_corruption_error(path):
    with open_store(path) as db:
        db.put(b"k", b"value")
        db.checkpoint()
    write_raw_entry(path, b"k", struct.pack("<I", 12345) + b"value")
    with open_store(path) as db:
        with pytest.raises(safepoint.CorruptionError, match="checksum mismatch"):
            db.get(b"k")


def test_a_base_image_entry_shorter_than_its_crc_raises_corruption_error(path):
    with open_store(path) as db:
        db.put(b"k", b"value")
        db.checkpoint()
    write_raw_entry(path, b"k", b"\x01\x02")
    with open_store(path) as db:
        with pytest.raises(safepoint.CorruptionError, match="too short"):
            db.get(b"k")
