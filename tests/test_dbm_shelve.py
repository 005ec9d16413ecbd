"""Standard-library conventions: ``shelve.Shelf`` over a store, and ``safepoint.dbm``."""

from __future__ import annotations

import shelve

import pytest

import safepoint
import safepoint.dbm

OPTIONS = {"segment_bytes": 1 << 16}


def dbm_open(path, flag="c"):  # type: ignore[no-untyped-def]
    return safepoint.dbm.open(path, flag, **OPTIONS)


# --- shelve ---------------------------------------------------------------------------


def test_shelf_over_a_store_keeps_python_objects(tmp_path):
    with shelve.Shelf(safepoint.open(tmp_path / "s", **OPTIONS)) as shelf:
        shelf["config"] = {"lr": 0.1, "layers": [3, 4]}
        shelf["note"] = "text"
    with shelve.Shelf(safepoint.open(tmp_path / "s", **OPTIONS)) as shelf:
        assert shelf["config"] == {"lr": 0.1, "layers": [3, 4]}
        assert sorted(shelf) == ["config", "note"]
        assert len(shelf) == 2 and "note" in shelf


def test_shelf_delete_and_missing_key_follow_the_mapping_rules(tmp_path):
    with shelve.Shelf(safepoint.open(tmp_path / "s", **OPTIONS)) as shelf:
        shelf["a"] = 1
        del shelf["a"]
        with pytest.raises(KeyError):
            shelf["a"]
        assert shelf.get("a", "default") == "default"


def test_shelf_writeback_persists_mutations_at_close(tmp_path):
    with shelve.Shelf(safepoint.open(tmp_path / "s", **OPTIONS), writeback=True) as shelf:
        shelf["items"] = []
        shelf["items"].append(1)
    with shelve.Shelf(safepoint.open(tmp_path / "s", **OPTIONS)) as shelf:
        assert shelf["items"] == [1]


def test_shelf_stores_pickles_as_plain_bytes(tmp_path):
    with shelve.Shelf(safepoint.open(tmp_path / "s", **OPTIONS)) as shelf:
        shelf["x"] = (1, 2)
    with safepoint.open(tmp_path / "s", **OPTIONS) as db:
        assert isinstance(db[b"x"], bytes)


def test_shelf_over_safepoint_dbm_works(tmp_path):
    with shelve.Shelf(dbm_open(tmp_path / "s")) as shelf:
        shelf["k"] = {"v": 1}
    with shelve.Shelf(dbm_open(tmp_path / "s", "r")) as shelf:
        assert shelf["k"] == {"v": 1}


# --- safepoint.dbm ---------------------------------------------------------------------


def test_dbm_keeps_bytes_and_encodes_str(tmp_path):
    with dbm_open(tmp_path / "d") as db:
        db["key"] = "välue"
        db[b"raw"] = b"\x00\x01"
        assert db[b"key"] == "välue".encode()
        assert db["raw"] == b"\x00\x01"


def test_dbm_keys_are_a_sorted_list_of_bytes(tmp_path):
    with dbm_open(tmp_path / "d") as db:
        db["b"] = "2"
        db["a"] = "1"
        assert db.keys() == [b"a", b"b"]
        assert list(db) == [b"a", b"b"] and len(db) == 2


def test_dbm_get_setdefault_and_contains(tmp_path):
    with dbm_open(tmp_path / "d") as db:
        assert db.get("x") is None
        assert db.setdefault("x", "first") == b"first"
        assert db.setdefault("x", "second") == b"first"
        assert "x" in db and b"y" not in db


def test_dbm_flag_c_creates_and_reopens(tmp_path):
    with dbm_open(tmp_path / "d", "c") as db:
        db["k"] = "v"
    with dbm_open(tmp_path / "d", "c") as db:
        assert db["k"] == b"v"


def test_dbm_flag_w_writes_an_existing_store(tmp_path):
    dbm_open(tmp_path / "d").close()
    with dbm_open(tmp_path / "d", "w") as db:
        db["k"] = "v"
    with dbm_open(tmp_path / "d", "r") as db:
        assert db["k"] == b"v"


def test_dbm_flag_n_starts_empty_and_keeps_snapshots(tmp_path):
    with dbm_open(tmp_path / "d") as db:
        db["old"] = "1"
        db.store.save("before")
    with dbm_open(tmp_path / "d", "n") as db:
        assert len(db) == 0
        db.store.restore("before")
        assert db["old"] == b"1"


def test_dbm_flag_n_creates_a_missing_store(tmp_path):
    with dbm_open(tmp_path / "d", "n") as db:
        assert db.keys() == []


def test_dbm_is_usable_as_a_context_manager_and_closes_the_store(tmp_path):
    with dbm_open(tmp_path / "d") as db:
        pass
    with pytest.raises(safepoint.dbm.error):
        db["k"]


def test_dbm_sync_is_accepted(tmp_path):
    with safepoint.dbm.open(tmp_path / "d", "c", sync="none", **OPTIONS) as db:
        db["k"] = "v"
        db.sync()
    with dbm_open(tmp_path / "d", "r") as db:
        assert db["k"] == b"v"


# Error paths


def test_dbm_missing_key_raises_key_error(tmp_path):
    with dbm_open(tmp_path / "d") as db:
        with pytest.raises(KeyError):
            db["missing"]
        with pytest.raises(KeyError):
            del db["missing"]


@pytest.mark.parametrize("flag", ["r", "w"])
def test_dbm_r_and_w_need_an_existing_store(tmp_path, flag):
    with pytest.raises(FileNotFoundError, match="use flag 'c'"):
        dbm_open(tmp_path / "nothing", flag)
    assert not (tmp_path / "nothing").exists()


def test_dbm_unknown_flag_is_refused(tmp_path):
    with pytest.raises(ValueError, match="flag must be one of"):
        dbm_open(tmp_path / "d", "x")


def test_dbm_readonly_refuses_writes(tmp_path):
    dbm_open(tmp_path / "d").close()
    with dbm_open(tmp_path / "d", "r") as db:
        with pytest.raises(safepoint.dbm.error):
            db["k"] = "v"


def test_dbm_refuses_non_bytes_values(tmp_path):
    with dbm_open(tmp_path / "d") as db:
        with pytest.raises(TypeError, match="dbm values must be bytes or str"):
            db["k"] = 3


def test_dbm_refuses_a_codec(tmp_path):
    with pytest.raises(ValueError, match="dbm values are bytes"):
        safepoint.dbm.open(tmp_path / "d", "c", codec="pickle")


def test_dbm_on_a_plain_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("not a store")
    with pytest.raises(FileExistsError):
        dbm_open(tmp_path / "f")
