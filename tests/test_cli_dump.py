"""``safepoint dump`` and ``safepoint load``: JSON lines, binary-safe.

The encoding is tested in-process (every byte string round-trips); the
commands run as the installed script in subprocesses.
"""

from __future__ import annotations

import json
import subprocess

from hypothesis import given
from hypothesis import strategies as st

from clitools import SAFEPOINT, file_bytes, make_store, run_cli
from helpers import flip_bit, read_state, record_at_lsn
from safepoint.cli.dumpformat import decode_bytes, encode_bytes

BINARY = {
    b"\x00\xff\x80binary-key": bytes(range(256)),
    "ключ/π".encode(): "значение ✓".encode(),
    b"text": b"line one\nline\ttwo",
    b"ctrl": b"bell\x07",
    b"empty": b"",
    b"latin1": b"caf\xe9",
}


def dump_lines(store, *args):
    res = run_cli("dump", store, *args)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


# --- the encoding ---------------------------------------------------------------------


@given(st.binary(max_size=64))
def test_any_bytes_round_trip_through_the_encoding(data):
    assert decode_bytes(json.loads(json.dumps(encode_bytes(data))), "key") == data


def test_utf8_text_is_written_as_a_string():
    assert encode_bytes("naïve/π\n".encode()) == "naïve/π\n"


def test_bytes_that_are_not_utf8_are_written_as_base64():
    assert encode_bytes(b"caf\xe9") == {"b64": "Y2Fm6Q=="}


def test_text_with_control_characters_is_written_as_base64():
    assert encode_bytes(b"bell\x07") == {"b64": "YmVsbAc="}


# --- dump ---------------------------------------------------------------------------------


def test_dump_writes_a_header_then_every_entry_in_key_order(tmp_path):
    store = make_store(tmp_path / "s.sp", {b"b": b"2", b"a": b"1", b"c": b"3"})
    lines = dump_lines(store)
    assert lines[0] == {"format": "safepoint-dump", "version": 1, "lsn": 3}
    assert lines[1:] == [
        {"key": "a", "value": "1"},
        {"key": "b", "value": "2"},
        {"key": "c", "value": "3"},
    ]


def test_dump_prefix_keeps_only_matching_keys(tmp_path):
    store = make_store(tmp_path / "s.sp", {b"sim/a": b"1", b"sim/b": b"2", b"other": b"3"})
    keys = [line["key"] for line in dump_lines(store, "--prefix", "sim/")[1:]]
    assert keys == ["sim/a", "sim/b"]


def test_dump_to_a_file_with_output(tmp_path):
    store = make_store(tmp_path / "s.sp")
    out = tmp_path / "dump.jsonl"
    assert run_cli("dump", store, "-o", out).returncode == 0
    assert len(out.read_text().splitlines()) == 11


def test_dump_piped_into_load_round_trips_binary_keys_and_values(tmp_path):
    src = make_store(tmp_path / "src.sp", BINARY)
    dst = tmp_path / "dst.sp"
    dump = subprocess.Popen([*SAFEPOINT, "dump", str(src)], stdout=subprocess.PIPE)
    load = subprocess.run(
        [*SAFEPOINT, "load", str(dst)], stdin=dump.stdout, capture_output=True, timeout=60
    )
    assert dump.stdout is not None
    dump.stdout.close()
    assert dump.wait(timeout=60) == 0
    assert load.returncode == 0, load.stderr
    assert read_state(dst) == BINARY


def test_dump_cut_short_by_its_reader_exits_quietly(tmp_path):
    store = make_store(tmp_path / "s.sp", {b"k%05d" % i: b"v" * 100 for i in range(3000)})
    res = subprocess.run(
        f"{' '.join(SAFEPOINT)} dump {store} | head -1", shell=True, capture_output=True, text=True
    )
    assert res.stdout.count("\n") == 1
    assert "Traceback" not in res.stderr and "error" not in res.stderr


# --- load ---------------------------------------------------------------------------------


def test_load_into_an_existing_store_keeps_its_other_keys(tmp_path):
    store = make_store(tmp_path / "s.sp", {b"old": b"kept"})
    res = run_cli("load", store, input='{"key": "new", "value": {"b64": "AAE="}}\n')
    assert res.returncode == 0, res.stderr
    assert read_state(store) == {b"old": b"kept", b"new": b"\x00\x01"}


def test_load_commits_one_transaction_per_batch(tmp_path):
    lines = "".join(json.dumps({"key": f"k{i}", "value": "v"}) + "\n" for i in range(25))
    res = run_cli("load", tmp_path / "s.sp", "--batch", "10", input=lines)
    assert "loaded 25 entries" in res.stdout and "in 3 transactions" in res.stdout
    wal = run_cli("wal", tmp_path / "s.sp", "--json")
    assert [len(json.loads(line)["ops"]) for line in wal.stdout.splitlines()] == [10, 10, 5]


def test_load_reads_a_file_argument(tmp_path):
    src = make_store(tmp_path / "src.sp", BINARY)
    run_cli("dump", src, "-o", tmp_path / "d.jsonl")
    assert run_cli("load", tmp_path / "dst.sp", tmp_path / "d.jsonl").returncode == 0
    assert read_state(tmp_path / "dst.sp") == BINARY


def test_dump_changes_no_file(tmp_path):
    store = make_store(tmp_path / "s.sp")
    before = file_bytes(store)
    assert run_cli("dump", store).returncode == 0
    assert file_bytes(store) == before


# Error paths


def test_load_names_the_line_that_is_not_json(tmp_path):
    res = run_cli("load", tmp_path / "s.sp", input='{"key": "a", "value": "1"}\n{oops\n')
    assert res.returncode == 2
    assert "line 2: not JSON" in res.stderr
    assert "Traceback" not in res.stderr


def test_load_rejects_invalid_base64_naming_the_line(tmp_path):
    res = run_cli("load", tmp_path / "s.sp", input='{"key": "a", "value": {"b64": "!!"}}\n')
    assert res.returncode == 2
    assert "line 1: value has invalid base64" in res.stderr


def test_a_failed_line_aborts_its_batch_and_keeps_earlier_batches(tmp_path):
    good = "".join(json.dumps({"key": f"k{i}", "value": "v"}) + "\n" for i in range(3))
    res = run_cli("load", tmp_path / "s.sp", "--batch", "2", input=good + '{"key": 1}\n')
    assert res.returncode == 2
    assert "2 entries before it were loaded" in res.stderr
    assert set(read_state(tmp_path / "s.sp")) == {b"k0", b"k1"}


def test_load_rejects_a_key_longer_than_lmdb_allows(tmp_path):
    res = run_cli("load", tmp_path / "s.sp", input=json.dumps({"key": "k" * 600, "value": ""}))
    assert res.returncode == 2
    assert "line 1:" in res.stderr and "511" in res.stderr


def test_load_rejects_a_dump_of_a_newer_format_version(tmp_path):
    res = run_cli("load", tmp_path / "s.sp", input='{"format": "safepoint-dump", "version": 9}\n')
    assert res.returncode == 2
    assert "dump format version 9" in res.stderr


def test_dump_of_a_damaged_store_exits_1(tmp_path):
    store = make_store(tmp_path / "s.sp")
    seg, rec = record_at_lsn(store, 5)
    flip_bit(seg, rec.offset + 40)
    res = run_cli("dump", store)
    assert res.returncode == 1
    assert "checksum mismatch" in res.stderr
