"""Mixed read/write: N threads, each doing 90% gets and 10% durable puts.

Every store is opened durable and preloaded with 10,000 keys, all at once;
short timed windows then run round robin (as in the commits workload).
Threads pick keys uniformly.  Reported: operations/s (gets and puts
together).  A durable put costs an fsync, so this shows whether a store lets
readers proceed while writers wait for the disk.
"""

from __future__ import annotations

import random
import threading

from . import peers
from .commits import WINDOWS_PER_ROUND, wait_for_background_prepare
from .common import Context, Result, interleave, keys_for, threaded_rate, values_for

NAME = "mixed"
WRITE_FRACTION = 0.1


def window(db: peers.Adapter, threads: int, seconds: float, keys: list[bytes]) -> float:
    """Ops/s of ``threads`` threads doing 90% gets, 10% durable puts."""
    value = values_for(1)[0]
    n = len(keys)

    def worker(slot: int, stop: threading.Event) -> int:
        rng = random.Random(slot)
        get, put = db.get, db.put
        ops = 0
        while not stop.is_set():
            k = keys[rng.randrange(n)]
            if rng.random() < WRITE_FRACTION:
                put(k, value)
            else:
                get(k)
            ops += 1
        return ops

    return threaded_rate(threads, seconds, worker)


def run(ctx: Context) -> list[Result]:
    """Ops/s of the mixed workload per store."""
    s = ctx.settings
    keys = keys_for(s.n(10_000, minimum=100), seed=7)
    value = values_for(1)[0]
    title = f"mixed x{s.threads}: 90% gets, 10% durable puts"
    stores = {
        name: peers.STORES[name](ctx.fresh_dir(f"mixed-{name}"), durable=True)
        for name in peers.selected(s.peers)
    }
    try:
        for db in stores.values():
            for i in range(0, len(keys), 1000):
                db.put_batch([(k, value) for k in keys[i : i + 1000]])
        wait_for_background_prepare()
        seconds = s.seconds / WINDOWS_PER_ROUND
        samples = interleave(
            ctx,
            title,
            {
                name: (lambda db=db: window(db, s.threads, seconds, keys))
                for name, db in stores.items()
            },
            s.rounds * WINDOWS_PER_ROUND,
        )
    finally:
        for db in stores.values():
            db.close()
    return [Result(title, name, "ops/s", v) for name, v in samples.items()]
