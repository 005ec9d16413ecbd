"""Durable commits: one key of 100 bytes per commit, from 1 and from N threads.

Every store is opened durable (the commit is on disk when ``put`` returns),
all of them at once, and kept open; then short timed windows run round
robin, A B C A B C ..., so that a burst of I/O from another process on this
shared disk hits every case alike.  Each window starts after ``os.sync()``,
with no write-back pending from the window before.

The physical limit runs in the same rotation: one thread doing pwrite +
fdatasync of one record-sized buffer at consecutive offsets of a file
preallocated with written zeros (as safepoint's segments are), and the same
with N records per fdatasync (what a perfect group commit could reach).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable

from . import peers
from .common import Context, Result, interleave, keys_for, threaded_rate, values_for
from .wal_append import PREALLOC_BYTES, preallocate

RECORD_BYTES = 159  # a safepoint record of one put of a 16-byte key, 100-byte value
NAME = "commits"
WINDOWS_PER_ROUND = 3  # short windows, more of them: finer interleaving


def wait_for_background_prepare() -> None:
    """A new safepoint store zero-fills its next segment (64 MB + fsync) on a
    background thread; let it finish so a window measures the steady state."""
    for t in threading.enumerate():
        if t.name == "safepoint-wal-prepare":
            t.join()


def window(db: peers.Adapter, threads: int, seconds: float, keys: list[bytes]) -> float:
    """Commits/s of ``threads`` threads putting one key per commit for ``seconds``."""
    value = values_for(1)[0]

    def worker(slot: int, stop: threading.Event) -> int:
        put = db.put
        mine = keys[slot::threads]
        n = 0
        while not stop.is_set():
            put(mine[n % len(mine)], value)
            n += 1
        return n

    return threaded_rate(threads, seconds, worker)


class RawFile:
    """A preallocated file and a cursor: pwrite ``per_sync`` records, fdatasync."""

    def __init__(self, ctx: Context, per_sync: int) -> None:
        self.path = os.path.join(ctx.root, f"raw-{uuid.uuid4().hex}.dat")
        self.fd = preallocate(self.path, PREALLOC_BYTES)
        self.buf = b"r" * (RECORD_BYTES * per_sync)
        self.per_sync = per_sync
        self.off = 0

    def window(self, seconds: float) -> float:
        """Records/s over ``seconds``."""
        fd, buf, step = self.fd, self.buf, len(self.buf)
        pwrite, fdatasync, clock = os.pwrite, os.fdatasync, time.perf_counter
        limit = PREALLOC_BYTES - step
        off, n = self.off, 0
        os.sync()
        t0 = clock()
        deadline = t0 + seconds
        while True:
            pwrite(fd, buf, off)
            fdatasync(fd)
            n += 1
            off = off + step if off + step <= limit else 0
            if clock() >= deadline:
                break
        self.off = off
        return n * self.per_sync / (clock() - t0)

    def close(self) -> None:
        os.close(self.fd)
        os.unlink(self.path)


def run(ctx: Context) -> list[Result]:
    """Commits/s per store at 1 and N threads, raw fdatasync limits beside."""
    s = ctx.settings
    out: list[Result] = []
    seconds = s.seconds / WINDOWS_PER_ROUND
    rounds = s.rounds * WINDOWS_PER_ROUND
    for threads in (1, s.threads):
        stores = {
            name: peers.STORES[name](ctx.fresh_dir(f"commit-{name}"), durable=True)
            for name in peers.selected(s.peers)
        }
        per_sync = 1 if threads == 1 else threads
        raw = RawFile(ctx, per_sync)
        try:
            keys = keys_for(50_000, seed=threads)
            for db in stores.values():
                db.put(b"warm-up", b"x")
            wait_for_background_prepare()
            cases: dict[str, Callable[[], float]] = {
                name: (lambda db=db, t=threads, k=keys: window(db, t, seconds, k))
                for name, db in stores.items()
            }
            raw_name = "raw fdatasync" if per_sync == 1 else f"raw fdatasync, {per_sync}/sync"
            cases[raw_name] = lambda raw=raw: raw.window(seconds)
            title = f"durable commits x{threads}"
            samples = interleave(ctx, title, cases, rounds)
        finally:
            for db in stores.values():
                db.close()
            raw.close()
        for name, values in samples.items():
            limit = name.startswith("raw")
            out.append(
                Result(
                    title,
                    name,
                    "records/s" if limit else "commits/s",
                    values,
                    note="physical limit: 1 thread, preallocated file" if limit else "",
                )
            )
    return out
