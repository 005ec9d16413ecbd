"""The simulation that ``safepoint demo`` runs, kills and resumes.

Particles take a random walk in a box with reflecting walls.  Each step is
one transaction holding everything needed to resume: the step number, every
particle's position and one trajectory entry (the centre of mass), so a
crash can never leave a step half-saved.  The random numbers of a step
depend only on the seed and the step number, so a run that resumes after a
crash continues exactly as an uninterrupted one would.

Run as ``python -m safepoint._demo_child PATH --steps N --seed S``; it
resumes from whatever PATH holds.  It reports on stdout, one line per
event, each padded to ``LINE_BYTES`` so that the parent's pipe holds a
known number of them (the parent shrinks the pipe, and a child that runs
ahead of its reader blocks instead of finishing before the kill lands)::

    start <pid> <first step>
    ack <step> <lsn>            the step's commit returned: it is durable
    checkpoint <step> <lsn>
    done <step>
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import struct
import sys
from collections.abc import Iterable

PARTICLES = 200
BOX = 64  # positions are 0..BOX-1 in x and y
CHECKPOINT_EVERY = 200
LINE_BYTES = 64

STEP_KEY = b"sim/step"
PARTICLES_KEY = b"sim/particles"
TRAJECTORY_PREFIX = b"sim/trajectory/"

Positions = list[tuple[int, int]]


def initial_positions(seed: int) -> Positions:
    """Where the particles start: all bunched in the middle of the box."""
    rng = random.Random(f"{seed}:init")
    mid = BOX // 2
    return [(mid + rng.randint(-2, 2), mid + rng.randint(-2, 2)) for _ in range(PARTICLES)]


def advance(positions: Positions, seed: int, step: int) -> Positions:
    """The positions after ``step``: each particle moves one cell or stays.

    The random numbers depend only on (seed, step), never on how the run
    got here: that is what makes resuming exact.
    """
    rng = random.Random(f"{seed}:{step}")
    out = []
    for x, y in positions:
        x += rng.choice((-1, 0, 1))
        y += rng.choice((-1, 0, 1))
        out.append((_reflect(x), _reflect(y)))
    return out


def _reflect(v: int) -> int:
    if v < 0:
        return 1
    if v >= BOX:
        return BOX - 2
    return v


def step_entries(step: int, positions: Positions) -> dict[bytes, bytes]:
    """Everything one step commits, as one transaction."""
    n = len(positions)
    cx = sum(x for x, _ in positions) / n
    cy = sum(y for _, y in positions) / n
    return {
        STEP_KEY: str(step).encode(),
        PARTICLES_KEY: pack(positions),
        TRAJECTORY_PREFIX + b"%06d" % step: f"{cx:.4f},{cy:.4f}".encode(),
    }


def pack(positions: Positions) -> bytes:
    """Positions as little-endian int32 pairs."""
    return struct.pack(f"<{2 * len(positions)}i", *(c for p in positions for c in p))


def unpack(blob: bytes) -> Positions:
    """The inverse of ``pack``."""
    flat = struct.unpack(f"<{len(blob) // 4}i", blob)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def reference_state(steps: int, seed: int) -> dict[bytes, bytes]:
    """The store's contents after an uninterrupted run, computed in memory."""
    state: dict[bytes, bytes] = {}
    positions = initial_positions(seed)
    state.update(step_entries(0, positions))
    for step in range(1, steps + 1):
        positions = advance(positions, seed, step)
        state.update(step_entries(step, positions))
    return state


def digest(items: Iterable[tuple[bytes, bytes]]) -> tuple[str, int]:
    """(sha256 hex, number of entries) over (key, value) pairs in key order."""
    h = hashlib.sha256()
    n = 0
    for key, value in items:
        h.update(struct.pack("<I", len(key)) + key + struct.pack("<Q", len(value)) + value)
        n += 1
    return h.hexdigest(), n


def _say(*words: object) -> None:
    line = " ".join(map(str, words))
    sys.stdout.write(line.ljust(LINE_BYTES - 1) + "\n")
    sys.stdout.flush()


def run(path: str, steps: int, seed: int, checkpoint_every: int) -> int:
    """Run (or resume) the simulation in the store at ``path`` up to ``steps``."""
    import safepoint

    with safepoint.open(path, sync="always", checkpoint_bytes=None) as db:
        raw_step = db.get(STEP_KEY)
        if raw_step is None:
            step = 0
            positions = initial_positions(seed)
            db.update(step_entries(0, positions))
        else:
            step = int(raw_step)
            positions = unpack(db[PARTICLES_KEY])
            if TRAJECTORY_PREFIX + b"%06d" % step not in db:
                print(f"step {step} has no trajectory entry: a torn step", file=sys.stderr)
                return 3
        _say("start", os.getpid(), step + 1)
        while step < steps:
            step += 1
            positions = advance(positions, seed, step)
            with db.transaction() as txn:
                for key, value in step_entries(step, positions).items():
                    txn.put(key, value)
            _say("ack", step, txn.lsn)
            if step % checkpoint_every == 0:
                info = db.checkpoint()
                _say("checkpoint", step, info.lsn)
    _say("done", step)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line of the child process."""
    parser = argparse.ArgumentParser(prog="python -m safepoint._demo_child")
    parser.add_argument("path")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--checkpoint-every", type=int, default=CHECKPOINT_EVERY)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.checkpoint_every < 1:
        parser.error("--steps and --checkpoint-every must be at least 1")
    return run(args.path, args.steps, args.seed, args.checkpoint_every)


if __name__ == "__main__":
    raise SystemExit(main())
