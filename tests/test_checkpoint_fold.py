"""The checkpoint's fold: sorted memtable entries into the base image in bulk.

base.py builds every stored entry (CRC, then value) with C-level ``map``
calls and puts them with ``Cursor.putmulti``: keys above the last stored key
with MDB_APPEND, the others with plain puts, deletes one by one.  These tests
hold the result against a dict, whatever mix of keys below, between and
above the stored ones, deletes and concurrent writers a checkpoint meets.
"""

from __future__ import annotations

import random
import struct
import threading
from pathlib import Path

import crc32c
import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import safepoint
from safepoint.base import BaseImage, entry_value

TIMEOUT_S = 60


def open_store(path: Path, **options: object) -> safepoint.Store:
    options.setdefault("checkpoint_bytes", None)
    options.setdefault("sync", "none")
    return safepoint.open(path, **options)


def raw_entries(path: Path) -> dict[bytes, bytes]:
    """Every stored entry of the base image's data database, as LMDB holds it
    (the store must be closed)."""
    env = lmdb.open(str(path / "base"), max_dbs=4, lib_version=0, readonly=True)
    try:
        data = env.open_db(b"data", create=False)
        with env.begin(db=data) as txn:
            return {bytes(k): bytes(v) for k, v in txn.cursor()}
    finally:
        env.close()


def commit(db: safepoint.Store, writes: dict[bytes, bytes | None]) -> None:
    """One transaction of puts and deletes (value None)."""
    with db.transaction() as txn:
        for k, v in writes.items():
            if v is None:
                txn.delete(k)
            else:
                txn.put(k, v)


def apply_to_model(model: dict[bytes, bytes], writes: dict[bytes, bytes | None]) -> None:
    for k, v in writes.items():
        if v is None:
            model.pop(k, None)
        else:
            model[k] = v


def test_a_checkpoint_into_an_empty_base_image_stores_every_entry(path):
    rng = random.Random(1)
    model = {
        b"k%06d" % rng.randrange(10**6): rng.randbytes(rng.randrange(0, 300)) for _ in range(3000)
    }
    with open_store(path) as db:
        db.update(model)
        info = db.checkpoint()
        assert info.entries == len(model)
        assert dict(db.items()) == model
    with open_store(path) as db:
        assert dict(db.items()) == model


def test_a_checkpoint_mixing_keys_below_between_and_above_the_stored_ones(path):
    with open_store(path) as db:
        first = {b"b": b"1", b"d": b"2", b"f": b"3", b"h": b"4"}
        db.update(first)
        db.checkpoint()
        model = dict(first)
        writes: dict[bytes, bytes | None] = {
            b"a": b"below",
            b"c": b"between",
            b"d": b"overwritten",
            b"f": None,
            b"h": b"last, overwritten",
            b"i": b"above",
            b"j": b"above too",
        }
        commit(db, writes)
        apply_to_model(model, writes)
        db.checkpoint()
        assert dict(db.items()) == model
    with open_store(path) as db:
        assert dict(db.items()) == model


def test_a_checkpoint_that_deletes_the_last_stored_key_and_appends_past_it(path):
    with open_store(path) as db:
        db.update({b"a": b"1", b"m": b"2", b"z": b"3"})
        db.checkpoint()
        db.delete(b"z")
        db.update({b"y": b"4", b"zz": b"5"})
        db.checkpoint()
        assert dict(db.items()) == {b"a": b"1", b"m": b"2", b"y": b"4", b"zz": b"5"}


def test_a_delete_of_a_key_the_base_image_never_held_is_harmless(path):
    with open_store(path) as db:
        db.put(b"a", b"1")
        db.checkpoint()
        db.put(b"ghost", b"x")
        db.delete(b"ghost")  # a tombstone for a key LMDB does not hold
        db.checkpoint()
        assert dict(db.items()) == {b"a": b"1"}
        assert db.get(b"ghost") is None


def test_entries_written_by_a_checkpoint_keep_the_documented_format(path):
    """data: key -> crc32c(key ++ value) as u32 little-endian, then value."""
    values = {b"k%04d" % i: bytes([i % 256]) * (i % 50) for i in range(2000)}
    with open_store(path) as db:
        db.update(values)
        db.checkpoint()
        db.update({b"k0001": b"new", b"a-below": b"x"})
        db.checkpoint()
    values.update({b"k0001": b"new", b"a-below": b"x"})
    stored = raw_entries(path)
    assert set(stored) == set(values)
    for key, value in values.items():
        assert stored[key] == struct.pack("<I", crc32c.crc32c(key + value)) + value
        assert stored[key] == entry_value(key, value)


