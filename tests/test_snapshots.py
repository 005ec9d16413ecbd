"""Snapshots: save, list, delete, restore; background saves; damage.

Every test works on a real store in a temporary directory.  Crashes during
save and restore are in tests/crash/test_snapshot_crash.py.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest

import safepoint
from helpers import flip_bit, segment_records, segment_store_id, truncate_at
from safepoint import records
from safepoint.fs import FileSystem
from safepoint.snapshots import verify_snapshot

OPTIONS = {"segment_bytes": 1 << 16, "checkpoint_bytes": None}


def open_store(path: Path, **options: object) -> safepoint.Store:
    return safepoint.open(path, **{**OPTIONS, **options})


def state(db: safepoint.Store) -> dict[bytes, bytes]:
    return dict(db.items())


def files_of(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (LOCK and LMDB's lock.mdb excepted) and its bytes."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("LOCK", "lock.mdb"):
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


@pytest.fixture
def store(tmp_path):
    with open_store(tmp_path / "s.sp") as db:
        yield db


# --- save and list --------------------------------------------------------------------


def test_save_returns_a_description_of_the_snapshot(store):
    store[b"a"] = b"1"
    info = store.save("first", step=3, metrics={"val_loss": 0.25}, metadata={"lr": 0.1})
    assert (info.name, info.step, info.metrics, info.metadata) == (
        "first",
        3,
        {"val_loss": 0.25},
        {"lr": 0.1},
    )
    assert info.lsn == store.stats()["lsn"] == 1
    assert info.size_bytes > 0


def test_snapshots_are_listed_oldest_first(store):
    for name in ["c", "a", "b"]:
        store[name] = b"x"
        store.save(name)
    assert [s.name for s in store.snapshots()] == ["c", "a", "b"]


def test_snapshots_survive_a_reopen(tmp_path):
    with open_store(tmp_path / "s") as db:
        db[b"k"] = b"v"
        saved = db.save("keep", step=1, metrics={"acc": 0.9})
    with open_store(tmp_path / "s") as db:
        assert db.snapshots() == [saved]


def test_save_writes_a_manifest_with_the_crc_of_each_file(store):
    store[b"k"] = b"v"
    store.save("m")
    snap = store.path / "snapshots" / "m"
    manifest = json.loads((snap / "manifest.json").read_text())
    data = (snap / "data.mdb").read_bytes()
    assert manifest["files"] == {"data.mdb": {"size": len(data), "crc32c": records.crc32c(data)}}
    assert manifest["name"] == "m" and manifest["lsn"] == 1


def test_snapshot_directory_holds_only_data_and_manifest(store):
    store.save("only")
    assert sorted(os.listdir(store.path / "snapshots" / "only")) == ["data.mdb", "manifest.json"]


def test_snapshot_of_an_empty_store_restores_to_empty(store):
    store.save("empty")
    store[b"k"] = b"v"
    store.restore("empty")
    assert state(store) == {}


def test_metadata_comes_back_as_json(store):
    info = store.save("m", metadata={"tags": ("a", "b"), "n": {"x": None}})
    assert info.metadata == {"tags": ["a", "b"], "n": {"x": None}}
    assert store.snapshots()[0].metadata == info.metadata


def test_metrics_are_stored_as_floats(store):
    info = store.save("m", metrics={"epoch": 3, "loss": 0.5})
    assert info.metrics == {"epoch": 3.0, "loss": 0.5}


def test_save_includes_commits_not_yet_checkpointed(store):
    store[b"a"] = b"1"
    store.checkpoint()
    store[b"b"] = b"2"
    store.save("both")
    store.delete(b"a")
    store.delete(b"b")
    store.restore("both")
    assert state(store) == {b"a": b"1", b"b": b"2"}


def test_snapshot_is_compact_after_deletes(store):
    store.update({b"big%d" % i: bytes([i]) * 20000 for i in range(50)})
    store.checkpoint()
    with store.transaction() as txn:
        for i in range(50):
            txn.delete(b"big%d" % i)
    store[b"small"] = b"x"
    info = store.save("compact")
    assert info.size_bytes < os.path.getsize(store.path / "base" / "data.mdb")


def test_overwrite_replaces_an_existing_snapshot(store):
    store[b"v"] = b"1"
    store.save("latest")
    store[b"v"] = b"2"
    store.save("latest", overwrite=True)
    store[b"v"] = b"3"
    store.restore("latest")
    assert state(store) == {b"v": b"2"}
    assert [s.name for s in store.snapshots()] == ["latest"]


def test_snapshots_of_a_readonly_view_can_be_listed(tmp_path):
    with open_store(tmp_path / "s") as db:
        db.save("one")
    with safepoint.open(tmp_path / "s", readonly=True) as view:
        assert [s.name for s in view.snapshots()] == ["one"]


def test_verify_snapshot_returns_the_manifest_of_a_sound_snapshot(store):
    store.save("ok")
    assert verify_snapshot(FileSystem(), str(store.path / "snapshots" / "ok"))["name"] == "ok"


# --- delete ---------------------------------------------------------------------------


def test_delete_snapshot_removes_it_and_only_it(store):
    store.save("a")
    store.save("b")
    store.delete_snapshot("a")
    assert [s.name for s in store.snapshots()] == ["b"]
    assert sorted(os.listdir(store.path / "snapshots")) == ["b"]


def test_deleted_name_can_be_saved_again(store):
    store.save("a")
    store.delete_snapshot("a")
    store[b"k"] = b"v"
    assert store.save("a").lsn == 1


# --- leftovers of interrupted work -------------------------------------------------------


def test_leftover_temporary_directories_are_ignored_and_removed_at_open(tmp_path):
    with open_store(tmp_path / "s") as db:
        db.save("real")
    junk = tmp_path / "s" / "snapshots"
    (junk / ".tmp-half-0a1b2c3d").mkdir()
    (junk / ".tmp-half-0a1b2c3d" / "data.mdb").write_bytes(b"partial")
    (junk / ".del-0a1b2c3d-gone").mkdir()
    with safepoint.open(tmp_path / "s", readonly=True) as view:
        assert [s.name for s in view.snapshots()] == ["real"]
    with open_store(tmp_path / "s") as db:
        assert sorted(os.listdir(junk)) == ["real"]


def test_replaced_copy_is_put_back_when_an_overwrite_did_not_finish(tmp_path):
    with open_store(tmp_path / "s") as db:
        db[b"k"] = b"old"
        db.save("x")
    d = tmp_path / "s" / "snapshots"
    os.rename(d / "x", d / ".replaced-0a1b2c3d-x")
    with open_store(tmp_path / "s") as db:
        assert [s.name for s in db.snapshots()] == ["x"]
        db.restore("x")
        assert state(db) == {b"k": b"old"}


def test_prepared_base_without_restore_intent_is_discarded_at_open(tmp_path):
    with open_store(tmp_path / "s") as db:
        db[b"k"] = b"old"
    (tmp_path / "s" / "base.new").mkdir()
    (tmp_path / "s" / "base.new" / "data.mdb").write_bytes(b"half a copy")
    with open_store(tmp_path / "s") as db:
        assert state(db) == {b"k": b"old"}
    assert not (tmp_path / "s" / "base.new").exists()


# --- restore ---------------------------------------------------------------------------


def test_restore_returns_the_store_to_the_snapshot(store):
    store.update({b"a": b"1", b"b": b"2"})
    store.save("s")
    store[b"a"] = b"changed"
    store.delete(b"b")
    store[b"c"] = b"new"
    store.restore("s")
    assert state(store) == {b"a": b"1", b"b": b"2"}


def test_restored_state_survives_a_reopen(tmp_path):
    with open_store(tmp_path / "s") as db:
        db[b"a"] = b"1"
        db.save("s")
        db[b"a"] = b"2"
        db.restore("s")
    with open_store(tmp_path / "s") as db:
        assert state(db) == {b"a": b"1"}


def test_commits_after_a_restore_continue_at_the_snapshot_lsn(store):
    store[b"a"] = b"1"
    store.save("s")
    store[b"a"] = b"2"
    store[b"a"] = b"3"
    store.restore("s")
    assert store.stats()["lsn"] == 1
    store[b"b"] = b"x"
    assert store.stats()["lsn"] == 2


def test_commits_after_a_restore_survive_a_reopen(tmp_path):
    with open_store(tmp_path / "s") as db:
        db[b"a"] = b"1"
        db.save("s")
        db[b"a"] = b"2"
        db.restore("s")
        db[b"b"] = b"after"
    with open_store(tmp_path / "s") as db:
        assert state(db) == {b"a": b"1", b"b": b"after"}


def test_restore_sets_the_later_log_records_aside(store):
    store[b"a"] = b"1"
    store.save("s")
    store[b"a"] = b"2"
    store[b"a"] = b"3"
    info = store.restore("s")
    aside = store.path / info.set_aside
    assert info.set_aside.startswith("lost/restore-")
    lsns = [r.lsn for seg in sorted((aside / "wal").iterdir()) for r in segment_records(seg)]
    assert lsns[-2:] == [2, 3]
    assert info.replaced_lsn == 3


def test_restore_keeps_the_replaced_base_image(store):
    store[b"a"] = b"1"
    store.save("s")
    store[b"a"] = b"2"
    store.checkpoint()
    info = store.restore("s")
    assert (store.path / info.set_aside / "base" / "data.mdb").exists()


def test_restored_store_has_a_new_store_id_so_old_segments_never_validate(store):
    store[b"a"] = b"1"
    store.save("s")
    old_id = store.store_id
    store[b"a"] = b"2"
    info = store.restore("s")
    assert store.store_id != old_id
    old_segments = sorted((store.path / info.set_aside / "wal").iterdir())
    assert {segment_store_id(p) for p in old_segments} == {old_id}
    new_segments = [p for p in (store.path / "wal").iterdir() if p.suffix == ".wal"]
    assert {segment_store_id(p) for p in new_segments} == {store.store_id}


def test_restore_leaves_no_intent_or_prepared_base_behind(store):
    store.save("s")
    store.restore("s")
    assert not (store.path / "RESTORE.json").exists()
    assert not (store.path / "base.new").exists()


def test_restore_can_go_forward_to_a_newer_snapshot(store):
    store[b"v"] = b"1"
    store.save("one")
    store[b"v"] = b"2"
    store.save("two")
    store.restore("one")
    store.restore("two")
    assert state(store) == {b"v": b"2"}


def test_snapshots_are_kept_across_a_restore(store):
    store.save("one")
    store.save("two")
    store.restore("one")
    assert [s.name for s in store.snapshots()] == ["one", "two"]


def test_save_after_a_restore_orders_after_older_snapshots(store):
    store.save("one")
    store.restore("one")
    store.save("two")
    assert [s.name for s in store.snapshots()] == ["one", "two"]


def test_transaction_after_a_restore_reads_the_restored_state(store):
    store[b"n"] = b"1"
    store.save("s")
    store[b"n"] = b"5"
    store.restore("s")
    with store.transaction() as txn:
        txn[b"n"] = txn[b"n"] + b"+"
    assert store[b"n"] == b"1+"


def test_set_aside_base_and_log_open_as_the_replaced_store(store, tmp_path):
    store[b"a"] = b"1"
    store.save("s")
    store.checkpoint()
    store[b"a"] = b"2"
    store[b"b"] = b"after the checkpoint"
    info = store.restore("s")
    old = tmp_path / "old.sp"
    old.mkdir()
    for part in ("base", "wal"):
        shutil.copytree(store.path / info.set_aside / part, old / part)
    with open_store(old) as db:
        assert state(db) == {b"a": b"2", b"b": b"after the checkpoint"}


# --- background saves ---------------------------------------------------------------------


class GatedFS(FileSystem):
    """Holds a snapshot's copy at its start until the test opens the gate."""

    def __init__(self) -> None:
        self.copy_started = threading.Event()
        self.gate = threading.Event()

    def open(self, path: str, *, write: bool = False, create: bool = False):  # type: ignore[no-untyped-def]
        if create and "/snapshots/.tmp-" in path and path.endswith("data.mdb"):
            self.copy_started.set()
            assert self.gate.wait(30), "the test never opened the gate"
        return super().open(path, write=write, create=create)


