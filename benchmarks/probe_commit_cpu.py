"""Probe: what a commit costs in CPU, hot and cold, and at 8 threads.

    python benchmarks/probe_commit_cpu.py [--puts 3000] [--seconds 3]

1. The CPU time (``time.thread_time``) of a sync="none" put run back to
   back ("hot") and after a 200 us sleep ("cold", as a durable commit after
   its fdatasync): the cold figure is what a durable commit adds to the
   fdatasync.
2. Durable commits against the raw pwrite + fdatasync loop in alternating
   blocks of 200 in one thread: the ratio the 1-thread target measures.
3. 8 threads committing durably: commits/s, the process's share of the
   2 cores, user and system CPU per commit, and context switches per commit
   (``getrusage``): whether the commits are CPU- or latency-bound.

Data goes to benchmarks/scratch/ (the repository's disk).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import threading
import time

import safepoint

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.commits import RECORD_BYTES, wait_for_background_prepare  # noqa: E402
from benchmarks.wal_append import PREALLOC_BYTES, preallocate  # noqa: E402

SCRATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scratch", "probe-cpu")
VALUE = b"v" * 100


def put_cpu(puts: int) -> None:
    """Hot and cold CPU per sync="none" put."""
    db = safepoint.open(os.path.join(SCRATCH, "none"), sync="none", checkpoint_bytes=None)
    try:
        keys = [b"k%015d" % i for i in range(puts)]
        for mode in ("hot", "cold", "hot", "cold"):
            total = 0.0
            for k in keys:
                if mode == "cold":
                    time.sleep(0.0002)
                t = time.thread_time()
                db.put(k, VALUE)
                total += time.thread_time() - t
            print(f"put, sync='none', {mode:4}: {total / puts * 1e6:5.1f} us of CPU")
    finally:
        db.close()


def against_raw(blocks: int) -> None:
    """Durable commits ÷ the raw loop, alternating blocks of 200."""
    db = safepoint.open(os.path.join(SCRATCH, "always"), sync="always", checkpoint_bytes=None)
    fd = preallocate(os.path.join(SCRATCH, "raw.dat"), PREALLOC_BYTES)
    try:
        db.put(b"warm-up", b"x")
        wait_for_background_prepare()
        buf, off = b"r" * RECORD_BYTES, 0
        keys = [b"k%015d" % i for i in range(200)]
        ours, raw = [], []
        for _ in range(blocks):
            t = time.perf_counter()
            for k in keys:
                db.put(k, VALUE)
            ours.append(200 / (time.perf_counter() - t))
            t = time.perf_counter()
            for _ in range(200):
                os.pwrite(fd, buf, off)
                os.fdatasync(fd)
                off += RECORD_BYTES
            raw.append(200 / (time.perf_counter() - t))
        ratios = [a / b for a, b in zip(ours, raw, strict=True)]
        print(
            f"durable commits, 1 thread: {statistics.median(ours):,.0f}/s, raw loop "
            f"{statistics.median(raw):,.0f}/s, median ratio of the pairs "
            f"{statistics.median(ratios):.3f}"
        )
    finally:
        os.close(fd)
        db.close()


def threads8(seconds: float) -> None:
    """Commits/s, CPU and context switches of 8 durable committers."""
    db = safepoint.open(os.path.join(SCRATCH, "eight"), sync="always", checkpoint_bytes=None)
    try:
        db.put(b"warm-up", b"x")
        wait_for_background_prepare()
        stop = threading.Event()
        counts = [0] * 8

        def work(slot: int) -> None:
            keys = [b"t%d-%012d" % (slot, j) for j in range(5000)]
            n, put = 0, db.put
            while not stop.is_set():
                put(keys[n % 5000], VALUE)
                n += 1
            counts[slot] = n

        workers = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for w in workers:
            w.start()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        elapsed, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
        n = sum(counts)
        user, system = r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime
        print(
            f"durable commits, 8 threads: {n / elapsed:,.0f}/s, CPU {(user + system) / elapsed:.0%}"
            f" of one core, user {user / n * 1e6:.1f} us and system {system / n * 1e6:.1f} us"
            f" per commit, {(r1.ru_nvcsw - r0.ru_nvcsw) / n:.1f} voluntary and "
            f"{(r1.ru_nivcsw - r0.ru_nivcsw) / n:.1f} involuntary context switches per commit"
        )
    finally:
        db.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--puts", type=int, default=3000)
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    os.makedirs(SCRATCH)
    try:
        put_cpu(args.puts)
        against_raw(args.blocks)
        threads8(args.seconds)
    finally:
        shutil.rmtree(SCRATCH, ignore_errors=True)


if __name__ == "__main__":
    main()
