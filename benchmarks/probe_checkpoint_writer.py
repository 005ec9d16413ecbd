"""Probe: what one durable writer sees while a checkpoint runs beside it.

    python benchmarks/probe_checkpoint_writer.py [--entries 300000] [--writers 1] [--sync always]
        [--no-spin]

Fills a store's memtable with N entries, starts threads committing durably
one key at a time, runs ``db.checkpoint()`` after a second, and prints the
writers' rate before and during it, the checkpoint's length and how long it
yielded the GIL to them, and the longest gaps between commits (when each
began, relative to the checkpoint's start).  ``--no-spin`` turns the log
engine's syncer off (``set_spin(0)``: committers lead their own flushes), for
an A/B of it.  Data goes to
benchmarks/scratch/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time

import safepoint

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import keys_for, values_for  # noqa: E402

SCRATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scratch", "probe-ckpt")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=300_000)
    ap.add_argument("--writers", type=int, default=1)
    ap.add_argument("--sync", default="always", choices=["always", "interval", "none"])
    ap.add_argument("--no-spin", action="store_true", help="the engine's syncer off")
    args = ap.parse_args()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    db = safepoint.open(SCRATCH, sync=args.sync, checkpoint_bytes=None)
    native = db._wal._native if db._wal is not None else None
    if args.no_spin and native is not None:
        native.set_spin(0.0)
    try:
        keys, values = keys_for(args.entries, seed=20), values_for(args.entries, seed=20)
        items = list(zip(keys, values, strict=True))
        for i in range(0, len(items), 1000):
            db.update(items[i : i + 1000])
        times: list[float] = []
        stop = threading.Event()

        def write(slot: int) -> None:
            value, i = b"x" * 100, 0
            while not stop.is_set():
                db.put(b"w%d-%d" % (slot, i % 5000), value)
                times.append(time.perf_counter())  # list.append: atomic under the GIL
                i += 1

        writers = [threading.Thread(target=write, args=(n,)) for n in range(args.writers)]
        for w in writers:
            w.start()
        time.sleep(1.0)
        c0 = time.perf_counter()
        info = db.checkpoint()
        c1 = time.perf_counter()
        engine = native.state() if native is not None else None
        time.sleep(0.2)
        stop.set()
        for w in writers:
            w.join()
        times.sort()
    finally:
        db.close()
        shutil.rmtree(SCRATCH, ignore_errors=True)

    def rate(a: float, b: float) -> float:
        return sum(1 for t in times if a <= t <= b) / (b - a)

    before, during = rate(c0 - 0.5, c0), rate(c0, c1)
    gaps = sorted(
        ((b - a, a - c0) for a, b in zip(times, times[1:], strict=False) if c0 <= b and a <= c1),
        reverse=True,
    )
    print(
        f"checkpoint of {args.entries:,} entries: {c1 - c0:.3f} s (yielded {info.yielded_s:.3f} s);"
        f" {args.writers} writer(s) {before:,.0f}/s before, {during:,.0f}/s during"
        f" ({during / before:.0%})"
    )
    if engine is not None:
        print(
            f"engine: {engine.syncer_flushes:,} syncer flushes, {engine.spin_waits:,} spin waits,"
            f" {engine.spin_backoffs} back-offs"
        )
    print(
        "longest gaps (ms, at ms):",
        ", ".join(f"{g * 1e3:.1f}@{at * 1e3:.0f}" for g, at in gaps[:5]),
    )


if __name__ == "__main__":
    main()
