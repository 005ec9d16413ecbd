"""Helpers for the command-line tests: run the installed script, build stores.

``run_cli`` runs the ``safepoint`` console script that sits next to the test
interpreter (the one ``pip install`` made), in a subprocess, as a user would;
``python -m safepoint`` only where no script was installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import safepoint

_SCRIPT = Path(sys.executable).with_name("safepoint")
SAFEPOINT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "safepoint"]


def run_cli(
    *args: object,
    input: bytes | str | None = None,
    cwd: os.PathLike[str] | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run ``safepoint ARGS...``; stdout and stderr captured as text."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [*SAFEPOINT, *map(str, args)],
        input=data,
        capture_output=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def make_store(
    path: Path, entries: dict[bytes, bytes] | None = None, *, checkpoint: bool = False
) -> Path:
    """A closed store holding ``entries``, one record per entry, in order.

    Default entries: key-00 .. key-09 with short text values.
    """
    if entries is None:
        entries = {b"key-%02d" % i: b"value %d" % i for i in range(10)}
    with safepoint.open(path) as db:
        for k, v in entries.items():
            db.put(k, v)
        if checkpoint:
            db.checkpoint()
    return path


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every file of a store by relative path, except LMDB's lock file (a
    read-only LMDB reader registers itself there: that is not the store)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "lock.mdb":
            out[str(p.relative_to(root))] = p.read_bytes()
    return out
