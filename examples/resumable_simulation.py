"""A simulation that survives kill -9: run it, kill it, run it again.

    python examples/resumable_simulation.py run.sp                 # 200 steps
    python examples/resumable_simulation.py run.sp --kill-at 120   # SIGKILLs itself in step 120
    python examples/resumable_simulation.py run.sp                 # resumes at step 120

A rod of 32 cells diffuses heat; each step adds a random kick drawn from an
RNG seeded by the step number, so a resumed run computes exactly what an
uninterrupted one does.  ``db.steps()`` commits each step's grid together
with the step counter in one transaction: after the kill, the store holds
the grid of the last step that committed, and the loop starts after it.
Ctrl-C (or SIGTERM) lets the current step commit, then stops cleanly.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal

import safepoint

CELLS = 32
ALPHA = 0.25  # diffusion coefficient: stable for ALPHA <= 0.5


def advance(grid: list[float], step: int) -> list[float]:
    """One explicit diffusion step with fixed ends, plus this step's kick."""
    new = grid[:]
    for i in range(1, CELLS - 1):
        new[i] = grid[i] + ALPHA * (grid[i - 1] - 2 * grid[i] + grid[i + 1])
    kick = random.Random(step)
    new[kick.randrange(1, CELLS - 1)] += kick.uniform(0.0, 10.0)
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", help="store directory (created if missing)")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--kill-at", type=int, default=None, help="SIGKILL this process in step N")
    args = parser.parse_args()

    with safepoint.open(args.store, codec="json", segment_bytes=1 << 20) as db:
        loop = db.steps(args.steps)
        if loop.start:
            print(f"resuming at step {loop.start} of {args.steps}")
        for step in loop:
            step.put("grid", advance(step.get("grid", [0.0] * CELLS), step.index))
            if step.index == args.kill_at:
                # Mid-step: this step's grid was never committed.
                os.kill(os.getpid(), signal.SIGKILL)
        if loop.interrupted:
            print(f"stopped by signal {loop.interrupted} after step {loop.next_step - 1}")
            return
        grid = db.get("grid", [0.0] * CELLS)
        digest = hashlib.sha256(repr(grid).encode()).hexdigest()[:16]
        print(f"done: {loop.next_step} steps, total heat {sum(grid):.6f}, digest {digest}")


if __name__ == "__main__":
    main()
