"""Seeded random workloads for the explorer's long runs.

``random_workload(seed)`` returns a workload (a function of a
RecordingStore) that makes a seeded random mix of puts, deletes, multi-key
transactions (some larger than a 4 KiB segment), checkpoints, and
snapshot saves and restores: each seed gives a different trace, so long
runs over many seeds reach crash states no single workload has.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from .recorder import RecordingStore

Workload = Callable[[RecordingStore], None]
_SIZES = (0, 1, 60, 200, 450, 900)


def random_workload(seed: int, *, ops: int = 40, snapshots: bool = True) -> Workload:
    """A workload of about ``ops`` operations drawn from ``seed``."""

    def workload(db: RecordingStore) -> None:
        rng = random.Random(seed)
        keys = [b"key-%03d" % i for i in range(rng.randint(4, 24))]
        saved: list[str] = []
        for i in range(ops):
            r = rng.random()
            if r < 0.55:
                db.put(rng.choice(keys), rng.randbytes(rng.choice(_SIZES)))
            elif r < 0.70:
                db.delete(rng.choice(keys))
            elif r < 0.85:
                with db.transaction() as txn:
                    for _ in range(rng.randint(1, 5)):
                        key = rng.choice(keys)
                        if rng.random() < 0.25:
                            txn.delete(key)
                        else:
                            txn.put(key, rng.randbytes(rng.choice(_SIZES + (5000,))))
            elif r < 0.93:
                db.checkpoint()
            elif snapshots and (r < 0.97 or not saved):
                name = f"s{i}"
                db.save(name)
                saved.append(name)
            elif snapshots:
                db.restore(rng.choice(saved))

    workload.__name__ = f"random_workload_{seed}"
    return workload
