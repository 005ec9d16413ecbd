"""``safepoint demo``: a simulation killed with SIGKILL, recovered, resumed.

The main job in one command.  A child process runs the simulation of
``_demo_child`` with sync="always"; once it has acknowledged some steps the
parent kills it with SIGKILL, looks at what is on disk, reopens the store
(recovery), checks that every acknowledged step survived, resumes the
simulation in a new child to the end, and compares the final state with an
uninterrupted run computed in memory.

Exit code 0 when the state matches, 1 if anything acknowledged was lost or
the final state differs, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from . import _demo_child as sim
from .cli.common import EXIT_DAMAGE, EXIT_OK, UsageError, human_bytes

_INDENT = " " * 12
_PIPE_BYTES = 4096  # the smallest pipe Linux allows: ~64 lines of slack
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _child(path: Path, steps: int, seed: int) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "safepoint._demo_child", str(path), "--steps", str(steps)]
    cmd += ["--seed", str(seed), "--checkpoint-every", str(sim.CHECKPOINT_EVERY)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None
    try:
        fcntl.fcntl(proc.stdout.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:
        pass  # not Linux: the kill may land later, never wrongly
    return proc


def _events(proc: subprocess.Popen[bytes]) -> Iterator[list[str]]:
    """The child's report lines, split into words, read without buffering ahead."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    while True:
        chunk = os.read(fd, sim.LINE_BYTES)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode().split()


def _check_args(args: argparse.Namespace) -> int:
    if not 2 <= args.steps <= 999_999:
        raise UsageError("--steps must be between 2 and 999999")
    kill_at = args.kill_at if args.kill_at is not None else max(1, args.steps * 43 // 100)
    if not 1 <= kill_at < args.steps:
        raise UsageError(f"--kill-at must be between 1 and {args.steps - 1}")
    if args.path is not None:
        p = Path(args.path)
        if p.exists() and (not p.is_dir() or any(p.iterdir())):
            raise UsageError(f"--path {args.path} already exists; give a new directory")
    return kill_at


def run_demo(args: argparse.Namespace) -> int:
    """The ``demo`` command."""
    kill_at = _check_args(args)
    if args.path is not None:
        tmp = None
        store = Path(args.path)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="safepoint-demo-"))
        store = tmp / "run.sp"
    try:
        return _demo(store, args.steps, args.seed, kill_at)
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None:
            _say(f"The store is kept at {store}.")


def _demo(store: Path, steps: int, seed: int, kill_at: int) -> int:
    t_start = time.perf_counter()
    _say("safepoint demo: a simulation is killed with SIGKILL mid-run, recovered and resumed.")
    _say()
    _say(f"  {sim.PARTICLES} particles take a random walk for {steps} steps in a child process.")
    _say("  Each step is one transaction (step number, positions, a trajectory entry)")
    _say('  committed with sync="always": when the commit returns, the step is on disk.')
    _say(f"  The child checkpoints the log into the base image every {sim.CHECKPOINT_EVERY} steps.")
    _say(f"  store: {store}")
    _say()

    proc = _child(store, steps, seed)
    acked = acked_lsn = 0
    checkpoints: list[str] = []
    killed = False
    for words in _events(proc):
        if words[0] == "start":
            _say(f"1. run      child pid {words[1]} started at step {words[2]}")
        elif words[0] == "checkpoint":
            checkpoints.append(f"step {words[1]} (lsn {words[2]})")
        elif words[0] == "ack":
            acked, acked_lsn = int(words[1]), int(words[2])
            if acked >= kill_at and not killed:
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    if not killed:
        _say(f"{_INDENT}the child exited (code {proc.returncode}) before it reached step {kill_at}")
        return EXIT_DAMAGE
    if checkpoints:
        _say(f"{_INDENT}checkpoints at {', '.join(checkpoints)}")
    _say(f"{_INDENT}the child acknowledged step {acked} (lsn {acked_lsn}): kill -9 now")
    _say(f"{_INDENT}the child died by signal {-proc.returncode}; it never closed the store")
    _say()
    _on_disk(store)
    _say()

    recovered = _recover(store, acked)
    if recovered is None:
        return EXIT_DAMAGE
    _say()

    proc = _child(store, steps, seed)
    first = None
    for words in _events(proc):
        if words[0] == "start":
            first = words[2]
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    if proc.returncode != 0:
        _say(f"4. resume   the resumed child failed (exit code {proc.returncode})")
        return EXIT_DAMAGE
    _say(f"4. resume   a new child (pid {proc.pid}) resumed at step {first}, ran to step {steps}")
    _say()
    return _compare(store, steps, seed, time.perf_counter() - t_start)


