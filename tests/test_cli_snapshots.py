"""The snapshot commands: ``save``, ``snapshots``, ``restore``,
``delete-snapshot``, and ``verify``/``info`` on snapshots.  Each runs the
installed script in a subprocess against a real store."""

from __future__ import annotations

import json

import pytest

import safepoint
from clitools import make_store, run_cli
from helpers import flip_bit, read_state


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "s.sp", {b"a": b"1", b"b": b"2"})


def test_save_creates_a_snapshot_that_snapshots_lists(store):
    res = run_cli("save", store, "epoch-1", "--step", "1", "--metric", "val_loss=0.31")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("saved snapshot epoch-1 at lsn 2")
    listing = run_cli("snapshots", store).stdout.splitlines()
    assert listing[1].split()[:3] == ["epoch-1", "2", "1"]
    assert listing[1].endswith("val_loss=0.31")


def test_snapshots_json_carries_metrics_and_metadata(store):
    run_cli("save", store, "s1", "--metric", "acc=0.9", "--meta", "note=first try")
    [snap] = json.loads(run_cli("snapshots", store, "--json").stdout)
    assert snap["name"] == "s1" and snap["lsn"] == 2 and snap["step"] is None
    assert snap["metrics"] == {"acc": 0.9}
    assert snap["metadata"] == {"note": "first try"}
    assert snap["size_bytes"] > 0


def test_restore_rolls_the_whole_store_back(store):
    run_cli("save", store, "before")
    with safepoint.open(store) as db:
        db[b"a"] = b"changed"
        db[b"c"] = b"new"
    res = run_cli("restore", store, "before")
    assert res.returncode == 0, res.stderr
    assert "kept in lost/restore-" in res.stdout
    assert read_state(store) == {b"a": b"1", b"b": b"2"}


def test_delete_snapshot_removes_it(store):
    run_cli("save", store, "gone")
    assert run_cli("delete-snapshot", store, "gone").returncode == 0
    assert run_cli("snapshots", store).stdout.strip() == "no snapshots"


def test_info_lists_each_snapshot(store):
    run_cli("save", store, "s1", "--step", "4")
    snaps = json.loads(run_cli("info", store, "--json").stdout)["snapshots"]
    assert [(s["name"], s["lsn"], s["step"]) for s in snaps] == [("s1", 2, 4)]


def test_verify_checks_every_snapshot_file(store):
    run_cli("save", store, "s1")
    data = store / "snapshots" / "s1" / "data.mdb"
    flip_bit(data, data.stat().st_size // 2)
    res = run_cli("verify", store)
    assert res.returncode == 1
    assert "DAMAGE: snapshots/s1/data.mdb (offset unknown): snapshot: checksum mismatch" in (
        res.stdout
    )


# Error paths


def test_restoring_an_unknown_snapshot_is_a_usage_error(store):
    res = run_cli("restore", store, "nope")
    assert res.returncode == 2
    assert res.stderr == "safepoint restore: error: no snapshot named 'nope'\n"


def test_deleting_an_unknown_snapshot_is_a_usage_error(store):
    assert run_cli("delete-snapshot", store, "nope").returncode == 2


def test_a_metric_that_is_not_a_number_is_a_usage_error(store):
    res = run_cli("save", store, "s1", "--metric", "loss=low")
    assert res.returncode == 2
    assert "--metric loss: 'low' is not a number" in res.stderr


def test_saving_over_an_existing_name_needs_overwrite(store):
    run_cli("save", store, "s1")
    assert run_cli("save", store, "s1").returncode == 2
    assert run_cli("save", store, "s1", "--overwrite").returncode == 0


def test_a_bad_snapshot_name_is_a_usage_error(store):
    res = run_cli("save", store, "../escape")
    assert res.returncode == 2
    assert "path separator" in res.stderr