def test_background_save_returns_a_future(store):
    store[b"k"] = b"v"
    future = store.save("bg", wait=False)
    assert isinstance(future, Future)
    assert future.result().name == "bg"


def test_background_save_keeps_the_state_at_the_call_while_writes_continue(tmp_path):
    fs = GatedFS()
    with open_store(tmp_path / "s", fs=fs) as db:
        db[b"k"] = b"at-call"
        future = db.save("bg", wait=False)
        assert fs.copy_started.wait(30)
        db[b"k"] = b"later"
        db[b"other"] = b"later"
        db.checkpoint()  # the base image itself moves on before the copy runs
        fs.gate.set()
        assert future.result().lsn == 1
        db.restore("bg")
        assert state(db) == {b"k": b"at-call"}


def test_writers_and_readers_proceed_while_a_snapshot_is_copied(tmp_path):
    fs = GatedFS()
    with open_store(tmp_path / "s", fs=fs) as db:
        future = db.save("bg", wait=False)
        assert fs.copy_started.wait(30)
        with db.transaction() as txn:
            txn[b"during"] = b"copy"
        assert db[b"during"] == b"copy"
        assert not future.done()
        fs.gate.set()
        future.result()


def test_close_waits_for_a_background_save(tmp_path):
    fs = GatedFS()
    db = open_store(tmp_path / "s", fs=fs)
    db[b"k"] = b"v"
    future = db.save("bg", wait=False)
    assert fs.copy_started.wait(30)
    threading.Timer(0.05, fs.gate.set).start()
    db.close()
    assert future.done()
    with open_store(tmp_path / "s") as db:
        assert [s.name for s in db.snapshots()] == ["bg"]


