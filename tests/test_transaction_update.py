"""Bulk puts: ``txn.update`` and ``db.update`` (one transaction, one record)
behave exactly like a ``put`` per pair, whichever path they take (all
``bytes``: checked and stored at C speed; anything else: put by put)."""

from __future__ import annotations

import pytest

import safepoint
from helpers import SMALL, lsn_of
from safepoint.format import MAX_KEY_SIZE


def test_update_commits_every_pair_as_one_record(db):
    before = lsn_of(db)
    db.update([(b"k%d" % i, b"v%d" % i) for i in range(100)])
    assert lsn_of(db) == before + 1
    assert dict(db.items()) == {b"k%d" % i: b"v%d" % i for i in range(100)}


def test_update_takes_a_mapping_and_keyword_arguments(db):
    db.update({b"a": b"1"}, b=b"2")
    assert dict(db.items()) == {b"a": b"1", b"b": b"2"}


def test_a_later_pair_for_the_same_key_wins(db):
    db.update([(b"k", b"first"), (b"k", b"second")])
    assert db[b"k"] == b"second"


def test_update_inside_a_transaction_is_read_back_and_combines_with_puts(db):
    with db.transaction() as txn:
        txn.put(b"a", b"1")
        txn.update([(b"b", b"2"), (b"a", b"3")])
        assert txn[b"a"] == b"3"
        txn.delete(b"b")
    assert dict(db.items()) == {b"a": b"3"}


def test_update_accepts_str_keys_and_bytes_like_values(db):
    db.update([("text", bytearray(b"1")), (memoryview(b"mv"), memoryview(b"2"))])
    assert db[b"text"] == b"1" and db[b"mv"] == b"2"
    assert type(db[b"text"]) is bytes


def test_update_of_a_generator_consumes_it_once(db):
    db.update((b"k%d" % i, b"v") for i in range(10))
    assert len(db) == 10


def test_update_with_a_value_codec_encodes_every_value(tmp_path):
    with safepoint.open(tmp_path / "s.sp", codec="json", **SMALL) as db:
        db.update([(b"a", {"x": 1}), (b"b", [2])])
        assert db[b"a"] == {"x": 1} and db[b"b"] == [2]


def test_updated_pairs_survive_a_reopen(path):
    with safepoint.open(path, **SMALL) as db:
        db.update([(b"k%03d" % i, b"v" * 50) for i in range(300)])
    with safepoint.open(path, **SMALL) as db:
        assert dict(db.items()) == {b"k%03d" % i: b"v" * 50 for i in range(300)}


# Error paths


def test_update_with_a_key_over_the_limit_commits_nothing(db):
    with pytest.raises(ValueError, match="limit"):
        db.update([(b"ok", b"1"), (b"k" * (MAX_KEY_SIZE + 1), b"2")])
    assert len(db) == 0


def test_update_with_an_empty_key_commits_nothing(db):
    with pytest.raises(ValueError, match="empty"):
        db.update([(b"ok", b"1"), (b"", b"2")])
    assert len(db) == 0


def test_update_with_a_value_that_is_not_bytes_like_commits_nothing(db):
    with pytest.raises(TypeError):
        db.update([(b"ok", b"1"), (b"k", 3)])
    assert len(db) == 0


def test_update_with_items_that_are_not_pairs_raises(db):
    with pytest.raises((TypeError, ValueError)):
        db.update([(b"k", b"v", b"extra")])
    assert len(db) == 0


def test_update_outside_the_block_raises_closed_error(db):
    with db.transaction() as txn:
        pass
    with pytest.raises(safepoint.ClosedError):
        txn.update([(b"k", b"v")])
