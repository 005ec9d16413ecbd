"""Every ```python block in README.md and docs/*.md runs, and succeeds.

Each block runs on its own, in a fresh process (``sys.executable``) with a
fresh empty working directory, so that a block shows everything it needs.
A piece of code that is not meant to run stands in a block of another
language (```text, ```pycon) instead.

Exception: the documents in ``FRAGMENT_DOCS`` show fragments of programs
whose complete versions live in examples/ (run by tests/test_examples.py);
their blocks must compile, not run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)


def python_blocks() -> list[tuple[str, int, str]]:
    """(file, line number, code) of every python block."""
    out = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in _BLOCK.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            out.append((str(path.relative_to(ROOT)), line, m.group(1)))
    return out


FRAGMENT_DOCS = {"docs/ml.md"}
ALL_BLOCKS = python_blocks()
BLOCKS = [b for b in ALL_BLOCKS if b[0] not in FRAGMENT_DOCS]
FRAGMENTS = [b for b in ALL_BLOCKS if b[0] in FRAGMENT_DOCS]


@pytest.mark.parametrize(("doc", "line", "code"), BLOCKS, ids=[f"{d}:{n}" for d, n, _ in BLOCKS])
def test_python_block_runs(doc, line, code, tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, f"{doc}:{line} failed:\n{res.stderr}"


@pytest.mark.parametrize(
    ("doc", "line", "code"), FRAGMENTS, ids=[f"{d}:{n}" for d, n, _ in FRAGMENTS]
)
def test_python_fragment_compiles(doc, line, code):
    compile(code, f"{doc}:{line}", "exec")


def test_the_docs_hold_python_examples():
    docs = {doc for doc, _, _ in BLOCKS}
    assert {"README.md", "docs/index.md", "docs/durability.md"} <= docs


# Error paths


def test_a_failing_block_is_reported(tmp_path):
    res = subprocess.run(
        [sys.executable, "-c", "import safepoint; safepoint.open('x.sp')[b'missing']"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert res.returncode != 0 and "KeyError" in res.stderr