# Error paths


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "must not be empty"),
        ("a/b", "path separator"),
        ("..", "must not start with '.'"),
        (".hidden", "must not start with '.'"),
        ("x" * 129, "the limit is 128"),
        ("spa ce", "may contain only"),
        ("épo", "may contain only"),
    ],
)
def test_bad_snapshot_names_are_refused(store, name, problem):
    with pytest.raises(ValueError, match=problem):
        store.save(name)


def test_non_string_name_is_refused(store):
    with pytest.raises(TypeError, match="must be a str"):
        store.save(b"bytes")


def test_saving_an_existing_name_is_refused(store):
    store.save("dup")
    with pytest.raises(ValueError, match="exists"):
        store.save("dup")


def test_non_numeric_metric_is_refused(store):
    with pytest.raises(TypeError, match="metric 'loss' must be a number"):
        store.save("m", metrics={"loss": "low"})


def test_metadata_that_json_cannot_hold_is_refused(store):
    with pytest.raises(TypeError, match="JSON-serializable"):
        store.save("m", metadata={"f": object()})


def test_negative_step_is_refused(store):
    with pytest.raises(ValueError, match="step must not be negative"):
        store.save("m", step=-1)


def test_refused_save_leaves_no_trace(store):
    with pytest.raises(TypeError):
        store.save("m", metrics={"loss": None})
    store.save("m")
    assert [s.name for s in store.snapshots()] == ["m"]


