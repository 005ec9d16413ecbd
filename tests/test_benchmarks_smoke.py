"""The benchmark runner and wal_append.py still run, at a tiny size.

They run as the user runs them (``python -m benchmarks``, ``python
benchmarks/wal_append.py``) in a subprocess from the repository root.  Only
that they work and what they produce is checked: speed is never asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = ["--scale", "0.0005", "--rounds", "1", "--seconds", "0.05", "--threads", "2"]
# The no-replay open's store at this scale: 50 MB, more than the ~20 MB the
# large-value reopen leaves, so it must be grown.
OPEN_STORE = ["--open-store-gb", "100"]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    out = tmp_path_factory.mktemp("bench-out")
    scratch = tmp_path_factory.mktemp("bench-scratch")
    proc = run_module(
        *TINY, *OPEN_STORE, "--out", str(out), "--scratch", str(scratch), "--name", "smoke"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, scratch, (out / "smoke.md").read_text()


def test_a_tiny_run_writes_a_table_for_every_workload_family(tiny_run):
    _, _, md = tiny_run
    for heading in (
        "### durable commits x1",
        "### durable commits x2",
        "### bulk load",
        "### random gets",
        "### mixed x2",
        "### reopen after",
        "### checkpoint of",
        "### CRC32C bandwidth",
        "### sequential disk I/O",
    ):
        assert heading in md


def test_safepoint_and_the_raw_fsync_limit_have_rows_with_numbers(tiny_run):
    _, _, md = tiny_run
    commits = md.split("### durable commits x1", 1)[1].split("###", 1)[0]
    assert re.search(r"^\| safepoint \| [0-9.]+[kM]? \| commits/s \|", commits, re.M)
    assert re.search(r"^\| raw fdatasync \| [0-9.]+[kM]? \| records/s \|", commits, re.M)


def test_every_issue_target_gets_a_verdict(tiny_run):
    _, _, md = tiny_run
    targets = md.split("## Targets (issue 7)", 1)[1].split("##", 1)[0]
    rows = [line for line in targets.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 14  # header + 13 targets
    assert all(line.rstrip(" |").endswith(("met", "MISSED", "not measured")) for line in rows[1:])


def test_the_no_replay_open_is_of_a_store_grown_to_the_asked_size(tiny_run):
    _, _, md = tiny_run
    m = re.search(r"### open with nothing to replay \(([0-9.]+) GB store\)", md)
    assert m is not None
    assert float(m.group(1)) >= 0.05


def test_the_machine_and_the_load_are_described(tiny_run):
    _, _, md = tiny_run
    for fact in ("**CPU**", "**filesystem**", "**kernel**", "**Python**", "**load average"):
        assert fact in md


def test_the_chart_is_written_or_its_absence_explained(tiny_run):
    out, _, md = tiny_run
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "no chart: matplotlib is not installed" in md
    else:
        assert (out / "smoke.png").stat().st_size > 0
        assert "![chart](smoke.png)" in md


def test_the_scratch_directory_is_left_empty(tiny_run):
    _, scratch, _ = tiny_run
    assert os.listdir(scratch) == []


def test_wal_append_prints_both_ratios(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/wal_append.py", "--seconds", "0.05", "--rounds", "1"]
        + ["--dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^1 thread / raw +=\s+[0-9.]+x", proc.stdout, re.M)
    assert re.search(r"^8 threads / 1 thread =\s+[0-9.]+x", proc.stdout, re.M)
    assert os.listdir(tmp_path) == []


# Error paths


def test_an_unknown_workload_is_refused_by_name():
    proc = run_module("--only", "commits,warp-drive")
    assert proc.returncode == 2
    assert "unknown workload(s) warp-drive" in proc.stderr


def test_a_zero_round_count_is_refused():
    proc = run_module("--rounds", "0")
    assert proc.returncode == 2
    assert "--rounds >= 1" in proc.stderr


def test_wal_append_refuses_a_single_thread_group_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/wal_append.py", "--threads", "1", "--dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--threads >= 2" in proc.stderr
