"""The store on the pure-Python backend (SAFEPOINT_BACKEND=python).

That backend runs every native module's oracle: the reference record codec,
the Python group-commit loop, the dict memtable, the Python read path.  The
rest of the suite runs on the native backend, so this runs the store's
model-based tests and the replay, checkpoint, transaction and concurrency
tests once more in a subprocess on the Python one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SUITES = [
    "stateful",
    "test_checkpoint_fold.py",
    "test_recovery_replay.py",
    "test_transaction_update.py",
    "test_concurrency.py",
    "test_failures.py",
]


def test_the_store_passes_its_model_and_replay_tests_on_the_python_backend(tmp_path):
    env = dict(os.environ, SAFEPOINT_BACKEND="python")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            *(str(TESTS / s) for s in SUITES),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "from safepoint.memtable import new_memtable as m; print(type(m()).__name__)",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.stdout.strip() == "Memtable", probe.stderr
