"""safepoint._sp_batch against its Python twins.

``bytes_pairs`` must build exactly ``dict(pairs)`` (same order, last write
wins) for a list of (bytes, bytes) tuples with valid keys, and decline
(None) anything else so the Python path decides; ``encode_writes`` must
give the Python encoder's bytes for every dict it accepts and decline the
rest, so errors keep the Python encoder's words.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import safepoint
from safepoint import _records_common, _sp_batch, records
from safepoint.format import MAX_KEY_SIZE, MAX_PAYLOAD_SIZE, OP_DELETE, OP_PUT
from safepoint.memtable import Memtable

keys = st.binary(min_size=1, max_size=40) | st.binary(min_size=MAX_KEY_SIZE, max_size=MAX_KEY_SIZE)
values = st.binary(max_size=64)
writes = st.dictionaries(keys, st.none() | values, min_size=1, max_size=30)


@given(writes)
def test_encode_writes_gives_the_python_encoders_bytes(w):
    assert _sp_batch.encode_writes(w) == _records_common.encode_writes(w)


@given(writes)
def test_encoded_writes_decode_to_the_same_ops_in_order(w):
    ops = records.decode_payload(_sp_batch.encode_writes(w))
    assert [(k, v) for _, k, v in ops] == list(w.items())


@given(st.lists(st.tuples(keys, values), max_size=30))
def test_bytes_pairs_is_dict_of_the_pairs_in_order(pairs):
    got = _sp_batch.bytes_pairs(pairs)
    assert got == dict(pairs)
    assert list(got.items()) == list(dict(pairs).items())


def test_records_encode_writes_is_the_native_one_on_the_native_backend():
    if records.BACKEND == "native":
        assert records.encode_writes is not _records_common.encode_writes
        assert records.encode_writes({b"k": b"v"}) == _records_common.encode_writes({b"k": b"v"})


# Error paths: declined inputs (None) leave the decision to Python


@pytest.mark.parametrize(
    "w",
    [
        {},
        {b"": b"v"},
        {b"k" * (MAX_KEY_SIZE + 1): b"v"},
        {"k": b"v"},
        {b"k": "v"},
        {b"k": bytearray(b"v")},
        {b"a": b"1", b"b": 2},
    ],
    ids=["empty", "empty-key", "long-key", "str-key", "str-value", "bytearray", "int-value"],
)
def test_encode_writes_declines_what_it_does_not_handle(w):
    assert _sp_batch.encode_writes(w) is None


def test_encode_writes_declines_a_mapping_that_is_not_a_dict():
    class Writes(dict):
        pass

    assert _sp_batch.encode_writes(Writes({b"k": b"v"})) is None
    assert _sp_batch.encode_writes([(b"k", b"v")]) is None


def test_encode_writes_declines_a_payload_over_the_limit_and_python_names_it():
    big = b"x" * (1 << 20)
    w = {b"%d" % i: big for i in range(MAX_PAYLOAD_SIZE // len(big) + 1)}
    assert _sp_batch.encode_writes(w) is None
    with pytest.raises(ValueError, match="MAX_PAYLOAD_SIZE"):
        records.encode_writes(w)


# Pairs that neither bytes_pairs nor encode_pairs handles themselves.
DECLINED_PAIRS = {
    "tuple-not-list": ((b"k", b"v"),),
    "list-items": [[b"k", b"v"]],
    "triple": [(b"k", b"v", b"x")],
    "empty-key": [(b"", b"v")],
    "long-key": [(b"k" * (MAX_KEY_SIZE + 1), b"v")],
    "none": [(b"k", None)],
    "str": [(b"a", b"1"), ("b", b"2")],
    "view": [(b"a", b"1"), (b"b", memoryview(b"2"))],
}


@pytest.mark.parametrize("pairs", DECLINED_PAIRS.values(), ids=DECLINED_PAIRS.keys())
def test_bytes_pairs_declines_what_it_does_not_handle(pairs):
    assert _sp_batch.bytes_pairs(pairs) is None


def test_a_declined_update_still_raises_the_python_error(db):
    with pytest.raises(ValueError, match="key"), db.transaction() as txn:
        txn.update([(b"ok", b"1"), (b"", b"2")])
    assert db.get(b"ok") is None


# encode_pairs: a bulk update's payload straight from its list


@given(st.lists(st.tuples(keys, values), min_size=1, max_size=30))
def test_encode_pairs_gives_encode_payloads_bytes_duplicates_included(pairs):
    want = _records_common.encode_payload([(OP_PUT, k, v) for k, v in pairs])
    assert _sp_batch.encode_pairs(pairs) == want
    ops = records.decode_payload(want)
    assert [(k, v) for _, k, v in ops] == pairs


@pytest.mark.parametrize(
    "pairs", [[], *DECLINED_PAIRS.values()], ids=["empty", *DECLINED_PAIRS.keys()]
)
def test_encode_pairs_declines_what_it_does_not_handle(pairs):
    assert _sp_batch.encode_pairs(pairs) is None


def test_encode_pairs_declines_a_payload_over_the_limit():
    big = b"x" * (1 << 20)
    pairs = [(b"%d" % i, big) for i in range(MAX_PAYLOAD_SIZE // len(big) + 1)]
    assert _sp_batch.encode_pairs(pairs) is None


@given(st.lists(st.tuples(st.binary(min_size=1, max_size=3), values), min_size=1, max_size=30))
def test_a_bulk_update_of_pairs_is_dict_of_the_pairs_and_one_record(tmp_path_factory, pairs):
    path = tmp_path_factory.mktemp("bulk") / "s.sp"
    with safepoint.open(path, sync="none", checkpoint_bytes=None) as db:
        db.put(b"before", b"0")
        lsn = db.stats()["lsn"]
        db.update(pairs)
        assert db.stats()["lsn"] == lsn + 1  # one transaction
        assert dict(db.items()) == {b"before": b"0", **dict(pairs)}
    with safepoint.open(path, checkpoint_bytes=None) as db:  # replayed from the log
        assert dict(db.items()) == {b"before": b"0", **dict(pairs)}
        db.checkpoint()
        assert dict(db.items()) == {b"before": b"0", **dict(pairs)}


def test_a_bulk_update_that_is_declined_goes_through_a_transaction(db):
    with pytest.raises(ValueError, match="key"):
        db.update([(b"ok", b"1"), (b"", b"2")])
    assert db.get(b"ok") is None  # nothing of it committed
    db.update([(b"a", b"1"), ("b", b"2")])  # a str key: converted by the transaction
    assert db.get(b"a") == b"1" and db.get(b"b") == b"2"
    db.update([(b"c", b"3")], d=b"4")  # keywords: a transaction too
    assert db.get(b"c") == b"3" and db.get("d") == b"4"


def test_the_python_memtable_applies_a_payload_alone_in_order():
    mem = Memtable()
    payload = _records_common.encode_payload([(OP_PUT, b"k", b"1"), (OP_PUT, b"k", b"2")])
    mem.apply_commit(None, payload)
    assert mem.lookup(b"k") == (True, b"2")
    mem.apply_commit(None, _records_common.encode_payload([(OP_DELETE, b"k", None)]))
    assert mem.lookup(b"k") == (True, None)  # a tombstone


def test_a_bulk_update_of_bytes_pairs_makes_no_transaction_on_the_native_backend(db, monkeypatch):
    made = []
    transaction = db.transaction
    monkeypatch.setattr(db, "transaction", lambda: made.append(1) or transaction())
    db.update([(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    assert db.get(b"a") == b"3" and db.get(b"b") == b"2"
    # The Python backend has no C encoder: a transaction, as for any update.
    assert made == ([] if records.BACKEND == "native" else [1])