def _on_disk(store: Path) -> None:
    """What the killed child left: the base image's LSN and the log's end."""
    from .cli.baseread import open_base, read_facts
    from .cli.logscan import Record, scan_log

    with open_base(store) as (env, data_db, meta_db):
        facts = read_facts(env, data_db, meta_db)
    assert facts.store_id is not None
    last = records = 0
    tail = "the log ends cleanly after its last whole record"
    for item in scan_log(store, facts.store_id, checkpoint_lsn=facts.checkpoint_lsn):
        if isinstance(item, Record):
            last, records = item.lsn, records + 1
        else:
            tail = f"after the last whole record: {item.message}"
    segments = sorted((store / "wal").glob("*.wal"))
    log_bytes = sum(p.stat().st_size for p in segments)
    where = f"{len(segments)} preallocated segment{'s' if len(segments) != 1 else ''}"
    _say(f"2. on disk  base image at lsn {facts.checkpoint_lsn} (the last checkpoint)")
    _say(f"{_INDENT}log: {records} records up to lsn {last} ({where}, {human_bytes(log_bytes)})")
    _say(f"{_INDENT}{tail}")
    pid = (store / "LOCK").read_text().strip()
    _say(f"{_INDENT}LOCK still names pid {pid}, but its flock died with the process")


def _recover(store: Path, acked: int) -> int | None:
    """Reopen the store, report what recovery did; the recovered step or None."""
    import safepoint

    t0 = time.perf_counter()
    with safepoint.open(store) as db:
        open_s = time.perf_counter() - t0
        rec = db.recovery
        step = int(db[sim.STEP_KEY])
    _say(f"3. recover  safepoint.open() took {open_s * 1000:.1f} ms; recovery did:")
    rows = [
        ("base image (last checkpoint)", f"lsn {rec.base_lsn}"),
        (
            "log records replayed",
            f"{rec.records_replayed}"
            + (f" (lsn {rec.base_lsn + 1}..{rec.last_lsn})" if rec.records_replayed else ""),
        ),
    ]
    if rec.clean:
        rows.append(("torn tail dropped", "none: the log ended on a whole record"))
    else:
        kept = f"; kept in {', '.join(rec.set_aside)}" if rec.set_aside else ""
        rows.append(("torn tail dropped", f"{rec.bytes_dropped} bytes ({rec.stop_reason}){kept}"))
    rows.append(("recovery time", f"{rec.duration_s * 1000:.1f} ms"))
    for name, value in rows:
        _say(f"{_INDENT}  {name:<30} {value}")
    if step < acked:
        _say(f"{_INDENT}LOST: the store is at step {step}, but step {acked} was acknowledged")
        return None
    _say(f"{_INDENT}the store is at step {step}: every acknowledged step (1..{acked}) survived")
    extra = step - acked
    if extra:
        more = f"{extra} more step{'s' if extra != 1 else ''}"
        _say(f"{_INDENT}(and {more} that committed before the kill landed)")
    return step


def _compare(store: Path, steps: int, seed: int, elapsed_s: float) -> int:
    import safepoint

    with safepoint.open(store, readonly=True) as db:
        got, n = sim.digest(db.items())
    want, m = sim.digest(sorted(sim.reference_state(steps, seed).items()))
    _say("5. compare  the final store with an uninterrupted run computed in memory:")
    _say(f"{_INDENT}  store        {n} keys, sha256 {got[:32]}…")
    _say(f"{_INDENT}  reference    {m} keys, sha256 {want[:32]}…")
    if got != want:
        _say(f"{_INDENT}DIFFERENT: the resumed run does not match")
        return EXIT_DAMAGE
    _say(f"{_INDENT}identical: the crash lost nothing that was acknowledged, and the")
    _say(f"{_INDENT}resumed run ended exactly where an uninterrupted one does.")
    _say()
    _say(f"Done in {elapsed_s:.1f} s.  Next: `safepoint info PATH`, `safepoint verify PATH`,")
    _say("`safepoint wal PATH --limit 5` on a store of your own (demo --keep keeps this one).")
    return EXIT_OK
