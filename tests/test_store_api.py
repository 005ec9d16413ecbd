"""The public API of SPEC §2: options, single-key reads and writes, the
MutableMapping protocol, ordered range iteration, key and value types,
stats, closing, the writer lock (in-process and across real processes,
including a holder killed with SIGKILL) and read-only views.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import pytest

import safepoint
from helpers import SMALL, last_segment, log_end, lsn_of, read_bytes, segment_records, write_at
from safepoint.format import MAX_KEY_SIZE

# Small segments: every writer open zero-fills one ahead, 16 MiB by default.


def file_states(root: pathlib.Path) -> dict[str, tuple[int, int, str]]:
    """(size, mtime_ns, sha256) of every file under ``root``, by relative path.

    LMDB's lock.mdb is left out: every LMDB reader registers in its reader
    table, so it changes by design; it holds no data.
    """
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "lock.mdb":
            st = p.stat()
            out[str(p.relative_to(root))] = (
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest(),
            )
    return out


def run_child(code: str, *args: str, wait: bool = True) -> subprocess.Popen:
    """Start ``python -c code args...`` with its stdout piped."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    if wait:
        child.wait(timeout=60)
    return child


HOLDER = """
    import sys, time, safepoint
    db = safepoint.open(sys.argv[1], segment_bytes=1 << 16)
    db.put(b"held", b"by child")
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held_by_child(path):
    """A live child process that holds the store open for writing."""
    child = run_child(HOLDER, str(path), wait=False)
    assert child.stdout.readline() == "ready\n", child.stderr.read()
    yield child
    kill(child)


def kill(child: subprocess.Popen) -> None:
    """SIGKILL the child (unless already reaped) and reap it."""
    if child.returncode is None:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    child.stdout.close()
    child.stderr.close()


# --- opening -----------------------------------------------------------------------------


def test_open_creates_the_store_directory(path):
    with safepoint.open(path, **SMALL) as db:
        assert db.path == path
        assert isinstance(db.path, pathlib.Path)
    assert (path / "LOCK").exists() and (path / "base").is_dir() and (path / "wal").is_dir()


def test_open_accepts_a_str_path(path):
    with safepoint.open(str(path), **SMALL) as db:
        assert db.path == path


def test_a_store_is_a_context_manager_that_closes(path):
    with safepoint.open(path, **SMALL) as db:
        db.put(b"a", b"1")
    with pytest.raises(safepoint.ClosedError):
        db.get(b"a")


def test_close_is_idempotent(db):
    db.close()
    db.close()
    assert "closed" in repr(db)


def test_a_fresh_store_reports_a_clean_empty_recovery(db):
    r = db.recovery
    assert (r.mode, r.base_lsn, r.last_lsn, r.records_replayed) == ("tolerate_tail", 0, 0, 0)
    assert r.clean and not r.torn_tail and r.bytes_dropped == 0 and r.set_aside == []


def test_reopen_reports_the_records_replayed_after_the_checkpoint(path, db):
    db.put(b"a", b"1")
    db.checkpoint()
    db.put(b"b", b"2")
    db.put(b"c", b"3")
    db.close()
    with safepoint.open(path, recovery="strict", **SMALL) as again:
        r = again.recovery
        assert (r.mode, r.base_lsn, r.last_lsn, r.records_replayed) == ("strict", 1, 3, 2)
        assert r.clean
        assert "recovered to lsn 3" in r.summary()


# --- single keys ------------------------------------------------------------------------


def test_put_then_get_returns_the_value(db):
    db.put(b"k", b"v")
    assert db.get(b"k") == b"v"


def test_get_of_a_missing_key_returns_none_or_the_default(db):
    assert db.get(b"missing") is None
    assert db.get(b"missing", b"dflt") == b"dflt"


def test_delete_of_a_missing_key_is_silent_and_logs_nothing(db):
    before = lsn_of(db)
    db.delete(b"missing")
    assert lsn_of(db) == before


def test_delete_removes_the_key(db):
    db.put(b"k", b"v")
    db.delete(b"k")
    assert db.get(b"k") is None and b"k" not in db


def test_each_put_is_one_record(db):
    before = lsn_of(db)
    db.put(b"a", b"1")
    db[b"b"] = b"2"
    assert lsn_of(db) == before + 2


def test_str_keys_are_stored_as_utf8(db):
    db["é/ключ"] = b"v"
    assert db.get("é/ключ".encode()) == b"v"
    assert list(db.keys()) == ["é/ключ".encode()]


@pytest.mark.parametrize("kind", [bytearray, memoryview], ids=["bytearray", "memoryview"])
def test_bytes_like_keys_and_values_are_accepted_and_read_back_as_bytes(db, kind):
    db.put(kind(b"key"), kind(b"value"))
    assert db[kind(b"key")] == b"value"
    assert type(db[b"key"]) is bytes
    assert list(db.keys()) == [b"key"]


def test_a_key_of_511_bytes_is_accepted_and_survives_a_checkpoint(path, db):
    key = b"k" * MAX_KEY_SIZE
    db.put(key, b"v")
    db.checkpoint()
    db.close()
    with safepoint.open(path, **SMALL) as again:
        assert again[key] == b"v"


def test_empty_values_are_values(db):
    db.put(b"k", b"")
    assert db.get(b"k") == b"" and b"k" in db and len(db) == 1


# --- the MutableMapping protocol ------------------------------------------------------------


def test_getitem_of_a_missing_key_raises_key_error(db):
    with pytest.raises(KeyError):
        db[b"missing"]


def test_del_of_a_missing_key_raises_key_error_and_logs_nothing(db):
    before = lsn_of(db)
    with pytest.raises(KeyError):
        del db[b"missing"]
    assert lsn_of(db) == before


def test_setitem_getitem_delitem_contains_and_len(db):
    db[b"a"] = b"1"
    db[b"b"] = b"2"
    assert db[b"a"] == b"1" and b"a" in db and len(db) == 2
    del db[b"a"]
    assert b"a" not in db and len(db) == 1


def test_update_accepts_a_mapping_pairs_and_keywords_in_one_record(db):
    before = lsn_of(db)
    db.update({b"a": b"1"}, z=b"26")
    db.update([(b"b", b"2"), ("c", b"3")])
    assert lsn_of(db) == before + 2
    assert dict(db.items()) == {b"a": b"1", b"b": b"2", b"c": b"3", b"z": b"26"}


def test_pop_returns_and_removes_or_returns_the_default(db):
    db[b"a"] = b"1"
    assert db.pop(b"a") == b"1" and b"a" not in db
    assert db.pop(b"a", b"dflt") == b"dflt"
    with pytest.raises(KeyError):
        db.pop(b"a")


def test_popitem_removes_the_smallest_key(db):
    db.update({b"b": b"2", b"a": b"1"})
    assert db.popitem() == (b"a", b"1")
    assert list(db.keys()) == [b"b"]


def test_popitem_of_an_empty_store_raises_key_error(db):
    with pytest.raises(KeyError):
        db.popitem()


def test_setdefault_sets_only_missing_keys(db):
    assert db.setdefault(b"a", b"1") == b"1"
    assert db.setdefault(b"a", b"2") == b"1"


def test_clear_removes_every_key_also_from_the_base_image(path, db):
    db.update({b"a": b"1", b"b": b"2"})
    db.checkpoint()
    db.put(b"c", b"3")
    db.clear()
    assert len(db) == 0 and list(db) == []
    db.close()
    with safepoint.open(path, **SMALL) as again:
        assert len(again) == 0


def test_len_counts_keys_across_memtable_and_base_image(db):
    db.update({b"a": b"1", b"b": b"2", b"c": b"3"})
    db.checkpoint()
    db.delete(b"a")
    db.put(b"b", b"22")
    db.put(b"d", b"4")
    assert len(db) == 3


def test_a_store_compares_equal_to_a_dict_with_the_same_items(db):
    db.update({b"a": b"1", b"b": b"2"})
    assert db == {b"a": b"1", b"b": b"2"}


# --- ordered iteration -----------------------------------------------------------------------

ORDERED = [b"\x00", b"\x00\x00", b"\x00\xff", b"A", b"a", b"a\x00", b"ab", b"\x7f", b"\x80"]
ORDERED += [b"\xc3\xa9", b"\xff", b"\xff\x00", b"\xff\xff"]


def test_keys_iterate_in_byte_wise_order_across_memtable_and_base_image(db):
    for k in ORDERED[::2]:
        db.put(k, k)
    db.checkpoint()
    for k in ORDERED[1::2]:
        db.put(k, k)
    assert list(db) == ORDERED
    assert list(db.keys()) == ORDERED
    assert list(db.items()) == [(k, k) for k in ORDERED]
    assert list(db.values()) == ORDERED


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"\x00", [b"\x00", b"\x00\x00", b"\x00\xff"]),
        (b"a", [b"a", b"a\x00", b"ab"]),
        (b"\xff", [b"\xff", b"\xff\x00", b"\xff\xff"]),
        (b"\xff\xff", [b"\xff\xff"]),
        (b"", ORDERED),
        (b"zz", []),
        ("é", [b"\xc3\xa9"]),
    ],
)
def test_prefix_iteration_returns_exactly_the_keys_with_that_prefix(db, prefix, expected):
    db.update({k: b"v" for k in ORDERED})
    assert list(db.keys(prefix)) == expected
    assert list(db.items(prefix=prefix)) == [(k, b"v") for k in expected]
    assert list(db.values(prefix)) == [b"v"] * len(expected)


def test_start_stop_is_half_open(db):
    db.update({k: b"v" for k in ORDERED})
    assert list(db.keys(start=b"a", stop=b"\x7f")) == [b"a", b"a\x00", b"ab"]
    assert list(db.keys(start=b"\xff")) == [b"\xff", b"\xff\x00", b"\xff\xff"]
    assert list(db.keys(stop=b"\x00\x00")) == [b"\x00"]
    assert list(db.keys(start=b"b", stop=b"a")) == []


def test_prefix_and_bounds_together_give_their_intersection(db):
    db.update({k: b"v" for k in ORDERED})
    assert list(db.keys(b"a", start=b"a\x00")) == [b"a\x00", b"ab"]
    assert list(db.keys(b"\xff", stop=b"\xff\xff")) == [b"\xff", b"\xff\x00"]


def test_an_iterator_does_not_see_writes_made_while_it_runs(db):
    db.update({b"a": b"1", b"b": b"2", b"c": b"3"})
    it = db.items()
    assert next(it) == (b"a", b"1")
    db.put(b"b", b"changed")
    db.delete(b"c")
    db.put(b"d", b"4")
    assert list(it) == [(b"b", b"2"), (b"c", b"3")]


# --- stats ------------------------------------------------------------------------------------


def test_stats_report_lsns_log_and_checkpoints(db):
    db.put(b"a", b"1")
    s = db.stats()
    assert s["lsn"] == 1 and s["durable_lsn"] == 1 and s["checkpoint_lsn"] == 0
    assert s["wal_segments"] == 1 and s["wal_bytes_appended"] > 0 and s["checkpoints"] == 0
    assert s["memtable_entries"] == 1 and s["sync"] == "always" and s["readonly"] is False
    assert s["path"] == str(db.path) and s["backend"] == safepoint.BACKEND
    assert s["failed"] is None and s["recovery"]["clean"] is True
    assert s["wal_fsyncs"] >= 1
    assert s["wal_engine"] == ("native" if safepoint.BACKEND == "native" else "python")
    json.dumps(s)  # plain data, printable by tools


def test_stats_after_a_checkpoint(db):
    db.put(b"a", b"1")
    info = db.checkpoint()
    s = db.stats()
    assert info.lsn == 1 and info.entries == 1
    assert s["checkpoint_lsn"] == 1 and s["checkpoints"] == 1 and s["memtable_entries"] == 0
    assert s["wal_bytes_since_checkpoint"] == 0


# --- the writer lock -----------------------------------------------------------------------------


def test_a_second_writer_in_the_same_process_gets_locked_error(path, db):
    with pytest.raises(safepoint.LockedError, match="readonly=True"):
        safepoint.open(path, **SMALL)
    db.put(b"a", b"1")  # the holder is unaffected


def test_the_lock_is_released_by_close(path, db):
    db.close()
    with safepoint.open(path, **SMALL) as again:
        again.put(b"a", b"1")


def test_a_second_writer_in_another_process_gets_locked_error(path, db):
    child = run_child(
        """
        import sys, safepoint
        try:
            safepoint.open(sys.argv[1], segment_bytes=1 << 16)
        except safepoint.LockedError:
            sys.exit(42)
        """,
        str(path),
    )
    assert child.returncode == 42, child.stderr.read()


def test_a_writer_in_another_process_locks_this_one_out(path, held_by_child):
    with pytest.raises(safepoint.LockedError):
        safepoint.open(path, **SMALL)


def test_a_lock_left_by_a_killed_process_does_not_block(path, held_by_child):
    kill(held_by_child)
    with safepoint.open(path, **SMALL) as db:  # at once: no wait, no retry
        assert db[b"held"] == b"by child"


# --- read-only views -------------------------------------------------------------------------------


def test_a_readonly_view_opens_beside_a_writer_in_the_same_process(path, db):
    db.put(b"a", b"1")
    with safepoint.open(path, readonly=True) as view:
        assert view[b"a"] == b"1" and list(view.items()) == [(b"a", b"1")]
        assert view.stats()["readonly"] is True


def test_a_readonly_view_opens_beside_a_writer_in_another_process(path, held_by_child):
    with safepoint.open(path, readonly=True) as view:
        assert dict(view.items()) == {b"held": b"by child"}


def test_a_readonly_view_in_another_process_reads_beside_this_writer(path, db):
    db.update({b"a": b"1", b"b": b"2"})
    child = run_child(
        """
        import sys, safepoint
        with safepoint.open(sys.argv[1], readonly=True) as view:
            print(sorted(k.decode() + "=" + v.decode() for k, v in view.items()))
        """,
        str(path),
    )
    assert child.returncode == 0, child.stderr.read()
    assert child.stdout.read().strip() == "['a=1', 'b=2']"


def test_a_readonly_view_does_not_see_later_uncheckpointed_commits(path, db):
    db.put(b"a", b"1")
    with safepoint.open(path, readonly=True) as view:
        db.put(b"a", b"2")
        db.put(b"b", b"2")
        assert dict(view.items()) == {b"a": b"1"}


def test_a_readonly_view_never_shows_part_of_a_later_checkpointed_transaction(path, db):
    with db.transaction() as txn:
        txn.put(b"x", b"1")
        txn.put(b"y", b"1")
    with safepoint.open(path, readonly=True) as view:
        with db.transaction() as txn:
            txn.put(b"x", b"2")
            txn.put(b"z", b"2")
        db.checkpoint()
        assert dict(view.items()) == {b"x": b"1", b"y": b"1"}


def test_readonly_open_read_and_close_change_no_file(path, db):
    db.update({b"a": b"1", b"b": b"2"})
    db.checkpoint()
    db.put(b"c", b"3")
    db.close()
    before = file_states(path)
    with safepoint.open(path, readonly=True) as view:
        assert len(view) == 3 and list(view.items())
    assert file_states(path) == before


def test_a_readonly_view_leaves_a_torn_tail_in_place(path, db):
    db.put(b"a", b"1")
    db.put(b"b", b"2")
    db.close()
    seg = last_segment(path)
    last = segment_records(seg)[-1]
    # Half of the last record again, after it: a write torn by a crash.
    write_at(seg, log_end(seg), read_bytes(seg, last.offset, last.offset + last.length // 2))
    before = file_states(path)
    with safepoint.open(path, readonly=True) as view:
        assert dict(view.items()) == {b"a": b"1", b"b": b"2"}
        assert view.recovery.torn_tail
    assert file_states(path) == before


# Error paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("sync", "sometimes"),
        ("recovery", "best_effort"),
        ("codec", "yaml"),
        ("checkpoint_bytes", 0),
        ("checkpoint_interval", 0),
        ("segment_bytes", 100),
    ],
)
def test_a_bad_option_raises_value_error_naming_it_and_creates_nothing(path, option, value):
    with pytest.raises(ValueError, match=option):
        safepoint.open(path, **{option: value})
    assert not path.exists()


def test_sync_interval_must_be_positive(path):
    with pytest.raises(ValueError, match="sync_interval"):
        safepoint.open(path, sync="interval", sync_interval=0)


def test_an_unknown_option_raises_type_error_naming_it(path):
    with pytest.raises(TypeError, match="synch"):
        safepoint.open(path, synch="always")


def test_a_codec_object_without_encode_and_decode_raises_type_error(path):
    with pytest.raises(TypeError, match="codec"):
        safepoint.open(path, codec=object())


def test_a_512_byte_key_raises_value_error_at_put_and_logs_nothing(db):
    before = lsn_of(db)
    with pytest.raises(ValueError, match="512 bytes; the limit is 511"):
        db.put(b"k" * (MAX_KEY_SIZE + 1), b"v")
    with pytest.raises(ValueError):
        db.update({b"ok": b"v", b"k" * 600: b"v"})
    assert lsn_of(db) == before and len(db) == 0


def test_an_empty_key_raises_value_error(db):
    with pytest.raises(ValueError, match="empty"):
        db.put(b"", b"v")
    with pytest.raises(ValueError, match="empty"):
        db[""] = b"v"


@pytest.mark.parametrize("key", [1, 1.5, None, ("a",)], ids=["int", "float", "NoneType", "tuple"])
def test_a_key_of_the_wrong_type_raises_type_error_naming_the_type(db, key):
    with pytest.raises(TypeError, match=type(key).__name__):
        db.put(key, b"v")
    with pytest.raises(TypeError, match=type(key).__name__):
        db.get(key)


@pytest.mark.parametrize("value", [1, "text", None, {"a": 1}], ids=["int", "str", "None", "dict"])
def test_a_value_of_the_wrong_type_raises_type_error_naming_the_type(db, value):
    with pytest.raises(TypeError, match=type(value).__name__):
        db.put(b"k", value)
    assert len(db) == 0


def test_a_range_bound_of_the_wrong_type_raises_type_error(db):
    with pytest.raises(TypeError, match="int"):
        list(db.keys(start=5))


@pytest.mark.parametrize(
    "use",
    [
        lambda db: db.get(b"a"),
        lambda db: db.put(b"a", b"1"),
        lambda db: db.delete(b"a"),
        lambda db: db[b"a"],
        lambda db: b"a" in db,
        lambda db: len(db),
        lambda db: list(db.items()),
        lambda db: db.checkpoint(),
        lambda db: db.stats(),
        lambda db: db.transaction().__enter__(),
    ],
    ids=[
        "get",
        "put",
        "delete",
        "getitem",
        "contains",
        "len",
        "items",
        "checkpoint",
        "stats",
        "txn",
    ],
)
def test_a_closed_store_raises_closed_error(db, use):
    db.close()
    with pytest.raises(safepoint.ClosedError):
        use(db)


def test_an_iterator_used_after_close_raises_closed_error(db):
    db.update({b"a": b"1", b"b": b"2", b"c": b"3"})
    db.checkpoint()  # the rest of the iteration comes from the base image
    started, unstarted = db.items(), db.keys()
    assert next(started) == (b"a", b"1")
    db.close()
    with pytest.raises(safepoint.ClosedError):
        list(started)
    with pytest.raises(safepoint.ClosedError):
        list(unstarted)


@pytest.mark.parametrize(
    "write",
    [
        lambda v: v.put(b"a", b"1"),
        lambda v: v.delete(b"a"),
        lambda v: v.__setitem__(b"a", b"1"),
        lambda v: v.__delitem__(b"a"),
        lambda v: v.update({b"a": b"1"}),
        lambda v: v.checkpoint(),
    ],
    ids=["put", "delete", "setitem", "delitem", "update", "checkpoint"],
)
def test_writes_to_a_readonly_view_raise_read_only_error(path, db, write):
    db.put(b"a", b"0")
    with safepoint.open(path, readonly=True) as view:
        with pytest.raises(safepoint.ReadOnlyError):
            write(view)
        assert view[b"a"] == b"0"


def test_a_readonly_open_of_a_missing_store_raises_and_creates_nothing(path):
    with pytest.raises(FileNotFoundError):
        safepoint.open(path, readonly=True)
    assert not path.exists()


def test_open_refuses_a_free_threaded_interpreter_without_its_gil(tmp_path, monkeypatch):
    # The interpreter probe, not the store, is what this replaces.
    monkeypatch.setattr(sys, "_is_gil_enabled", lambda: False, raising=False)
    with pytest.raises(RuntimeError, match="PYTHON_GIL=1"):
        safepoint.open(tmp_path / "s.sp")
    assert not (tmp_path / "s.sp").exists()
