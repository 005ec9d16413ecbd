"""``python -m safepoint.testing``: a long crash-exploration run.

    python -m safepoint.testing --min-states 10000            # the documented run
    python -m safepoint.testing --workload mypkg.jobs:workload --min-states 500

Runs the explorer on seeded random workloads (workloads.py; or on your
own, ``module:function`` taking a RecordingStore), seed after seed,
alternating sync="always" and sync="none", until at least ``--min-states``
distinct crash states have been recovered and checked.  Prints one line per
run and the totals per crash model; exits 1 if any guarantee was violated.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from .crash import MODELS
from .explorer import ExploreResult, explore
from .workloads import random_workload


def _load(spec: str) -> Callable[[Any], object]:
    module, _, name = spec.partition(":")
    if not name:
        raise SystemExit(f"--workload must be module:function, not {spec!r}")
    fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise SystemExit(f"{spec}: no such function")
    return fn  # type: ignore[no-any-return]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the exploration; returns the exit status."""
    p = argparse.ArgumentParser(
        prog="python -m safepoint.testing", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--min-states", type=int, default=10_000, help="stop after this many (default 10000)"
    )
    p.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    p.add_argument("--workload", help="module:function to explore instead of the random workloads")
    p.add_argument(
        "--ops", type=int, default=40, help="operations per random workload (default 40)"
    )
    p.add_argument(
        "--variants", type=int, default=2, help="seeds per crash point for random models"
    )
    p.add_argument(
        "--sample-ops", type=int, default=None, help="crash points besides fsync boundaries"
    )
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated crash models")
    p.add_argument("--keep-failures", default=None, help="directory for violating crash states")
    args = p.parse_args(argv)
    models = tuple(m for m in args.models.split(",") if m)
    own = _load(args.workload) if args.workload else None
    t0 = time.perf_counter()
    total = 0
    generated: Counter[str] = Counter()
    distinct: Counter[str] = Counter()
    violations = 0
    runs = 0
    seed = args.seed
    while total < args.min_states:
        sync = "always" if seed % 2 else "none"
        workload = own or random_workload(seed, ops=args.ops)
        result: ExploreResult = explore(
            workload,
            models=models,
            seed=seed,
            variants=args.variants,
            sample_ops=args.sample_ops,
            store_options={"sync": sync},
            keep_failures=args.keep_failures,
        )
        runs += 1
        total += result.states
        generated.update(result.generated)
        distinct.update(result.distinct)
        violations += len(result.violations)
        print(
            f"seed {seed} sync={sync}: {result.states} states, {result.commits} commits, "
            f"{result.tails_cut} torn tails cut, {len(result.violations)} violations, "
            f"{result.duration_s:.1f} s   [total {total}]",
            flush=True,
        )
        for v in result.violations[:5]:
            print(f"  {v}", flush=True)
        seed += 1
    print(f"\n{runs} runs, {total} distinct crash states in {time.perf_counter() - t0:.0f} s")
    for m in models:
        print(f"  {m:14} {distinct[m]:6} distinct of {generated[m]:6} generated")
    print(f"{violations} violations")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
