"""WAL append throughput against the physical limit (issue 2's acceptance).

Run from the repository root:

    python benchmarks/wal_append.py [--seconds 2] [--rounds 5] [--dir benchmarks/scratch]

Measures, interleaved round by round on the same disk:

* ``raw``: one thread, ``pwrite`` of one record-sized buffer then
  ``fdatasync``, on a file preallocated by writing zeros (as the WAL's
  segments are) -- the most durable appends one writer can do;
* ``wal x1``: ``WalWriter.append(payload)`` then ``flush(lsn)`` with
  sync="always" from one thread;
* ``wal x8``: the same from 8 threads, which share fdatasyncs (group commit).

The writer runs its native group-commit engine (native/sp_wal.c) when the
native codec is active, as it does for a store; ``SAFEPOINT_BACKEND=python``
measures the Python loop instead.

Prints the median appends/s of each and the ratios against the targets
(1 thread >= 0.9x raw; 8 threads >= 3x 1 thread).  A script, not a test:
speed is never asserted in the test suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable

from safepoint import records
from safepoint.format import OP_PUT, RECORD_HEADER_SIZE
from safepoint.fs import DEFAULT_FS
from safepoint.wal import WalWriter

KEY_BYTES = 16
VALUE_BYTES = 100
PREALLOC_BYTES = 64 << 20  # the WAL's default segment size
TARGET_ONE_VS_RAW = 0.9
TARGET_EIGHT_VS_ONE = 3.0


def default_scratch() -> str:
    """benchmarks/scratch/ beside this file: git-ignored, on the repo's disk."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "scratch")


def make_payload(i: int = 0) -> bytes:
    """One put of a 16-byte key and a 100-byte value, as a commit encodes it."""
    key = f"key{i:013d}".encode()[:KEY_BYTES]
    return records.encode_payload([(OP_PUT, key, b"v" * VALUE_BYTES)])


