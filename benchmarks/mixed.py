"""Mixed read/write: N threads, each doing 90% gets and 10% durable puts.

Every store is opened durable and preloaded with 10,000 keys; the threads
then pick keys uniformly and run for a fixed time.  Reported: operations/s
(gets and puts together).  A durable put costs an fsync, so this shows
whether a store lets readers proceed while writers wait for the disk.
"""

from __future__ import annotations

import random
import threading
import time

from . import peers
from .common import Context, Result, interleave, keys_for, values_for

NAME = "mixed"
WRITE_FRACTION = 0.1


def mixed_rate(ctx: Context, store: str, threads: int, seconds: float, n: int) -> float:
    """Ops/s of ``threads`` threads doing 90% gets, 10% durable puts."""
    db = peers.STORES[store](ctx.fresh_dir(f"mixed-{store}"), durable=True)
    keys = keys_for(n, seed=7)
    value = values_for(1)[0]
    counts = [0] * threads
    stop = threading.Event()
    ready = threading.Barrier(threads + 1)

    def worker(slot: int) -> None:
        rng = random.Random(slot)
        get, put = db.get, db.put
        ops = 0
        ready.wait()
        while not stop.is_set():
            k = keys[rng.randrange(n)]
            if rng.random() < WRITE_FRACTION:
                put(k, value)
            else:
                get(k)
            ops += 1
        counts[slot] = ops

    try:
        for i in range(0, n, 1000):
            db.put_batch([(k, value) for k in keys[i : i + 1000]])
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        ready.wait()
        t0 = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    return sum(counts) / elapsed


def run(ctx: Context) -> list[Result]:
    """Ops/s of the mixed workload per store."""
    s = ctx.settings
    n = s.n(10_000, minimum=100)
    title = f"mixed x{s.threads}: 90% gets, 10% durable puts"
    samples = interleave(
        ctx,
        title,
        {
            name: (lambda name=name: mixed_rate(ctx, name, s.threads, s.seconds, n))
            for name in peers.selected(s.peers)
        },
    )
    return [Result(title, name, "ops/s", v) for name, v in samples.items()]
