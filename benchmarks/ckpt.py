"""Checkpoint: how fast the memtable folds into the base image, and what
writers keep of their commit rate while it runs.

Each round builds a fresh durable store holding N entries (16-byte keys,
100-byte values) in its memtable, then:

1. one writer thread commits durably for ``--seconds`` with no checkpoint
   (its normal rate);
2. the same writer keeps committing while the main thread runs
   ``db.checkpoint()``; its rate over the checkpoint's duration is compared
   with (1);

and, interleaved, the same N entries are written sorted in one durable LMDB
write transaction: the rate the checkpoint is held against.
"""

from __future__ import annotations

import threading
import time

import lmdb

from . import peers
from .common import Context, Result, keys_for, values_for

NAME = "checkpoint"


class _Writer:
    """A thread committing one key at a time until stopped; counts commits
    with their completion times."""

    def __init__(self, db: peers.Adapter) -> None:
        self.db = db
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        value = values_for(1)[0]
        keys = keys_for(5000, seed=21)
        put, clock, times = self.db.put, time.perf_counter, self.times
        i = 0
        while not self._stop.is_set():
            put(keys[i % len(keys)], value)
            times.append(clock())
            i += 1

    def __enter__(self) -> _Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def rate(self, start: float, end: float) -> float:
        """Commits/s completed in [start, end]."""
        return sum(1 for t in self.times if start <= t <= end) / (end - start)


def safepoint_round(
    ctx: Context, items: list[tuple[bytes, bytes]], seconds: float
) -> dict[str, float]:
    """One round: checkpoint rate, writer rate before and during it."""
    db = peers.SafepointAdapter(ctx.fresh_dir("ckpt-sp"), durable=True)
    try:
        for i in range(0, len(items), 1000):
            db.put_batch(items[i : i + 1000])
        with _Writer(db) as w:
            time.sleep(0.1)  # the thread is up and committing
            t0 = time.perf_counter()
            time.sleep(seconds)
            before = w.rate(t0, time.perf_counter())
            c0 = time.perf_counter()
            info = db.db.checkpoint()
            c1 = time.perf_counter()
            during = w.rate(c0, c1)
        return {
            "entries/s": info.entries / (c1 - c0),
            "writer before": before,
            "writer during": during,
            "seconds": c1 - c0,
            "swap ms": info.swap_s * 1e3,
        }
    finally:
        db.close()


def lmdb_sorted_rate(ctx: Context, items: list[tuple[bytes, bytes]]) -> float:
    """Entries/s of one durable LMDB write transaction of ``items`` sorted."""
    env = lmdb.open(ctx.fresh_dir("ckpt-lmdb"), map_size=1 << 36, sync=True, metasync=True)
    try:
        ordered = sorted(items)
        t0 = time.perf_counter()
        with env.begin(write=True) as txn:
            put = txn.put
            for k, v in ordered:
                put(k, v)
        return len(items) / (time.perf_counter() - t0)
    finally:
        env.close()


def run(ctx: Context) -> list[Result]:
    """Checkpoint entries/s vs a sorted LMDB transaction; writers' rates."""
    s = ctx.settings
    n = s.n(300_000, minimum=1000)
    items = list(zip(keys_for(n, seed=20), values_for(n, seed=20), strict=True))
    sp: dict[str, list[float]] = {}
    raw: list[float] = []
    for r in range(s.rounds):
        got = safepoint_round(ctx, items, s.seconds)
        for k, v in got.items():
            sp.setdefault(k, []).append(v)
        raw.append(lmdb_sorted_rate(ctx, items))
        ctx.log(
            f"  checkpoint round {r + 1}/{s.rounds}: {got['entries/s']:,.0f} entries/s in "
            f"{got['seconds']:.2f} s; writer {got['writer before']:,.0f} -> "
            f"{got['writer during']:,.0f}/s; lmdb sorted txn {raw[-1]:,.0f} entries/s"
        )
    title = f"checkpoint of {n:,} entries"
    writers = f"one durable writer, before and during a checkpoint of {n:,} entries"
    swap = sorted(sp["swap ms"])[len(sp["swap ms"]) // 2]
    return [
        Result(
            title,
            "safepoint checkpoint",
            "entries/s",
            sp["entries/s"],
            note=f"writers blocked for the swap: {swap:.2f} ms",
        ),
        Result(title, "lmdb, one sorted write txn", "entries/s", raw),
        Result(writers, "writer before checkpoint", "commits/s", sp["writer before"]),
        Result(writers, "writer during checkpoint", "commits/s", sp["writer during"]),
    ]
