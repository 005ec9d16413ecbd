"""Recovery's fast paths in the codec: ``scan_span`` agrees with ``scan`` in
both backends, ``apply_records`` replays records exactly as decoding each
payload in order would, and ``encode_writes`` encodes a transaction's
writes exactly as ``encode_payload`` does.
"""

from __future__ import annotations

import mmap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safepoint import _records_native as native
from safepoint import _records_py as reference
from safepoint._records_common import (
    _RUN_CHUNK,
    ScanSpan,
    apply_records,
    decode_payload,
    encode_payload,
    encode_writes,
)
from safepoint.format import MAX_KEY_SIZE, OP_DELETE, OP_PUT, RECORD_HEADER_SIZE, SP_BAD_CRC

TIME_NS = 1_700_000_000_000_000_000
SEED = 12345

# Logs of few shapes, so that runs of same-shaped records and ops (the fast
# paths) are common, with odd records among them.
small_keys = st.sampled_from([b"k", b"key1", b"key2", b"longer-key-03", b"x" * 40])
small_values = st.sampled_from([b"", b"v", b"value-1", b"value-2", b"w" * 100])
ops = st.one_of(
    st.tuples(st.just(OP_PUT), small_keys, small_values),
    st.tuples(st.just(OP_DELETE), small_keys, st.none()),
    st.tuples(st.just(OP_PUT), st.binary(min_size=1, max_size=20), st.binary(max_size=50)),
)
uniform_txn = st.builds(
    lambda n, k, v: [(OP_PUT, k + b"%d" % i, v) for i in range(n)],
    st.integers(1, 12),
    st.sampled_from([b"a", b"bb"]),
    small_values,
)
transactions = st.one_of(st.lists(ops, max_size=5), uniform_txn)
repeated = st.builds(lambda txn, n: [txn] * n, transactions, st.integers(1, 30))
logs = st.lists(st.one_of(transactions.map(lambda t: [t]), repeated), max_size=8).map(
    lambda groups: [t for g in groups for t in g]
)


def build_log(codec, txns, first_lsn=1):
    """The records of ``txns`` back to back."""
    return b"".join(
        codec.encode_record(SEED, first_lsn + i, TIME_NS, encode_payload(txn), 0)
        for i, txn in enumerate(txns)
    )


def model_replay(txns):
    table = {}
    for txn in txns:
        for kind, key, value in decode_payload(encode_payload(txn)):
            table[key] = value if kind == OP_PUT else None
    return table


def replayed(buf, start, stop):
    table = {}
    apply_records(buf, start, stop, table)
    return table


@given(logs)
def test_replay_equals_applying_each_payload_in_order(txns):
    log = build_log(native, txns)
    table = replayed(log, 0, len(log))
    assert table == model_replay(txns)
    assert list(table) == list(model_replay(txns))  # same insertion order too


@given(logs, st.integers(0, 100))
def test_replay_reads_only_between_start_and_stop(txns, pad):
    log = build_log(native, txns)
    buf = bytes([0xFF]) * pad + log + bytes([0xEE]) * pad
    assert replayed(buf, pad, pad + len(log)) == model_replay(txns)


def test_replay_reads_a_mapped_segment(tmp_path):
    txns = [[(OP_PUT, b"k%d" % (i % 7), b"v" * 10)] for i in range(100)]
    log = build_log(native, txns)
    path = tmp_path / "seg"
    path.write_bytes(log + bytes(4096))
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        table = replayed(m, 0, len(log))
    assert table == model_replay(txns)
    assert all(type(k) is bytes and type(v) is bytes for k, v in table.items())


def test_replay_of_a_run_broken_by_a_record_of_another_shape():
    txns = [[(OP_PUT, b"k%03d" % i, b"v" * 8)] for i in range(40)]
    txns[17] = [(OP_PUT, b"odd", b"longer value")]
    txns[30] = [(OP_DELETE, b"k%03d" % 3, None)]
    log = build_log(native, txns)
    assert replayed(log, 0, len(log)) == model_replay(txns)


def test_replay_of_a_run_longer_than_one_match():
    # Runs are matched _RUN_CHUNK records at a time.
    txns = [[(OP_PUT, b"k%05d" % (i % 5000), b"v%05d" % i)] for i in range(_RUN_CHUNK * 2 + 3)]
    log = build_log(native, txns)
    assert replayed(log, 0, len(log)) == model_replay(txns)


