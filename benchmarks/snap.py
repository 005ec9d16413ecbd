"""Snapshots: ``db.save(name)`` and ``db.restore(name)`` of a store of N entries.

Runs only if the installed safepoint has the API (``Store.save`` and
``Store.restore``); otherwise the workload reports that it was skipped.
Beside it, LMDB's own compact copy (``env.copy(path, compact=True)``) of an
LMDB environment holding the same entries, then an fsync of the copy: the
nearest thing LMDB offers to a snapshot.
"""

from __future__ import annotations

import os
import time

import lmdb

import safepoint

from . import peers
from .common import Context, Result, dir_bytes, keys_for, values_for

NAME = "snapshot"


def available() -> bool:
    """Whether this safepoint can save and restore snapshots."""
    return hasattr(safepoint.Store, "save") and hasattr(safepoint.Store, "restore")


def _fsync_tree(path: str) -> None:
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def run(ctx: Context) -> list[Result]:
    """Seconds to save and to restore; seconds of an LMDB compact copy."""
    if not available():
        ctx.log("  snapshot: skipped, this safepoint has no Store.save / Store.restore")
        return []
    s = ctx.settings
    n = s.n(200_000, minimum=1000)
    items = list(zip(keys_for(n, seed=30), values_for(n, seed=30), strict=True))
    db = peers.SafepointAdapter(ctx.fresh_dir("snap-sp"), durable=False)
    env_dir = ctx.fresh_dir("snap-lmdb")
    env = lmdb.open(env_dir, map_size=1 << 36)
    save: list[float] = []
    restore: list[float] = []
    copy: list[float] = []
    try:
        for i in range(0, n, 1000):
            db.put_batch(items[i : i + 1000])
            with env.begin(write=True) as txn:
                for k, v in items[i : i + 1000]:
                    txn.put(k, v)
        # Fold the load now: every round's save then checkpoints the same
        # small change (one key), not the whole load in round 1 only.
        db.db.checkpoint()
        for r in range(s.rounds):
            db.put(b"round", str(r).encode())  # something new to checkpoint
            t0 = time.perf_counter()
            db.db.save(f"bench-{r}")
            save.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            db.db.restore(f"bench-{r}")
            restore.append(time.perf_counter() - t0)
            dst = ctx.fresh_dir("snap-lmdb-copy")
            t0 = time.perf_counter()
            env.copy(dst, compact=True)
            _fsync_tree(dst)
            copy.append(time.perf_counter() - t0)
            ctx.remove(dst)
            ctx.log(
                f"  snapshot round {r + 1}/{s.rounds}: save {save[-1]:.3f} s, "
                f"restore {restore[-1]:.3f} s, lmdb compact copy {copy[-1]:.3f} s"
            )
        mb = dir_bytes(os.path.join(str(db.db.path), "snapshots", "bench-0")) / 1e6
    finally:
        db.close()
        env.close()
    title = f"snapshot of {n:,} entries ({mb:.0f} MB)"
    return [
        Result(title, "safepoint save", "s", save, higher_is_better=False),
        Result(title, "safepoint restore", "s", restore, higher_is_better=False),
        Result(title, "lmdb copy(compact=True) + fsync", "s", copy, higher_is_better=False),
    ]
