"""The ``safepoint`` command line: info, wal, checkpoint, recover, progress
bars, exit codes and error lines.

verify is in test_cli_verify.py, dump and load in test_cli_dump.py, the
snapshot commands in test_cli_snapshots.py, demo in test_demo.py.  Every
test runs the installed script in a subprocess.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import subprocess
import sys
import termios

import pytest

import safepoint
from clitools import SAFEPOINT, file_bytes, make_store, run_cli
from helpers import flip_bit, last_segment, log_end, lost_files, read_state, record_at_lsn

SEGMENT = "wal/00000000000000000001.wal"


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "s.sp")


# --- info ------------------------------------------------------------------------------------


def test_info_shows_lsn_checkpoint_and_segments(store):
    res = run_cli("info", store)
    assert res.returncode == 0, res.stderr
    assert "lsn         10 (the last committed record)" in res.stdout
    assert "checkpoint  lsn 0" in res.stdout
    assert SEGMENT in res.stdout


def test_info_json_reports_the_log_after_the_checkpoint(tmp_path):
    store = make_store(tmp_path / "s.sp", checkpoint=True)
    with safepoint.open(store) as db:
        db.put(b"more", b"1")
    out = json.loads(run_cli("info", store, "--json").stdout)
    assert out["lsn"] == 11
    assert out["base"]["checkpoint_lsn"] == 10
    assert out["base"]["entries"] == 10
    assert out["log"]["records_after_checkpoint"] == 1
    assert out["store_id"] == safepoint.open(store, readonly=True).store_id.hex()


def test_info_names_the_last_writer_and_whether_it_runs(store):
    out = json.loads(run_cli("info", store, "--json").stdout)
    assert out["lock"] == {"pid": os.getpid(), "running": True}


def test_info_changes_no_file(store):
    before = file_bytes(store)
    run_cli("info", store)
    assert file_bytes(store) == before


# --- wal ---------------------------------------------------------------------------------------


def test_wal_lists_every_record_with_segment_offset_and_ops(store):
    res = run_cli("wal", store)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 11  # a heading and ten records
    _, rec = record_at_lsn(store, 3)
    fields = lines[3].split()
    assert fields[:4] == ["3", SEGMENT, str(rec.offset), str(rec.length)]
    assert lines[3].endswith("1 op: put key-02 (7 B)")


def test_wal_from_lsn_and_limit_select_records(store):
    res = run_cli("wal", store, "--from-lsn", "4", "--limit", "2")
    assert [line.split()[0] for line in res.stdout.splitlines()[1:]] == ["4", "5"]


def test_wal_json_prints_one_object_per_record(store):
    res = run_cli("wal", store, "--json", "--limit", "1")
    [rec] = [json.loads(line) for line in res.stdout.splitlines()]
    assert rec["lsn"] == 1 and rec["segment"] == SEGMENT and rec["durable_lsn"] == 0
    assert rec["ops"] == [{"op": "put", "key": "key-00", "value_bytes": 7}]


def test_wal_shows_deletes(tmp_path):
    store = make_store(tmp_path / "s.sp", {b"a": b"1"})
    with safepoint.open(store) as db:
        db.delete(b"a")
    assert run_cli("wal", store).stdout.splitlines()[-1].endswith("1 op: del a")


def test_wal_reports_damage_on_stderr_and_exits_1(store):
    seg, rec = record_at_lsn(store, 4)
    flip_bit(seg, rec.offset + 40)
    res = run_cli("wal", store)
    assert res.returncode == 1
    assert f"DAMAGE: {SEGMENT} at offset {rec.offset} (lsn 4)" in res.stderr
    assert len(res.stdout.splitlines()) == 10  # all but the damaged record


# --- checkpoint and recover ------------------------------------------------------------------


def test_checkpoint_folds_the_log_into_the_base_image(store):
    res = run_cli("checkpoint", store)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("checkpoint at lsn 10: 10 entries folded")
    with safepoint.open(store, readonly=True) as db:
        assert db.stats()["checkpoint_lsn"] == 10


def test_recover_reports_a_clean_log(store):
    res = run_cli("recover", store)
    assert res.returncode == 0, res.stderr
    assert "replayed    10 records, up to lsn 10" in res.stdout
    assert "nothing: the log ended cleanly" in res.stdout


def test_recover_point_in_time_keeps_the_valid_prefix_and_sets_the_rest_aside(store):
    seg, rec = record_at_lsn(store, 6)
    flip_bit(seg, rec.offset + 40)
    res = run_cli("recover", store, "--mode", "point_in_time")
    assert res.returncode == 0, res.stderr
    assert "replayed    5 records, up to lsn 5" in res.stdout
    assert "4 valid records after the damage" in res.stdout
    assert lost_files(store)
    assert read_state(store) == {b"key-%02d" % i: b"value %d" % i for i in range(5)}


def test_recover_cuts_a_torn_tail(store):
    seg = last_segment(store)
    with open(seg, "r+b") as f:
        f.seek(log_end(seg))
        f.write(b"\x55" * 64)
    res = run_cli("recover", store)
    assert res.returncode == 0, res.stderr
    assert "torn tail   yes" in res.stdout


# --- the script itself --------------------------------------------------------------------


def test_python_dash_m_safepoint_runs_the_same_commands(store):
    res = subprocess.run(
        [sys.executable, "-m", "safepoint", "info", str(store), "--json"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["lsn"] == 10


def test_version_prints_the_package_version():
    assert run_cli("--version").stdout.strip() == f"safepoint {safepoint.__version__}"


def test_a_progress_bar_is_drawn_when_stderr_is_a_terminal(store):
    master, slave = os.openpty()
    # A new pty is 0 columns wide, and tqdm draws nothing in 0 columns.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [*SAFEPOINT, "verify", str(store)], stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    drawn = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        drawn += chunk
    os.close(master)
    assert proc.wait(timeout=60) == 0
    assert b"log:" in drawn and b"\r" in drawn


def test_nothing_is_written_to_stderr_when_it_is_not_a_terminal(store):
    res = run_cli("verify", store)
    assert res.returncode == 0
    assert res.stderr == ""


# Error paths


def test_a_missing_store_is_one_line_on_stderr_and_exit_code_2(tmp_path):
    res = run_cli("info", tmp_path / "nowhere")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1
    assert res.stderr.startswith("safepoint info: error: no safepoint store at")


def test_commands_that_open_a_store_never_create_one(tmp_path):
    res = run_cli("checkpoint", tmp_path / "nowhere")
    assert res.returncode == 2
    assert not (tmp_path / "nowhere").exists()


def test_an_unknown_command_is_a_usage_error():
    res = run_cli("frobnicate")
    assert res.returncode == 2
    assert "invalid choice" in res.stderr


def test_an_unknown_recovery_mode_is_a_usage_error(store):
    assert run_cli("recover", store, "--mode", "lenient").returncode == 2


def test_a_store_open_in_another_process_cannot_be_checkpointed(store):
    with safepoint.open(store):
        res = run_cli("checkpoint", store)
    assert res.returncode == 2
    assert "is open for writing in another process" in res.stderr
    assert "Traceback" not in res.stderr


def test_debug_shows_the_traceback(store):
    with safepoint.open(store):
        res = run_cli("checkpoint", store, "--debug")
    assert res.returncode == 2
    assert "Traceback" in res.stderr and "LockedError" in res.stderr


def test_recover_strict_on_a_torn_tail_exits_1(store):
    seg = last_segment(store)
    with open(seg, "r+b") as f:
        f.seek(log_end(seg))
        f.write(b"\x55" * 64)
    res = run_cli("recover", store, "--mode", "strict")
    assert res.returncode == 1
    assert f"in {SEGMENT} at offset" in res.stderr


def test_info_on_a_damaged_log_exits_1(store):
    seg, rec = record_at_lsn(store, 4)
    flip_bit(seg, rec.offset + 40)
    res = run_cli("info", store)
    assert res.returncode == 1
    assert f"DAMAGE: {SEGMENT} at offset {rec.offset} (lsn 4)" in res.stdout
