"""The benchmark runner: ``python -m benchmarks [--quick] [--scale S] ...``.

Runs the named workloads (all by default) against safepoint, its peers and
the machine's physical limits, each interleaved round by round, and writes
``<out>/<YYYY-MM-DD>.md`` (tables of medians, ratios, the issue-7 targets,
the machine) and ``<out>/<YYYY-MM-DD>.png`` (the chart).  All data goes to a
scratch directory on the repository's disk, removed at the end.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from . import bulk, ckpt, commits, gets, limits, mixed, peers, reopen, report, snap
from .common import Context, Result, Settings
from .machine import describe

WORKLOADS: dict[str, Callable[[Context], list[Result]]] = {
    limits.NAME: limits.run,
    commits.NAME: commits.run,
    bulk.NAME: bulk.run,
    gets.NAME: gets.run,
    mixed.NAME: mixed.run,
    reopen.NAME: reopen.run,
    ckpt.NAME: ckpt.run,
    snap.NAME: snap.run,
}
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def parse(argv: list[str] | None) -> tuple[Settings, argparse.Namespace]:
    """Command-line options into Settings (and the rest of the namespace)."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="safepoint against lmdb, sqlite, rocksdict, plyvel, a dict and the disk.",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="a quick look: --scale 0.05 --rounds 2 --seconds 0.5 unless given",
    )
    ap.add_argument("--scale", type=float, help="multiply every count and size (default 1)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per workload (default 3)")
    ap.add_argument("--seconds", type=float, help="length of one timed rate run (default 1.5)")
    ap.add_argument("--threads", type=int, default=8, help="threads of the concurrent runs (8)")
    ap.add_argument("--only", default="", help=f"comma list of workloads: {','.join(WORKLOADS)}")
    ap.add_argument("--peers", default="", help=f"comma list of stores: {','.join(peers.STORES)}")
    ap.add_argument(
        "--reopen-small-mb",
        type=float,
        default=100.0,
        help="MB of 100-byte-value log to reopen (default 100)",
    )
    ap.add_argument(
        "--reopen-large-mb",
        type=float,
        default=1024.0,
        help="MB of 1 MiB-value log to reopen (default 1024)",
    )
    ap.add_argument(
        "--open-store-gb",
        type=float,
        default=10.0,
        help="GB the store opened with nothing to replay is grown to (default 10)",
    )
    ap.add_argument(
        "--scratch",
        default=os.path.join(HERE, "scratch"),
        help="scratch directory, on the disk under test (default benchmarks/scratch)",
    )
    ap.add_argument(
        "--out",
        default=os.path.join(HERE, "results"),
        help="directory for <date>.md and <date>.png (default benchmarks/results)",
    )
    ap.add_argument("--name", default="", help="file name stem (default: today's date)")
    a = ap.parse_args(argv)
    quick = a.quick
    s = Settings(
        scale=a.scale if a.scale is not None else (0.05 if quick else 1.0),
        rounds=a.rounds if a.rounds is not None else (2 if quick else 3),
        seconds=a.seconds if a.seconds is not None else (0.5 if quick else 1.5),
        threads=a.threads,
        scratch=os.path.abspath(a.scratch),
        only=[w for w in a.only.split(",") if w],
        peers=[p for p in a.peers.split(",") if p],
        reopen_small_mb=a.reopen_small_mb,
        reopen_large_mb=a.reopen_large_mb,
        open_store_gb=a.open_store_gb,
    )
    bad = [w for w in s.only if w not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload(s) {', '.join(bad)}; choose from {', '.join(WORKLOADS)}")
    unknown = [p for p in s.peers if p not in peers.STORES and p not in peers.MISSING]
    if unknown:
        ap.error(f"unknown store(s) {', '.join(unknown)}; choose from {', '.join(peers.STORES)}")
    if s.scale <= 0 or s.rounds < 1 or s.seconds <= 0 or s.threads < 2:
        ap.error("--scale and --seconds must be > 0, --rounds >= 1, --threads >= 2")
    return s, a


def _revision() -> str:
    """The commit of the checkout, and whether files differ from it (the
    editable install measures the working tree)."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    rev = out.stdout.strip() or "unknown"
    return f"git {rev}" + (" (working tree differs from the commit)" if "dirty" in rev else "")


def main(argv: list[str] | None = None) -> int:
    """Run, write the report, print where it is; 0 unless something broke."""
    settings, args = parse(argv)
    os.makedirs(settings.scratch, exist_ok=True)
    os.makedirs(args.out, exist_ok=True)
    notes: list[str] = []
    if os.stat(settings.scratch).st_dev != os.stat(REPO).st_dev:
        notes.append(f"scratch {settings.scratch} is NOT on the repository's filesystem")
    for name, why in peers.MISSING.items():
        notes.append(f"{name} left out: {why}")
    ctx = Context(settings)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    results: list[Result] = []
    try:
        for name, fn in WORKLOADS.items():
            if settings.only and name not in settings.only:
                continue
            ctx.log(f"[{name}] load {os.getloadavg()[0]:.2f}")
            w0 = time.perf_counter()
            results.extend(fn(ctx))
            ctx.log(f"[{name}] {time.perf_counter() - w0:.1f} s")
        if not snap.available() and (not settings.only or snap.NAME in settings.only):
            notes.append("snapshot workload skipped: this safepoint has no Store.save/restore")
        machine = describe(ctx.root)
    finally:
        ctx.cleanup()
    elapsed = time.perf_counter() - t0
    load1 = os.getloadavg()
    stem = args.name or datetime.date.today().isoformat()
    png = report.chart(results, os.path.join(args.out, f"{stem}.png"))
    if png is None:
        notes.append("no chart: matplotlib is not installed (pip install '.[bench]')")
    meta = {
        "command": shlex.join(
            ["python", "-m", "benchmarks", *(argv if argv is not None else sys.argv[1:])]
        ),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "code measured": _revision(),
        "settings": (
            f"scale {settings.scale:g}, {settings.rounds} rounds, {settings.seconds:g} s per "
            f"rate run, {settings.threads} threads"
        ),
        "duration": f"{elapsed:.0f} s",
        "load average (1/5/15 min)": (
            f"{load0[0]:.2f}/{load0[1]:.2f}/{load0[2]:.2f} at start, "
            f"{load1[0]:.2f}/{load1[1]:.2f}/{load1[2]:.2f} at end "
            f"(the machine is shared: other processes ran meanwhile)"
        ),
    }
    md = report.markdown(
        results, machine, meta, report.targets(results, settings.threads), png, notes
    )
    path = os.path.join(args.out, f"{stem}.md")
    with open(path, "w") as f:
        f.write(md)
    print(md)
    print(f"\nwritten: {path}" + (f" and {png}" if png else ""))
    return 0
