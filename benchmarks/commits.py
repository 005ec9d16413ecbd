"""Durable commits: one key of 100 bytes per commit, from 1 and from N threads.

Every store is opened durable (the commit is on disk when ``put`` returns).
The physical limit runs in the same interleaving: one thread doing pwrite +
fdatasync of one record-sized buffer on a preallocated file, and the same
with N records per fdatasync (what a perfect group commit could reach).
"""

from __future__ import annotations

import os
import threading
import time
import uuid

from . import peers
from .common import Context, Result, interleave, keys_for, values_for
from .wal_append import preallocate, raw_fsync_loop

RECORD_BYTES = 159  # a safepoint record of one put of a 16-byte key, 100-byte value
NAME = "commits"


def commit_rate(ctx: Context, store: str, threads: int, seconds: float) -> float:
    """Commits/s of ``store`` opened durable, ``threads`` committing for
    ``seconds``; each commit puts one fresh key."""
    path = ctx.fresh_dir(f"commit-{store}")
    db = peers.STORES[store](path, durable=True)
    keys = keys_for(20000, seed=threads)
    value = values_for(1)[0]
    counts = [0] * threads
    stop = threading.Event()
    ready = threading.Barrier(threads + 1)

    def worker(slot: int) -> None:
        put = db.put
        n = 0
        mine = keys[slot::threads]
        ready.wait()
        while not stop.is_set():
            put(mine[n % len(mine)], value)
            n += 1
        counts[slot] = n

    try:
        db.put(b"warm-up", value)  # file creation and first fsyncs off the clock
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


def raw_batched_rate(ctx: Context, per_sync: int, seconds: float) -> float:
    """Records/s of one thread writing ``per_sync`` records per pwrite +
    fdatasync on a preallocated file: the ceiling of a group commit that
    carries ``per_sync`` commits per fsync."""
    path = os.path.join(ctx.root, f"rawb-{uuid.uuid4().hex}.dat")
    size = 64 << 20
    fd = preallocate(path, size)
    try:
        buf = b"r" * (RECORD_BYTES * per_sync)
        off = n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while time.perf_counter() < deadline:
            os.pwrite(fd, buf, off)
            os.fdatasync(fd)
            n += 1
            off = off + len(buf) if off + 2 * len(buf) < size else 0
        return n * per_sync / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def run(ctx: Context) -> list[Result]:
    """Commits/s per store at 1 and N threads, raw fdatasync limits beside."""
    s = ctx.settings
    stores = peers.selected(s.peers)
    out: list[Result] = []
    for threads in (1, s.threads):
        cases = {
            name: (lambda name=name, threads=threads: commit_rate(ctx, name, threads, s.seconds))
            for name in stores
        }
        if threads == 1:
            cases["raw fdatasync"] = lambda: raw_fsync_loop(ctx.root, s.seconds, RECORD_BYTES)
        else:
            cases[f"raw fdatasync, {threads}/sync"] = lambda: raw_batched_rate(
                ctx, s.threads, s.seconds
            )
        title = f"durable commits x{threads}"
        samples = interleave(ctx, title, cases)
        for name, values in samples.items():
            limit = name.startswith("raw")
            out.append(
                Result(
                    title,
                    name,
                    "records/s" if limit else "commits/s",
                    values,
                    note="physical limit, 1 thread" if limit else "",
                )
            )
    return out