def test_many_checkpoints_of_random_batches_match_a_dict(path):
    rng = random.Random(7)
    model: dict[bytes, bytes] = {}
    with open_store(path) as db:
        for _ in range(15):
            writes: dict[bytes, bytes | None] = {}
            for _ in range(rng.randrange(1, 400)):
                k = b"key%05d" % rng.randrange(3000)
                writes[k] = None if rng.random() < 0.3 else rng.randbytes(rng.randrange(0, 64))
            commit(db, writes)
            apply_to_model(model, writes)
            db.checkpoint()
            assert dict(db.items()) == model
    with open_store(path) as db:
        assert dict(db.items()) == model
        assert len(db) == len(model)


@settings(max_examples=max(10, settings.default.max_examples // 10))
@given(
    batches=st.lists(
        st.dictionaries(
            # A few keys, so that batches overwrite and delete each other's.
            st.sampled_from([b"\x00", b"a", b"b", b"bb", b"c", b"d", b"e", b"\xff\xff"]),
            st.one_of(st.none(), st.binary(max_size=8)),
            max_size=12,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_checkpoints_of_any_batches_match_a_dict(tmp_path_factory, batches):
    path = tmp_path_factory.mktemp("fold") / "store.sp"
    model: dict[bytes, bytes] = {}
    with open_store(path) as db:
        for writes in batches:
            if writes:
                commit(db, writes)
            apply_to_model(model, writes)
            db.checkpoint()
        assert dict(db.items()) == model
    assert {k: v[4:] for k, v in raw_entries(path).items()} == model


def test_a_checkpoint_under_concurrent_writers_produces_exactly_the_dict_state(path):
    """Writers commit puts and deletes on their own keys while checkpoints
    run back to back; the store ends equal to the union of their models."""
    n_writers, commits = 3, 300
    models: list[dict[bytes, bytes]] = [{} for _ in range(n_writers)]
    errors: list[BaseException] = []
    with open_store(path, sync="always") as db:

        def writer(w: int) -> None:
            rng = random.Random(w)
            model = models[w]
            try:
                for i in range(commits):
                    k = b"w%d-%04d" % (w, rng.randrange(200))
                    if rng.random() < 0.25:
                        db.delete(k)
                        model.pop(k, None)
                    else:
                        v = b"%d-%d" % (w, i)
                        db.put(k, v)
                        model[k] = v
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
        for t in threads:
            t.start()
        checkpoints = 0
        while any(t.is_alive() for t in threads):
            db.checkpoint()
            checkpoints += 1
        for t in threads:
            t.join(TIMEOUT_S)
        assert errors == []
        assert checkpoints > 1
        expected = {k: v for m in models for k, v in m.items()}
        assert dict(db.items()) == expected
        db.checkpoint()
        assert dict(db.items()) == expected
    with open_store(path) as db:
        assert dict(db.items()) == expected


def test_a_checkpoint_folds_a_frozen_memtable_while_commits_go_to_the_new_one(path):
    db = open_store(path)
    try:
        commit(db, {b"a": b"1", b"gone": None})
        fold = db._base.write_fold
        seen = []

        def spy(batches, lsn, pause=None):
            # Instrumentation of the real fold: look at the memtables, commit
            # once as another writer would, then fold for real.
            frozen = db._frozen
            seen.append((frozen.frozen, db._mem.frozen))
            with pytest.raises(RuntimeError, match="frozen"):
                frozen.put(b"x", b"y")
            db.put(b"during", b"2")
            return fold(batches, lsn, pause)

        db._base.write_fold = spy
        db.checkpoint()
        assert seen == [(True, False)]
        assert db.get(b"during") == b"2" and db.get(b"x") is None
    finally:
        db.close()
    assert raw_entries(path) == {b"a": entry_value(b"a", b"1")}  # "during" is in the log
    with open_store(path) as again:
        assert dict(again.items()) == {b"a": b"1", b"during": b"2"}


# Error paths


def test_write_checkpoint_refuses_keys_and_values_of_different_lengths(path):
    with open_store(path) as db:
        base: BaseImage = db._base
        with pytest.raises(ValueError, match="2 keys but 1 values"):
            base.write_checkpoint([b"a", b"b"], [b"1"], 1)


def test_keys_out_of_order_fail_the_checkpoint_and_leave_the_base_image_as_it_was(path):
    with open_store(path) as db:
        db.put(b"a", b"1")
        db.checkpoint()
        base: BaseImage = db._base
        lsn, count = base.checkpoint_lsn, base.checkpoints
        # Past the last stored key, so appended: LMDB refuses "c" after "d".
        with pytest.raises(safepoint.Error, match="stored 1 of 2 entries"):
            base.write_checkpoint([b"d", b"c"], [b"4", b"3"], lsn + 1)
        assert (base.checkpoint_lsn, base.checkpoints) == (lsn, count)
        assert dict(db.items()) == {b"a": b"1"}
