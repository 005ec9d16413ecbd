"""Random gets, and the memory a memtable takes per byte it holds.

Gets: N keys (16-byte keys, 100-byte values) are loaded into every store,
then each runs the same shuffled sequence of gets of existing keys, one
thread.  safepoint runs twice: with the data in the base image (after a
checkpoint: an LMDB lookup plus the CRC check of the entry) and with the data
in the memtable (never checkpointed).  lmdb runs twice too: a read
transaction per get (what a get that must see the latest commit costs) and
one long read transaction for all gets (the bare B-tree lookup).

Memory: tracemalloc's count of the bytes allocated while N entries are
committed into a safepoint memtable (sync="none"), over the payload (key +
value bytes) they hold; a dict holding the same entries beside it.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from collections.abc import Callable

import lmdb

from . import peers
from .common import KEY_BYTES, VALUE_BYTES, Context, Result, interleave, keys_for, values_for

NAME = "gets"
BATCH = 1000


def _load(db: peers.Adapter, items: list[tuple[bytes, bytes]]) -> None:
    for i in range(0, len(items), BATCH):
        db.put_batch(items[i : i + BATCH])


def _rate(get: Callable[[bytes], object], probes: list[bytes]) -> float:
    t0 = time.perf_counter()
    for k in probes:
        get(k)
    return len(probes) / (time.perf_counter() - t0)


def run(ctx: Context) -> list[Result]:
    """Gets/s per store and placement; memtable bytes per payload byte."""
    s = ctx.settings
    n = s.n(200_000, minimum=100)
    items = list(zip(keys_for(n), values_for(n), strict=True))
    probes = [items[i][0] for i in random.Random(3).choices(range(n), k=s.n(200_000, 100))]
    opened: list[peers.Adapter] = []
    cases: dict[str, Callable[[], float]] = {}
    try:
        for name in peers.selected(s.peers):
            if name == "safepoint":
                base = peers.SafepointAdapter(ctx.fresh_dir("gets-spbase"), durable=False)
                opened.append(base)
                _load(base, items)
                base.db.checkpoint()
                mem = peers.SafepointAdapter(ctx.fresh_dir("gets-spmem"), durable=False)
                opened.append(mem)
                _load(mem, items)
                cases["safepoint (base image)"] = lambda g=base.get: _rate(g, probes)
                cases["safepoint (memtable)"] = lambda g=mem.get: _rate(g, probes)
                continue
            db = peers.STORES[name](ctx.fresh_dir(f"gets-{name}"), durable=False)
            opened.append(db)
            _load(db, items)
            cases[name] = lambda g=db.get: _rate(g, probes)
            if name == "lmdb":
                assert isinstance(db, peers.LmdbAdapter)
                cases["lmdb (one read txn)"] = lambda env=db.env: _one_txn_rate(env, probes)
        title = f"random gets, {n:,} keys"
        samples = interleave(ctx, title, cases)
    finally:
        for db in opened:
            db.close()
    out = [Result(title, name, "gets/s", v) for name, v in samples.items()]
    out.extend(memory(ctx))
    return out


def _one_txn_rate(env: lmdb.Environment, probes: list[bytes]) -> float:
    with env.begin() as txn:
        return _rate(txn.get, probes)


def _retained(build: Callable[[list[tuple[bytes, bytes]]], object], n: int) -> tuple[int, object]:
    """Bytes still allocated after ``build`` has consumed ``n`` fresh entries
    and the caller's list of them is gone: what the structure keeps."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        items = list(zip(keys_for(n, seed=5), values_for(n, seed=6), strict=True))
        kept = build(items)
        del items
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, kept
    finally:
        tracemalloc.stop()


def memory(ctx: Context) -> list[Result]:
    """Bytes allocated per payload byte for N entries in a safepoint memtable
    and in a dict (measured once: allocation counts are not noisy)."""
    n = ctx.settings.n(100_000, minimum=100)
    payload = n * (KEY_BYTES + VALUE_BYTES)
    title = f"memory, {n:,} entries in memory"
    db = peers.SafepointAdapter(ctx.fresh_dir("mem-sp"), durable=False)
    try:
        held, _ = _retained(lambda items: _load(db, items), n)
        stats_bytes = db.db.stats().get("memtable_bytes", 0)
    finally:
        db.close()
    d_held, _ = _retained(dict, n)
    return [
        Result(
            title,
            "safepoint (memtable)",
            "bytes/payload byte",
            [held / payload],
            higher_is_better=False,
            note=f"its own estimate, stats()['memtable_bytes'], is {stats_bytes / payload:.2f}",
        ),
        Result(title, "dict", "bytes/payload byte", [d_held / payload], higher_is_better=False),
    ]
