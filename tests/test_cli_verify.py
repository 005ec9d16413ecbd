"""``safepoint verify``: every CRC of the log and the base image, read-only.

Each test runs the installed script in a subprocess on a real store whose
files the test damages with the helper verbs.
"""

from __future__ import annotations

import json

import pytest

import safepoint
from clitools import file_bytes, make_store, run_cli
from helpers import (
    find_all,
    flip_bit,
    last_segment,
    log_end,
    record_at_lsn,
    segment_first_lsn,
    segments,
    write_at,
)

SEGMENT = "wal/00000000000000000001.wal"


@pytest.fixture
def store(tmp_path):
    return make_store(tmp_path / "s.sp")


def test_clean_store_exits_0_and_says_every_checksum_matches(store):
    res = run_cli("verify", store)
    assert res.returncode == 0, res.stderr
    assert "10 records checked" in res.stdout
    assert "ok: every checksum matches" in res.stdout


def test_flipped_bit_in_a_record_exits_1_naming_file_offset_and_lsn(store):
    seg, rec = record_at_lsn(store, 5)
    flip_bit(seg, rec.offset + 40)
    res = run_cli("verify", store)
    assert res.returncode == 1
    assert f"{SEGMENT} at offset {rec.offset} (lsn 5)" in res.stdout
    assert "checksum mismatch" in res.stdout


def test_records_after_the_damage_are_still_checked(store):
    seg, rec = record_at_lsn(store, 3)
    flip_bit(seg, rec.offset + 40)
    res = run_cli("verify", store, "--json")
    out = json.loads(res.stdout)
    assert out["records_checked"] == 9
    assert out["last_lsn"] == 10


def test_every_damaged_record_is_reported(store):
    found = [record_at_lsn(store, lsn) for lsn in (3, 7)]
    for seg, rec in found:
        flip_bit(seg, rec.offset + 40)
    res = run_cli("verify", store)
    assert res.returncode == 1
    assert "(lsn 3)" in res.stdout and "(lsn 7)" in res.stdout
    assert "2 problems found" in res.stdout


def test_records_already_in_the_base_image_are_checked(tmp_path):
    store = make_store(tmp_path / "s.sp", checkpoint=True)
    seg, rec = record_at_lsn(store, 2)
    flip_bit(seg, rec.offset + 40)
    with safepoint.open(store) as db:  # the store never needs that record again
        assert db[b"key-01"] == b"value 1"
    res = run_cli("verify", store)
    assert res.returncode == 1
    assert f"{SEGMENT} at offset {rec.offset} (lsn 2)" in res.stdout
    assert "already in the base image (checkpoint lsn 10): the store skips it" in res.stdout


def test_flipped_bit_in_a_base_image_value_exits_1_naming_file_and_offset(tmp_path):
    key, value = b"the-key", b"a value that a flipped bit will damage" * 2
    store = make_store(tmp_path / "s.sp", {key: value, b"other": b"x"}, checkpoint=True)
    data = store / "base" / "data.mdb"
    [pos] = find_all(data, value)
    flip_bit(data, pos + 10)
    res = run_cli("verify", store)
    assert res.returncode == 1
    entry_offset = pos - 4 - len(key)  # the key, then the 4-byte CRC, then the value
    assert f"base/data.mdb at offset {entry_offset}" in res.stdout
    assert "checksum mismatch for key b'the-key'" in res.stdout


def test_verify_works_on_a_store_that_open_refuses(store):
    seg, rec = record_at_lsn(store, 5)
    flip_bit(seg, rec.offset + 40)
    with pytest.raises(safepoint.CorruptionError):
        safepoint.open(store)
    assert run_cli("verify", store).returncode == 1


def test_verify_changes_no_file(store):
    seg, rec = record_at_lsn(store, 5)
    flip_bit(seg, rec.offset + 40)
    before = file_bytes(store)
    run_cli("verify", store)
    assert file_bytes(store) == before


def test_a_torn_tail_is_reported_but_is_not_damage(store):
    write_at(last_segment(store), log_end(last_segment(store)), b"\xab" * 100)
    res = run_cli("verify", store)
    assert res.returncode == 0
    assert "torn tail:" in res.stdout
    assert f"at offset {log_end(last_segment(store))} (lsn 11)" in res.stdout


def test_strict_counts_a_torn_tail_as_damage(store):
    write_at(last_segment(store), log_end(last_segment(store)), b"\xab" * 100)
    assert run_cli("verify", store, "--strict").returncode == 1


def test_json_lists_each_problem_with_file_offset_and_lsn(store):
    seg, rec = record_at_lsn(store, 4)
    flip_bit(seg, rec.offset + 40)
    res = run_cli("verify", store, "--json")
    out = json.loads(res.stdout)
    assert out["ok"] is False
    [problem] = out["problems"]
    assert problem["file"] == SEGMENT
    assert problem["offset"] == rec.offset
    assert problem["lsn"] == 4
    assert problem["torn_tail"] is False


# Error paths


def test_a_damaged_segment_header_is_reported_and_the_rest_still_checked(tmp_path):
    store = make_store(tmp_path / "s.sp", checkpoint=True)
    flip_bit(last_segment(store), 20)
    res = run_cli("verify", store)
    assert res.returncode == 1
    assert f"{SEGMENT} at offset 0: wal: segment header checksum mismatch" in res.stdout
    assert "10 entries checked" in res.stdout  # the base image is still read


def test_a_missing_segment_is_damage_naming_the_missing_records(tmp_path):
    store = tmp_path / "s.sp"
    with safepoint.open(store, segment_bytes=4096) as db:
        for i in range(200):
            db.put(b"k%03d" % i, b"v" * 20)
    segs = segments(store)
    assert len(segs) >= 3
    first, after = segment_first_lsn(segs[1]), segment_first_lsn(segs[2])
    segs[1].unlink()
    res = run_cli("verify", store)
    assert res.returncode == 1
    assert (
        f"wal/{segs[2].name} at offset 0 (lsn {after}): segment starts at lsn {after}: "
        f"records {first}..{after - 1} are missing"
    ) in res.stdout


def test_a_missing_base_image_is_damage(store):
    (store / "base" / "data.mdb").unlink()
    res = run_cli("verify", store)
    assert res.returncode == 1
    assert "base/data.mdb (offset unknown): the base image is missing" in res.stdout


def test_verify_of_a_directory_that_is_not_a_store_is_a_usage_error(tmp_path):
    res = run_cli("verify", tmp_path)
    assert res.returncode == 2
    assert "no safepoint store" in res.stderr
