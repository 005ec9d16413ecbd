"""Regression: a damaged snapshot manifest escaped as RecursionError,
OverflowError, AttributeError or IsADirectoryError instead of
CorruptionError, crashing ``db.snapshots()`` and ``safepoint verify``
instead of reporting the damage.

Found by fuzz/targets.py ``manifest`` (the structure-aware half gives a
parseable body a valid manifest CRC, so the checks after the CRC see fuzzed
structure).  The first needs no valid CRC at all.
"""

from __future__ import annotations

import json

import pytest

from safepoint import CorruptionError
from safepoint.fs import DEFAULT_FS
from safepoint.snapshot_files import (
    decode_checked_json,
    encode_checked_json,
    snapshot_info,
    verify_snapshot,
)

GOOD = {
    "format": 1,
    "name": "s",
    "seq": 1,
    "lsn": 3,
    "store_id": "00",
    "step": None,
    "created": 1.0,
    "metrics": {},
    "metadata": {},
    "files": {"data.mdb": {"size": 4, "crc32c": 0}},
}


def manifest_with(**fields):
    return json.loads(encode_checked_json(dict(GOOD, **fields)))


def write_snapshot(tmp_path, manifest_bytes):
    snap = tmp_path / "s"
    snap.mkdir()
    (snap / "manifest.json").write_bytes(manifest_bytes)
    (snap / "data.mdb").write_bytes(b"data")
    return str(snap)


def test_deeply_nested_manifest_raises_corruption_error():
    with pytest.raises(CorruptionError, match="JSON"):
        decode_checked_json(b"[" * 100_000, "snapshots/s/manifest.json")


@pytest.mark.parametrize(
    "fields", [{"lsn": float("inf")}, {"created": 10**400}], ids=["infinite-lsn", "huge-created"]
)
def test_manifest_with_numbers_out_of_range_raises_corruption_error(fields):
    with pytest.raises(CorruptionError):
        snapshot_info("s", manifest_with(**fields), 100)


def test_manifest_file_entry_that_is_not_an_object_raises_corruption_error(tmp_path):
    text = encode_checked_json(dict(GOOD, files={"data.mdb": "x"}))
    with pytest.raises(CorruptionError):
        verify_snapshot(DEFAULT_FS, write_snapshot(tmp_path, text))


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_manifest_naming_a_directory_as_a_file_raises_corruption_error(tmp_path, name):
    files = {"data.mdb": {"size": 4, "crc32c": 0}, name: {"size": 0, "crc32c": 0}}
    text = encode_checked_json(dict(GOOD, files=files))
    with pytest.raises(CorruptionError):
        verify_snapshot(DEFAULT_FS, write_snapshot(tmp_path, text))
