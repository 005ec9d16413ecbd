"""``safepoint demo``, the main job, and the simulation it kills and resumes.

The full demo runs as the installed script (a child killed with a real
SIGKILL); the simulation's determinism and resumption are tested in-process.
"""

from __future__ import annotations

import os

import pytest

from clitools import run_cli
from helpers import read_state
from safepoint import _demo_child as sim


def test_demo_kills_recovers_resumes_and_proves_the_state_matches(tmp_path):
    res = run_cli("demo", env={**os.environ, "TMPDIR": str(tmp_path)})
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "kill -9 now" in out
    assert "died by signal 9" in out
    assert "every acknowledged step (1..430) survived" in out
    assert "log records replayed" in out and "torn tail dropped" in out
    assert "identical" in out


def test_demo_removes_its_temporary_store(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    assert run_cli("demo", "--steps", "60", "--kill-at", "20", env=env).returncode == 0
    assert list(tmp_path.iterdir()) == []


def test_demo_with_path_keeps_the_store_holding_the_finished_run(tmp_path):
    store = tmp_path / "demo.sp"
    res = run_cli("demo", "--path", store, "--steps", "250", "--kill-at", "210")
    assert res.returncode == 0, res.stdout + res.stderr
    assert read_state(store) == sim.reference_state(250, 7)


def test_demo_runs_in_any_working_directory(tmp_path):
    res = run_cli("demo", "--path", "here.sp", "--steps", "40", "--kill-at", "10", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "here.sp" / "wal").is_dir()


# --- the simulation -------------------------------------------------------------------------


def test_a_step_depends_only_on_the_seed_and_the_step_number():
    start = sim.initial_positions(3)
    assert sim.advance(start, 3, 17) == sim.advance(list(start), 3, 17)
    assert sim.advance(start, 3, 17) != sim.advance(start, 3, 18)


def test_particles_stay_inside_the_box():
    positions = sim.initial_positions(1)
    for step in range(1, 300):
        positions = sim.advance(positions, 1, step)
    assert all(0 <= c < sim.BOX for p in positions for c in p)


def test_positions_round_trip_through_pack():
    positions = sim.initial_positions(5)
    assert sim.unpack(sim.pack(positions)) == positions


def test_a_run_resumed_part_way_ends_in_the_reference_state(tmp_path, capsys):
    path = str(tmp_path / "s.sp")
    assert sim.run(path, 30, 11, checkpoint_every=8) == 0
    assert sim.run(path, 70, 11, checkpoint_every=8) == 0
    assert read_state(path) == sim.reference_state(70, 11)
    starts = [ln.split() for ln in capsys.readouterr().out.splitlines() if ln.startswith("start")]
    assert [words[2] for words in starts] == ["1", "31"]


def test_every_report_line_has_the_fixed_length(tmp_path, capsys):
    sim.run(str(tmp_path / "s.sp"), 3, 1, checkpoint_every=2)
    lines = capsys.readouterr().out.splitlines(keepends=True)
    assert {len(line) for line in lines} == {sim.LINE_BYTES}


def test_digest_differs_when_one_value_differs():
    state = sim.reference_state(5, 2)
    changed = {**state, sim.STEP_KEY: b"4"}
    assert sim.digest(sorted(state.items())) != sim.digest(sorted(changed.items()))


# Error paths


def test_demo_refuses_a_path_that_already_exists(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    res = run_cli("demo", "--path", tmp_path / "taken")
    assert res.returncode == 2
    assert "already exists" in res.stderr


@pytest.mark.parametrize("kill_at", ["0", "100"])
def test_demo_refuses_a_kill_point_outside_the_run(kill_at):
    res = run_cli("demo", "--steps", "100", "--kill-at", kill_at)
    assert res.returncode == 2
    assert "--kill-at must be between 1 and 99" in res.stderr


def test_the_child_refuses_a_store_whose_last_step_has_no_trajectory(tmp_path, capsys):
    path = str(tmp_path / "s.sp")
    sim.run(path, 5, 1, checkpoint_every=100)
    import safepoint

    with safepoint.open(path) as db:
        del db[sim.TRAJECTORY_PREFIX + b"000005"]
    assert sim.run(path, 10, 1, checkpoint_every=100) == 3
    assert "step 5 has no trajectory entry" in capsys.readouterr().err
