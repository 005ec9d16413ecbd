"""The examples in examples/ run, and do what their docstrings say."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import safepoint

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_resumable_simulation_killed_and_resumed_matches_an_uninterrupted_run(tmp_path):
    straight = last_line(run("resumable_simulation.py", "a.sp", cwd=tmp_path))
    killed = run("resumable_simulation.py", "b.sp", "--kill-at", "120", cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL
    resumed = run("resumable_simulation.py", "b.sp", cwd=tmp_path)
    assert resumed.stdout.startswith("resuming at step 120 of 200")
    assert last_line(resumed) == straight
    assert straight.startswith("done: 200 steps")


def test_train_best2_keeps_the_two_best_epochs_and_the_newest(tmp_path):
    out = run("train_best2.py", "t.sp", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    losses = {
        int(m[1]): float(m[2])
        for m in re.finditer(r"^epoch (\d+) val_loss (\S+)$", out.stdout, re.M)
    }
    assert sorted(losses) == list(range(12))
    best2 = sorted(losses, key=losses.get)[:2]
    with safepoint.open(tmp_path / "t.sp", readonly=True) as db:
        kept = [s.step for s in db.snapshots()]
    assert kept == sorted({*best2, 11})


def epoch_lines(stdout: str) -> list[str]:
    return re.findall(r"^epoch \d+ val_loss \S+$", stdout, re.M)


def test_train_best2_resumed_run_matches_an_uninterrupted_one(tmp_path):
    straight = run("train_best2.py", "a.sp", "--epochs", "7", cwd=tmp_path).stdout
    run("train_best2.py", "b.sp", "--epochs", "4", cwd=tmp_path)
    resumed = run("train_best2.py", "b.sp", "--epochs", "7", cwd=tmp_path).stdout
    assert resumed.startswith("resuming after epoch 3")
    assert epoch_lines(resumed) == epoch_lines(straight)[4:]


def test_train_best2_restores_the_best_snapshot(tmp_path):
    run("train_best2.py", "t.sp", "--epochs", "6", cwd=tmp_path)
    with safepoint.open(tmp_path / "t.sp", readonly=True) as db:
        best = min(db.snapshots(), key=lambda s: s.metrics["val_loss"])
    restored = last_line(run("train_best2.py", "t.sp", "--restore-best", cwd=tmp_path))
    assert restored.startswith(f"restored {best.name}: epoch {best.step},")