def test_restoring_a_missing_snapshot_raises_key_error(store):
    with pytest.raises(KeyError, match="nope"):
        store.restore("nope")


def test_deleting_a_missing_snapshot_raises_key_error(store):
    with pytest.raises(KeyError, match="nope"):
        store.delete_snapshot("nope")


def test_save_on_a_readonly_view_raises_readonly_error(tmp_path):
    open_store(tmp_path / "s").close()
    with safepoint.open(tmp_path / "s", readonly=True) as view:
        with pytest.raises(safepoint.ReadOnlyError):
            view.save("x")


def test_snapshot_methods_on_a_closed_store_raise_closed_error(tmp_path):
    db = open_store(tmp_path / "s")
    db.close()
    for call in (lambda: db.save("x"), db.snapshots, lambda: db.restore("x")):
        with pytest.raises(safepoint.ClosedError):
            call()


def test_save_inside_a_transaction_is_refused(store):
    with store.transaction():
        with pytest.raises(RuntimeError, match="already has an open transaction"):
            store.save("inside")


def test_restore_inside_a_transaction_is_refused_and_the_store_keeps_working(store):
    store[b"k"] = b"v"
    store.save("s")
    with store.transaction() as txn:
        txn[b"k"] = b"in txn"
        with pytest.raises(RuntimeError, match="open transaction"):
            store.restore("s")
    assert store.checkpoint().lsn == 2
    store.restore("s")
    assert state(store) == {b"k": b"v"}