def preallocate(path: str, size: int) -> int:
    """Create ``path`` as ``size`` bytes of written zeros, synced; return an
    O_RDWR descriptor.  Written zeros (not fallocate) so that later writes
    are pure data writes, as in the WAL's segments."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    chunk = bytes(1 << 20)
    for off in range(0, size, len(chunk)):
        os.pwrite(fd, chunk[: min(len(chunk), size - off)], off)
    os.fsync(fd)
    dfd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return fd


def raw_fsync_loop(scratch: str, seconds: float, record_bytes: int) -> float:
    """pwrite + fdatasync of ``record_bytes`` at consecutive offsets of a
    preallocated file, one thread, for ``seconds``; returns appends/s."""
    path = os.path.join(scratch, f"raw-{uuid.uuid4().hex}.dat")
    fd = preallocate(path, PREALLOC_BYTES)
    try:
        buf = b"r" * record_bytes
        limit = PREALLOC_BYTES - record_bytes
        off = n = 0
        pwrite, fdatasync, clock = os.pwrite, os.fdatasync, time.perf_counter
        t0 = clock()
        deadline = t0 + seconds
        while True:
            pwrite(fd, buf, off)
            fdatasync(fd)
            n += 1
            off += record_bytes
            if off > limit:
                off = 0
            if (n & 15) == 0 and clock() >= deadline:
                break
        return n / (clock() - t0)
    finally:
        os.close(fd)
        os.unlink(path)


def _wait_for_prepare() -> None:
    """Let the writer finish zero-filling its next segment (a 64 MB write and
    fsync on a background thread) before timing, so it does not compete."""
    for t in threading.enumerate():
        if t.name == "safepoint-wal-prepare":
            t.join()


def open_writer(scratch: str) -> tuple[WalWriter, str]:
    """A fresh WalWriter (sync="always") in its own directory under ``scratch``."""
    wal_dir = os.path.join(scratch, f"wal-{uuid.uuid4().hex}")
    os.makedirs(wal_dir)
    writer = WalWriter(
        DEFAULT_FS,
        wal_dir,
        uuid.uuid4().bytes,
        next_lsn=1,
        segments=[],
        tail_offset=None,
        sync="always",
    )
    _wait_for_prepare()
    return writer, wal_dir


# Records per fdatasync of each timed group run (native engine only), and
# the group-commit loops the writers ran.
PER_FSYNC: dict[int, list[float]] = {}
ENGINES: set[str] = set()


def wal_appends(scratch: str, seconds: float, threads: int) -> float:
    """append + flush(lsn) from ``threads`` threads for ``seconds``; appends/s."""
    writer, wal_dir = open_writer(scratch)
    ENGINES.add(writer.engine)
    fsyncs_before = writer._native.state().fsyncs if writer._native is not None else 0
    payload = make_payload()
    counts = [0] * threads
    stop = threading.Event()
    start = threading.Barrier(threads + 1)

    def worker(slot: int) -> None:
        append, flush = writer.append, writer.flush
        n = 0
        start.wait()
        while not stop.is_set():
            flush(append(payload))
            n += 1
        counts[slot] = n

    try:
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        start.wait()
        t0 = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - t0
        if writer._native is not None:
            fsyncs = writer._native.state().fsyncs - fsyncs_before
            PER_FSYNC.setdefault(threads, []).append(sum(counts) / max(fsyncs, 1))
    finally:
        writer.close()
        shutil.rmtree(wal_dir, ignore_errors=True)
    return sum(counts) / elapsed


def same_filesystem(a: str, b: str) -> bool:
    """Whether two existing paths live on the same device."""
    return os.stat(a).st_dev == os.stat(b).st_dev


def interleave(
    cases: dict[str, Callable[[], float]], rounds: int, log: Callable[[str], None]
) -> dict[str, list[float]]:
    """Run every case once per round, in order A B C A B C ...; all samples."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        for name, fn in cases.items():
            value = fn()
            samples[name].append(value)
            log(f"  round {r + 1}/{rounds}  {name:<8} {value:>10,.0f} /s")
    return samples


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the table; exit status 0 even if a
    target is missed (the figures are the output, not a verdict)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of one run (default 2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--threads", type=int, default=8, help="threads of the group run (8)")
    ap.add_argument("--dir", default=default_scratch(), help="scratch directory (same disk!)")
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or args.threads < 2:
        ap.error("--seconds must be > 0, --rounds >= 1, --threads >= 2")

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scratch = os.path.join(os.path.abspath(args.dir), f"wal_append-{os.getpid()}")
    os.makedirs(scratch)
    try:
        if not same_filesystem(scratch, repo):
            print(f"warning: {scratch} is not on the repository's filesystem", file=sys.stderr)
        record_bytes = RECORD_HEADER_SIZE + len(make_payload())
        n = args.threads
        print(
            f"wal_append: {record_bytes}-byte records, {args.rounds} rounds x {args.seconds:g} s, "
            f"backend={records.BACKEND}, load={os.getloadavg()[0]:.2f}, dir={scratch}"
        )
        samples = interleave(
            {
                "raw": lambda: raw_fsync_loop(scratch, args.seconds, record_bytes),
                "wal x1": lambda: wal_appends(scratch, args.seconds, 1),
                f"wal x{n}": lambda: wal_appends(scratch, args.seconds, n),
            },
            args.rounds,
            print,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {name: statistics.median(v) for name, v in samples.items()}
    raw, one, many = med["raw"], med["wal x1"], med[f"wal x{n}"]
    print()
    print(f"{'case':<34}{'appends/s (median)':>20}")
    print(f"{'raw pwrite+fdatasync, 1 thread':<34}{raw:>20,.0f}")
    print(f"{'WalWriter sync=always, 1 thread':<34}{one:>20,.0f}")
    print(f"{f'WalWriter sync=always, {n} threads':<34}{many:>20,.0f}")
    print()
    r1, r8 = one / raw, many / one
    print(
        f"1 thread / raw      = {r1:.2f}x  (target >= {TARGET_ONE_VS_RAW}x: "
        f"{'met' if r1 >= TARGET_ONE_VS_RAW else 'MISSED'})"
    )
    print(
        f"{n} threads / 1 thread = {r8:.2f}x  (target >= {TARGET_EIGHT_VS_ONE}x: "
        f"{'met' if r8 >= TARGET_EIGHT_VS_ONE else 'MISSED'})"
    )
    print(f"group-commit engine: {', '.join(sorted(ENGINES))}")
    for t, values in sorted(PER_FSYNC.items()):
        print(f"records per fdatasync, {t} thread(s): {statistics.median(values):.2f} (median)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
