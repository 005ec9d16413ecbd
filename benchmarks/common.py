"""What every workload shares: settings, results, interleaving, data, scratch.

A workload is a function ``run(ctx) -> list[Result]``.  It builds its cases
(one callable per store or limit, each returning one sample), runs them
interleaved round by round (A B C A B C ...) so that a burst of load from
other processes hits every case alike, and reports the median of the rounds.
"""

from __future__ import annotations

import os
import random
import shutil
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

KEY_BYTES = 16
VALUE_BYTES = 100


@dataclass
class Settings:
    """How big and how long; ``scale`` shrinks every count and size."""

    scale: float = 1.0
    rounds: int = 3
    seconds: float = 1.5  # one timed run of a rate workload
    threads: int = 8
    scratch: str = ""
    only: list[str] = field(default_factory=list)  # workload names; empty = all
    peers: list[str] = field(default_factory=list)  # store names; empty = all available
    reopen_small_mb: float = 100.0
    reopen_large_mb: float = 1024.0
    open_store_gb: float = 10.0

    def n(self, full: int, minimum: int = 10) -> int:
        """``full`` scaled, never below ``minimum``."""
        return max(minimum, int(full * self.scale))


@dataclass
class Result:
    """One measured quantity: the samples of every round and their median."""

    workload: str
    subject: str  # a store ("safepoint", "lmdb", ...) or a limit ("raw fdatasync")
    unit: str
    samples: list[float]
    higher_is_better: bool = True
    note: str = ""

    @property
    def median(self) -> float:
        """The median of the rounds: robust to one noisy round."""
        return statistics.median(self.samples) if self.samples else float("nan")

    @property
    def spread(self) -> str:
        """min-max of the rounds, for the table."""
        if len(self.samples) < 2:
            return ""
        return f"{fmt(min(self.samples))}-{fmt(max(self.samples))}"


class Context:
    """Settings plus the scratch directory and a log for progress lines."""

    def __init__(self, settings: Settings, log: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.root = os.path.join(settings.scratch, f"run-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        os.makedirs(self.root)

    def fresh_dir(self, label: str) -> str:
        """A new, empty directory under the scratch root."""
        path = os.path.join(self.root, f"{label}-{uuid.uuid4().hex[:8]}")
        os.makedirs(path)
        return path

    def remove(self, path: str) -> None:
        """Delete one directory this run made (frees disk between workloads)."""
        shutil.rmtree(path, ignore_errors=True)

    def cleanup(self) -> None:
        """Remove everything this run wrote."""
        shutil.rmtree(self.root, ignore_errors=True)


def fmt(x: float) -> str:
    """A number short enough for a table cell: 3 significant digits."""
    if x != x:  # NaN
        return "-"
    ax = abs(x)
    if ax >= 1e6:
        return f"{x / 1e6:.3g}M"
    if ax >= 1e4:
        return f"{x / 1e3:.3g}k"
    if ax >= 100:
        return f"{x:.0f}"
    if ax >= 1:
        return f"{x:.3g}"
    return f"{x:.3g}"


def interleave(
    ctx: Context, title: str, cases: dict[str, Callable[[], float]], rounds: int | None = None
) -> dict[str, list[float]]:
    """Run each case once per round in order A B C A B C ...; all samples."""
    rounds = rounds or ctx.settings.rounds
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, fn in cases.items():
            value = fn()
            samples[name].append(value)
            ctx.log(f"  {title} round {r + 1}/{rounds}: {name:<22} {fmt(value)}")
    return samples


def keys_for(n: int, *, seed: int = 1) -> list[bytes]:
    """``n`` distinct 16-byte keys in a shuffled (reproducible) order."""
    keys = [b"key%013d" % i for i in range(n)]
    random.Random(seed).shuffle(keys)
    return keys


def values_for(n: int, size: int = VALUE_BYTES, *, seed: int = 2) -> list[bytes]:
    """``n`` incompressible values of ``size`` bytes (slices of one random
    buffer, so generating them costs little and LSM stores cannot compress)."""
    spread = 1 << 16
    pool = random.Random(seed).randbytes(size + spread)
    return [pool[o : o + size] for o in ((i * 7919) % spread for i in range(n))]


def threaded_rate(
    threads: int, seconds: float, worker: Callable[[int, threading.Event], int]
) -> float:
    """Operations/s of ``threads`` threads running ``worker(slot, stop)`` for
    ``seconds``: each loops until ``stop`` is set and returns how many
    operations it did.  The threads start together, after ``os.sync()`` so
    that earlier writes do not land in the window."""
    counts = [0] * threads
    stop = threading.Event()
    ready = threading.Barrier(threads + 1)

    def run(slot: int) -> None:
        ready.wait()
        counts[slot] = worker(slot, stop)

    pool = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    os.sync()
    ready.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in pool:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)


def timed(fn: Callable[[], object]) -> float:
    """Seconds ``fn`` took."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def drop_cache(path: str) -> None:
    """Evict the files under ``path`` from the page cache (they must be
    synced: only clean pages are dropped), so the next read is cold."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(root, name)
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def dir_bytes(path: str) -> int:
    """Bytes of all files under ``path`` (apparent size)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total