def test_restore_with_a_readonly_view_open_in_the_process_is_refused(tmp_path):
    with open_store(tmp_path / "s") as db:
        db[b"k"] = b"v"
        db.save("s")
        with safepoint.open(tmp_path / "s", readonly=True):
            with pytest.raises(safepoint.Error, match="other handle"):
                db.restore("s")
        assert state(db) == {b"k": b"v"}


def damaged_store(tmp_path: Path, damage) -> tuple[safepoint.Store, dict[str, bytes]]:  # type: ignore[no-untyped-def]
    db = open_store(tmp_path / "s")
    db[b"k"] = b"snap"
    db.save("s")
    db[b"k"] = b"now"
    damage(tmp_path / "s" / "snapshots" / "s")
    return db, files_of(tmp_path / "s")


def test_flipped_bit_in_snapshot_data_raises_corruption_and_changes_nothing(tmp_path):
    db, before = damaged_store(tmp_path, lambda d: flip_bit(d / "data.mdb", 5000))
    with db:
        with pytest.raises(safepoint.CorruptionError, match="snapshots/s/data.mdb") as err:
            db.restore("s")
        assert err.value.file == "snapshots/s/data.mdb"
        assert state(db) == {b"k": b"now"}
        db[b"still"] = b"writable"
    assert {k: v for k, v in files_of(tmp_path / "s").items() if not k.startswith("wal")} == {
        k: v for k, v in before.items() if not k.startswith("wal")
    }
    assert not (tmp_path / "s" / "lost").exists()


def test_truncated_snapshot_data_raises_corruption_naming_the_size(tmp_path):
    db, _ = damaged_store(tmp_path, lambda d: truncate_at(d / "data.mdb", 4096))
    with db:
        with pytest.raises(safepoint.CorruptionError, match="the manifest says"):
            db.restore("s")
        assert state(db) == {b"k": b"now"}


def test_damaged_manifest_raises_corruption_on_restore_and_listing(tmp_path):
    db, _ = damaged_store(tmp_path, lambda d: flip_bit(d / "manifest.json", 30))
    with db:
        with pytest.raises(safepoint.CorruptionError, match="manifest"):
            db.restore("s")
        with pytest.raises(safepoint.CorruptionError, match="snapshots/s/manifest.json"):
            db.snapshots()
        assert state(db) == {b"k": b"now"}


def test_missing_data_file_raises_corruption(tmp_path):
    db, _ = damaged_store(tmp_path, lambda d: os.remove(d / "data.mdb"))
    with db:
        with pytest.raises(safepoint.CorruptionError, match="file is missing"):
            db.restore("s")


def test_missing_manifest_raises_corruption(tmp_path):
    db, _ = damaged_store(tmp_path, lambda d: os.remove(d / "manifest.json"))
    with db:
        with pytest.raises(safepoint.CorruptionError, match="manifest.json is missing"):
            db.restore("s")


def test_damaged_snapshot_can_still_be_deleted(tmp_path):
    db, _ = damaged_store(tmp_path, lambda d: flip_bit(d / "manifest.json", 30))
    with db:
        db.delete_snapshot("s")
        assert db.snapshots() == []


def test_readonly_open_during_an_interrupted_restore_is_refused(tmp_path):
    open_store(tmp_path / "s").close()
    (tmp_path / "s" / "RESTORE.json").write_text("{}")
    with pytest.raises(safepoint.Error, match="restore was interrupted"):
        safepoint.open(tmp_path / "s", readonly=True)


def test_damaged_restore_intent_raises_corruption_at_open(tmp_path):
    open_store(tmp_path / "s").close()
    (tmp_path / "s" / "RESTORE.json").write_text('{"format": 1, "manifest_crc32c": 1}')
    with pytest.raises(safepoint.CorruptionError, match="RESTORE.json"):
        open_store(tmp_path / "s")
