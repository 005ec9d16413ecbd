"""README.md's set-up commands: CI runs exactly the README's test command,
and the README starts with the two commands a new user types."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALL_AND_DEMO = "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/safepoint demo"
TEST_COMMAND = '.venv/bin/pip install ".[test]" && .venv/bin/python -m pytest -q'


def readme_lines() -> list[str]:
    return README.splitlines()


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert TEST_COMMAND in readme_lines()
    assert TEST_COMMAND in ci_lines


def test_the_first_command_installs_and_runs_the_demo():
    assert INSTALL_AND_DEMO in readme_lines()


def test_the_two_commands_come_first_and_in_order():
    lines = readme_lines()
    first = lines.index(INSTALL_AND_DEMO)
    assert lines[first + 1] == TEST_COMMAND
    assert first < 12  # on the first screen


def test_every_doc_the_readme_links_to_exists():
    for part in README.split("](")[1:]:
        target = part.split(")", 1)[0]
        if not target.startswith("http"):
            assert (ROOT / target.split("#")[0]).exists(), target