def test_replay_of_a_transaction_with_more_ops_than_one_match():
    txns = [[(OP_PUT, b"k%05d" % i, b"value") for i in range(_RUN_CHUNK + 10)]]
    log = build_log(native, txns)
    assert replayed(log, 0, len(log)) == model_replay(txns)


def test_replay_of_an_empty_transaction_at_the_end():
    txns = [[(OP_PUT, b"a", b"1")], []]
    log = build_log(native, txns)
    assert replayed(log, 0, len(log)) == {b"a": b"1"}


def test_replay_accepts_a_bytearray():
    txns = [[(OP_PUT, b"a", b"1")]] * 10
    log = bytearray(build_log(native, txns))
    assert replayed(log, 0, len(log)) == {b"a": b"1"}


@pytest.mark.parametrize("codec", [native, reference], ids=lambda m: m.BACKEND)
@given(txns=logs, cut=st.integers(0, 1 << 20))
def test_scan_span_counts_what_scan_lists(codec, txns, cut):
    log = build_log(codec, txns, first_lsn=5)
    buf = log[: cut % (len(log) + 1)] + bytes(40)
    res = codec.scan(buf, SEED, 5)
    assert codec.scan_span(buf, SEED, 5) == ScanSpan(
        len(res.records), res.status, res.offset, res.next_lsn
    )


@given(logs, st.integers(0, 1 << 20))
def test_scan_span_agrees_between_backends(txns, start):
    log = build_log(native, txns) + bytes(64)
    start = start % (len(log) + 1)
    assert native.scan_span(log, SEED, 1, start) == reference.scan_span(log, SEED, 1, start)


@given(
    st.dictionaries(
        st.binary(min_size=1, max_size=MAX_KEY_SIZE),
        st.one_of(st.none(), st.binary(max_size=100)),
        max_size=20,
    )
)
def test_encode_writes_equals_encode_payload(writes):
    ops = [(OP_PUT, k, v) if v is not None else (OP_DELETE, k, None) for k, v in writes.items()]
    assert encode_writes(writes) == encode_payload(ops)


@given(st.integers(1, 50), st.integers(1, MAX_KEY_SIZE), st.integers(0, 300))
def test_encode_writes_of_same_sized_puts_equals_encode_payload(n, key_len, value_len):
    writes = {
        i.to_bytes(4, "big").rjust(key_len, b"k")[-key_len:]: b"v" * value_len for i in range(n)
    }
    ops = [(OP_PUT, k, v) for k, v in writes.items()]
    assert encode_writes(writes) == encode_payload(ops)


@given(st.binary(min_size=1, max_size=MAX_KEY_SIZE), st.one_of(st.none(), st.binary(max_size=300)))
def test_encode_writes_of_one_write_equals_encode_payload(key, value):
    op = (OP_PUT, key, value) if value is not None else (OP_DELETE, key, None)
    assert encode_writes({key: value}) == encode_payload([op])


# Error paths


def test_encode_writes_refuses_a_single_key_over_the_limit():
    with pytest.raises(ValueError, match="longer than"):
        encode_writes({b"k" * (MAX_KEY_SIZE + 1): b"v"})


def test_encode_writes_refuses_a_key_over_the_limit():
    with pytest.raises(ValueError, match="longer than"):
        encode_writes({b"k" * (MAX_KEY_SIZE + 1): b"v", b"a": b"b"})


def test_encode_writes_refuses_a_value_that_is_not_bytes_like():
    with pytest.raises(TypeError, match="bytes-like"):
        encode_writes({b"k": "text"})


def test_scan_span_stops_at_a_flipped_bit():
    txns = [[(OP_PUT, b"k", b"v")]] * 5
    log = bytearray(build_log(native, txns))
    record = len(log) // 5
    log[2 * record + RECORD_HEADER_SIZE] ^= 1
    span = native.scan_span(bytes(log), SEED, 1)
    assert (span.record_count, span.status, span.offset, span.next_lsn) == (
        2,
        SP_BAD_CRC,
        2 * record,
        3,
    )
