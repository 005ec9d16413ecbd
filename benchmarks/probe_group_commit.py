"""Probe: how 8 committing threads use the group-commit engine.

    python benchmarks/probe_group_commit.py [--threads 8] [--seconds 3] [--gather SECONDS]

Commits one put per transaction (sync="always") from N threads for a few
seconds, then prints commits/s, fdatasyncs/s, records per fdatasync and the
gathering leaders' mean wait, from the engine's own counters.  Data goes to
benchmarks/scratch/ (the repository's disk).
"""

from __future__ import annotations

import argparse
import os
import shutil
import threading
import time

import safepoint

SCRATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scratch", "probe-gc")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--gather", type=float, default=None, help="cap on a leader's wait (s)")
    args = ap.parse_args()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    db = safepoint.open(SCRATCH, sync="always", checkpoint_bytes=None)
    try:
        engine = db._wal._native  # the native engine's counters
        if engine is None:
            raise SystemExit("the native group-commit engine is not in use")
        if args.gather is not None:
            engine.set_gather(args.gather)
        db.put(b"warm-up", b"x")
        stop = threading.Event()
        counts = [0] * args.threads

        def commit(slot: int) -> None:
            value, n = b"x" * 100, 0
            while not stop.is_set():
                db.put(b"k%d-%d" % (slot, n % 5000), value)
                n += 1
            counts[slot] = n

        threads = [threading.Thread(target=commit, args=(i,)) for i in range(args.threads)]
        before = engine.state()
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        after = engine.state()
    finally:
        db.close()
        shutil.rmtree(SCRATCH, ignore_errors=True)
    commits, syncs = sum(counts), after.fsyncs - before.fsyncs
    gathers = after.gathers - before.gathers
    waited = (after.gather_wait_s - before.gather_wait_s) / max(gathers, 1)
    print(
        f"{args.threads} threads: {commits / elapsed:,.0f} commits/s, "
        f"{syncs / elapsed:,.0f} fdatasyncs/s, {commits / max(syncs, 1):.2f} records per "
        f"fdatasync, {gathers} gathers, mean gather wait {waited * 1e6:.0f} us, "
        f"fdatasync ~{after.sync_s * 1e6:.0f} us (moving average)"
    )


if __name__ == "__main__":
    main()
