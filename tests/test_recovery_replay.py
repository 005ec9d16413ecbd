"""Replay at open, through the store: every shape of record (runs of equal
records, odd ones among them, multi-op transactions, deletes) comes back
exactly, and records the base image already holds are skipped, whether
they start a segment or sit in its middle."""

from __future__ import annotations

import random

import safepoint
from helpers import SMALL

SEGMENT = {"segment_bytes": 1 << 14}  # many rollovers: spans end and start often


def write_mixed_history(db, model, rng, commits):
    for i in range(commits):
        shape = rng.randrange(5)
        if shape < 2:  # autocommit puts of one shape: runs
            k, v = b"run%04d" % rng.randrange(300), b"v" * 24
            db.put(k, v)
            model[k] = v
        elif shape == 2:  # an odd-sized put
            k, v = b"odd%d" % i, rng.randbytes(rng.randrange(0, 200))
            db.put(k, v)
            model[k] = v
        elif shape == 3:  # a bulk transaction
            batch = {b"bulk%04d" % rng.randrange(500): b"b" * 10 for _ in range(20)}
            db.update(batch)
            model.update(batch)
        elif model:  # a delete
            k = rng.choice(sorted(model))
            db.delete(k)
            del model[k]


def test_replay_rebuilds_a_mixed_history_exactly(path):
    rng, model = random.Random(7), {}
    db = safepoint.open(path, sync="none", checkpoint_bytes=None, **SEGMENT)
    write_mixed_history(db, model, rng, 1500)
    db._simulate_kill()
    with safepoint.open(path, **SEGMENT) as again:
        assert dict(again.items()) == model
        assert again.recovery.records_replayed > 0


def test_replay_after_a_checkpoint_skips_the_records_the_base_holds(path):
    rng, model = random.Random(8), {}
    db = safepoint.open(path, sync="none", checkpoint_bytes=None, **SMALL)
    write_mixed_history(db, model, rng, 200)
    db.checkpoint()  # its LSN falls in the middle of the last segment
    folded = db.stats()["checkpoint_lsn"]
    write_mixed_history(db, model, rng, 200)
    last = db.stats()["lsn"]
    db._simulate_kill()
    with safepoint.open(path, **SMALL) as again:
        assert dict(again.items()) == model
        assert again.recovery.records_replayed == last - folded


def test_the_memtable_after_replay_serves_ordered_ranges(path):
    db = safepoint.open(path, sync="none", checkpoint_bytes=None, **SMALL)
    for i in reversed(range(200)):
        db.put(b"k%03d" % i, b"v")
    db._simulate_kill()
    with safepoint.open(path, **SMALL) as again:
        assert list(again.keys(start=b"k010", stop=b"k013")) == [b"k010", b"k011", b"k012"]
        again.put(b"k0105", b"new")
        assert list(again.keys(start=b"k010", stop=b"k011")) == [b"k010", b"k0105"]
