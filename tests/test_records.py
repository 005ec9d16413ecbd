"""The record codec: the native core agrees with the pure-Python reference,
and damage of every kind is reported, never returned as a record.

Most tests run once per backend (the ``codec`` fixture); the agreement tests
use both at once.  Under HYPOTHESIS_PROFILE=ci the main agreement test runs
10,000 examples (tests/conftest.py).
"""

from __future__ import annotations

import mmap
import os
import random
import subprocess
import sys

import crc32c as crc32c_package
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from safepoint import _records_native as native
from safepoint import _records_py as reference
from safepoint._records_common import RecordInfo, ScanResult, decode_payload, encode_payload
from safepoint.format import (
    CLEAN_ENDS,
    MAX_KEY_SIZE,
    MAX_PAYLOAD_SIZE,
    OP_DELETE,
    OP_PUT,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SP_BAD_CRC,
    SP_BAD_LENGTH,
    SP_BAD_LSN,
    SP_BAD_PAYLOAD,
    SP_END,
    SP_NO_SPACE,
    SP_OK,
    SP_TRUNCATED,
    SP_ZERO,
)

BACKENDS = [native, reference]
EXAMPLES = settings.default.max_examples  # 100 under "dev", 1000 under "ci"
SECTOR = 512
U32 = (1 << 32) - 1
U64 = (1 << 64) - 1
TIME_NS = 1_700_000_000_000_000_000
EMPTY = RECORD_HEADER_SIZE + 4  # a record of an empty transaction


@pytest.fixture(scope="module", params=BACKENDS, ids=lambda m: m.BACKEND)
def codec(request):
    return request.param


# --- strategies and helper verbs ---------------------------------------------------

# Few draws per op: generating examples, not codec work, dominates the run time.
ops = st.builds(
    lambda kind, key, value: (kind, key, value if kind == OP_PUT else None),
    st.sampled_from([OP_PUT, OP_DELETE]),
    st.binary(max_size=MAX_KEY_SIZE),
    st.binary(max_size=2048),
)
transactions = st.lists(ops, max_size=3)
logs = st.lists(transactions, min_size=1, max_size=6)
short_logs = st.lists(transactions, min_size=1, max_size=4)  # for the 10x test
seeds = st.integers(0, U32)
first_lsns = st.one_of(st.integers(1, 1000), st.integers(1, U64 - 16))
# A position in a buffer drawn before its length is known: taken modulo the
# length (cheaper than st.data(), and it still shrinks towards offset 0).
positions = st.integers(0, 1 << 24)
trailers = st.one_of(
    st.just(b""),
    st.integers(1, 600).map(bytes),
    st.binary(max_size=300),
)


def durable_before(lsn):
    """A durable_lsn for record ``lsn`` as a group-commit writer might set it."""
    return (lsn - 1) // 2


def build_log(codec, seed, txns, first_lsn=1):
    """The records of ``txns`` back to back, and each record's bytes."""
    records = [
        codec.encode_record(
            seed, first_lsn + i, TIME_NS + i, encode_payload(txn), durable_before(first_lsn + i)
        )
        for i, txn in enumerate(txns)
    ]
    return b"".join(records), records


def expected_infos(records, first_lsn, base=0):
    infos, offset = [], base
    for i, rec in enumerate(records):
        count = int.from_bytes(rec[RECORD_HEADER_SIZE : RECORD_HEADER_SIZE + 4], "little")
        lsn = first_lsn + i
        infos.append(RecordInfo(offset, len(rec), lsn, TIME_NS + i, count, durable_before(lsn)))
        offset += len(rec)
    return infos


def record_offsets(records, base=0):
    offsets, offset = [], base
    for rec in records:
        offsets.append(offset)
        offset += len(rec)
    return offsets


def flip_bit(data, bit):
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def truncate_at(data, cut):
    return data[:cut]


def zero_range(data, start, stop):
    out = bytearray(data)
    out[start:stop] = bytes(len(out[start:stop]))
    return bytes(out)


def set_length(record, length):
    out = bytearray(record)
    out[4:8] = length.to_bytes(4, "little")
    return bytes(out)


def raw_record(seed, lsn, payload, length=None):
    """A record with a correct CRC around any payload, valid or not."""
    length = len(payload) if length is None else length
    body = RECORD_HEADER.pack(0, length, lsn, TIME_NS, 0)[4:] + payload
    return crc32c_package.crc32c(body, value=seed).to_bytes(4, "little") + body


# --- CRC32C ------------------------------------------------------------------------


@settings(max_examples=2 * EXAMPLES)
@given(data=st.binary(max_size=4096), seed=seeds, skip=st.integers(0, 15))
def test_hardware_portable_and_package_crc32c_agree(data, seed, skip):
    view = memoryview(data)[min(skip, len(data)) :]  # unaligned starts
    want = crc32c_package.crc32c(bytes(view), value=seed)
    assert native.crc32c(view, seed) == want
    assert native._crc32c_portable(view, seed) == want
    assert reference.crc32c(view, seed) == want


LONG_DATA = random.Random(1).randbytes(100_000)
CRC_BLOCK = 4096  # sp_core.c's interleaved hardware path takes 3 blocks at a time


@settings(max_examples=EXAMPLES)
@given(length=st.integers(0, 80_000), skip=st.integers(0, 15), seed=seeds)
def test_crc32c_agrees_on_long_buffers(length, skip, seed):
    view = memoryview(LONG_DATA)[skip : skip + length]
    want = crc32c_package.crc32c(view, value=seed)
    assert native.crc32c(view, seed) == want
    assert native._crc32c_portable(view, seed) == want


@pytest.mark.parametrize("blocks", [3, 6, 9])
@pytest.mark.parametrize("extra", [-9, -8, -1, 0, 1, 7, 8, 9, 4095])
def test_crc32c_agrees_at_the_interleaving_boundaries(blocks, extra):
    data = LONG_DATA[: blocks * CRC_BLOCK + extra]
    assert native.crc32c(data, 5) == crc32c_package.crc32c(data, value=5)


def test_native_crc32c_uses_the_hardware_when_the_cpu_has_it():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no /proc/cpuinfo")
    try:
        with open("/proc/cpuinfo") as f:
            has_sse42 = " sse4_2" in f.read()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert native._crc32c_hardware() == has_sse42


# --- agreement between the backends ------------------------------------------------


@settings(max_examples=10 * EXAMPLES)
@given(
    txns=short_logs,
    seed=seeds,
    first_lsn=first_lsns,
    trailer=trailers,
    position=positions,
    lsn_shift=st.integers(-2, 8),
)
def test_backends_agree_on_encoded_logs(txns, seed, first_lsn, trailer, position, lsn_shift):
    log, records = build_log(native, seed, txns, first_lsn)
    assert build_log(reference, seed, txns, first_lsn)[0] == log
    buf = log + trailer

    res = native.scan(buf, seed, first_lsn)
    assert reference.scan(buf, seed, first_lsn) == res
    assert res.records == expected_infos(records, first_lsn)
    assert res.offset == len(log)
    if not any(trailer):
        assert res.status in CLEAN_ENDS

    start = position % (len(buf) + 1)
    min_lsn = max(1, first_lsn + lsn_shift)
    assert native.scan(buf, seed, min_lsn, start=start) == reference.scan(
        buf, seed, min_lsn, start=start
    )
    assert native.find_valid(buf, seed, min_lsn, start) == reference.find_valid(
        buf, seed, min_lsn, start
    )


chunks = st.one_of(
    st.binary(min_size=1, max_size=64),
    st.integers(1, 64).map(bytes),
    st.builds(
        lambda txn, lsn: raw_record(7, lsn, encode_payload(txn)), transactions, st.integers(1, 4)
    ),
    st.builds(lambda p, lsn: raw_record(7, lsn, p), st.binary(max_size=40), st.integers(1, 4)),
)


@settings(max_examples=EXAMPLES)
@given(parts=st.lists(chunks, max_size=12), expect=st.integers(0, 5), start=st.integers(0, 64))
def test_backends_agree_on_records_mixed_with_garbage(parts, expect, start):
    buf = b"".join(parts)
    start = min(start, len(buf))
    assert native.scan(buf, 7, expect, start) == reference.scan(buf, 7, expect, start)
    assert native.find_valid(buf, 7, expect, start) == reference.find_valid(buf, 7, expect, start)


@settings(max_examples=EXAMPLES)
@given(buf=st.binary(max_size=4096), seed=seeds, lsn=st.integers(0, U64))
def test_backends_agree_on_arbitrary_bytes(buf, seed, lsn):
    assert native.scan(buf, seed, lsn) == reference.scan(buf, seed, lsn)
    assert native.find_valid(buf, seed, lsn) == reference.find_valid(buf, seed, lsn)


@settings(max_examples=EXAMPLES)
@given(payload=st.binary(max_size=64))
def test_backends_agree_on_arbitrary_payloads(payload):
    outcomes = []
    for codec in BACKENDS:
        try:
            outcomes.append(codec.check_payload(payload))
        except ValueError:
            outcomes.append(None)
    assert outcomes[0] == outcomes[1]


# --- payloads ----------------------------------------------------------------------


@settings(max_examples=EXAMPLES)
@given(txn=transactions)
def test_payload_round_trips(codec, txn):
    payload = encode_payload(txn)
    assert decode_payload(payload) == txn
    assert codec.check_payload(payload) == len(txn)


def test_single_put_fast_path_matches_the_general_path():
    ops_list = [(OP_PUT, b"key", b"value")]
    general = encode_payload(iter(ops_list))  # an iterator skips the fast path
    assert encode_payload(ops_list) == general
    assert encode_payload(tuple(ops_list)) == general


def test_payload_accepts_any_bytes_like_key_and_value():
    payload = encode_payload([(OP_PUT, bytearray(b"k"), memoryview(b"value"))])
    assert decode_payload(payload) == [(OP_PUT, b"k", b"value")]


def test_empty_transaction_is_a_valid_record(codec):
    record = codec.encode_record(1, 1, TIME_NS, encode_payload([]))
    assert codec.scan(record, 1, 1).records == [RecordInfo(0, EMPTY, 1, TIME_NS, 0, 0)]


# --- sp_record_encode (the C encoder; the Python wrapper joins instead) ------------


def c_encode(seed, lsn, payload, cap=None, durable_lsn=0):
    ffi, lib = native.ffi, native.lib
    cap = len(payload) + RECORD_HEADER_SIZE if cap is None else cap
    out, written = ffi.new("uint8_t[]", max(cap, 1)), ffi.new("size_t *")
    rc = lib.sp_record_encode(
        out, cap, seed, lsn, TIME_NS, durable_lsn, payload, len(payload), written
    )
    return rc, ffi.buffer(out, written[0])[:] if rc == SP_OK else written[0]


@settings(max_examples=EXAMPLES // 2)
@given(txn=transactions, seed=seeds, lsn=st.integers(0, U64), durable_lsn=st.integers(0, U64))
def test_c_encoder_writes_the_same_record(txn, seed, lsn, durable_lsn):
    payload = encode_payload(txn)
    want = native.encode_record(seed, lsn, TIME_NS, payload, durable_lsn)
    assert c_encode(seed, lsn, payload, durable_lsn=durable_lsn) == (SP_OK, want)


@settings(max_examples=EXAMPLES // 4)
@given(txns=st.lists(transactions, max_size=6), seed=seeds, durable_lsn=st.integers(0, U64))
def test_encode_batch_equals_the_joined_records_on_both_backends(txns, seed, durable_lsn):
    batch = [(lsn, TIME_NS + lsn, encode_payload(t)) for lsn, t in enumerate(txns, start=1)]
    want = b"".join(reference.encode_record(seed, lsn, t, p, durable_lsn) for lsn, t, p in batch)
    assert native.encode_batch(seed, durable_lsn, batch) == want
    assert reference.encode_batch(seed, durable_lsn, batch) == want


def test_encode_batch_refuses_a_malformed_payload(codec):
    with pytest.raises(ValueError):
        codec.encode_batch(0, 0, [(1, TIME_NS, b"\x01\x00\x00\x00\x09")])


def test_c_encoder_accepts_a_payload_already_in_place():
    ffi, lib = native.ffi, native.lib
    payload = encode_payload([(OP_PUT, b"key", b"value")])
    size = RECORD_HEADER_SIZE + len(payload)
    out, written = ffi.new("uint8_t[]", size), ffi.new("size_t *")
    ffi.memmove(out + RECORD_HEADER_SIZE, payload, len(payload))
    rc = lib.sp_record_encode(
        out, size, 5, 1, TIME_NS, 0, out + RECORD_HEADER_SIZE, len(payload), written
    )
    assert rc == SP_OK
    assert ffi.buffer(out)[:] == native.encode_record(5, 1, TIME_NS, payload)


def test_c_encoder_reports_the_size_it_needs():
    payload = encode_payload([(OP_PUT, b"key", b"value")])
    size = RECORD_HEADER_SIZE + len(payload)
    assert c_encode(5, 1, payload, cap=size - 1) == (SP_NO_SPACE, size)


def test_c_encoder_refuses_bad_lengths_and_payloads():
    assert c_encode(5, 1, b"\0\0\0")[0] == SP_BAD_LENGTH
    assert c_encode(5, 1, b"\1\0\0\0")[0] == SP_BAD_PAYLOAD


# --- scanning ------------------------------------------------------------------------


def test_scan_accepts_bytes_bytearray_memoryview_and_mmap(codec):
    log, records = build_log(codec, 5, [[(OP_PUT, b"a", b"1")], [(OP_DELETE, b"a", None)]])
    want = codec.scan(log, 5, 1)
    assert len(want.records) == 2
    assert codec.scan(bytearray(log), 5, 1) == want
    assert codec.scan(memoryview(log), 5, 1) == want
    with mmap.mmap(-1, len(log) + 4096) as m:
        m[: len(log)] = log
        assert codec.scan(m, 5, 1).records == want.records
        assert codec.find_valid(m, 5, 1) == (0, 1)
    # leaving the with-block closed the map: no buffer export outlived the calls


def test_scan_from_start_reports_offsets_from_the_buffer_start(codec):
    prefix = b"\xaa" * 40  # a segment header's worth of other bytes
    log, records = build_log(codec, 5, [[(OP_PUT, b"a", b"1")]] * 3)
    res = codec.scan(prefix + log, 5, 1, start=40)
    assert res.records == expected_infos(records, 1, base=40)
    assert (res.status, res.offset, res.next_lsn) == (SP_END, 40 + len(log), 4)


def test_scan_collects_more_records_than_one_native_call_returns(codec):
    n = 10_000  # more than the native wrapper's 4096-record out array
    log, records = build_log(codec, 9, [[]] * n)
    res = codec.scan(log + bytes(SECTOR), 9, 1)
    assert len(res.records) == n
    assert res.records[-1] == RecordInfo(
        (n - 1) * EMPTY, EMPTY, n, TIME_NS + n - 1, 0, (n - 1) // 2
    )
    assert (res.status, res.offset, res.next_lsn) == (SP_ZERO, len(log), n + 1)


def test_durable_lsn_is_carried_through(codec):
    record = codec.encode_record(3, 10, TIME_NS, encode_payload([]), durable_lsn=7)
    assert codec.scan(record, 3, 10).records[0].durable_lsn == 7


def test_lsn_wraps_like_a_u64(codec):
    record = codec.encode_record(3, U64, TIME_NS, encode_payload([]))
    res = codec.scan(record, 3, U64)
    assert len(res.records) == 1 and res.next_lsn == 0


def test_find_valid_skips_to_the_first_valid_record(codec):
    log, records = build_log(codec, 5, [[(OP_PUT, b"a", b"1")]] * 3, first_lsn=10)
    damaged = flip_bit(log, 8 * 30)  # inside the first record
    assert codec.find_valid(damaged, 5, 10) == (len(records[0]), 11)
    assert codec.find_valid(damaged, 5, 12) == (2 * len(records[0]), 12)
    assert codec.find_valid(damaged, 5, 13) is None
    assert codec.find_valid(damaged, 5, 10, start=2 * len(records[0]) + 1) is None


def test_find_valid_ignores_lsns_beyond_the_plausibility_window(codec):
    record = codec.encode_record(5, (1 << 32) + 1, TIME_NS, encode_payload([]))
    assert codec.find_valid(record, 5, 1) is None
    assert codec.find_valid(record, 5, 2) == (0, (1 << 32) + 1)


# --- damage --------------------------------------------------------------------------


@settings(max_examples=EXAMPLES // 2)
@given(n=st.integers(0, 4096))
def test_zero_buffer_of_any_length_is_a_clean_end(codec, n):
    res = codec.scan(bytes(n), 1, 1)
    assert res == ScanResult([], SP_END if n < RECORD_HEADER_SIZE else SP_ZERO, 0, 1)
    assert codec.find_valid(bytes(n), 1, 0) is None


def test_zero_header_after_records_ends_the_log(codec):
    log, records = build_log(codec, 5, [[(OP_PUT, b"a", b"1")]] * 2)
    res = codec.scan(log + bytes(RECORD_HEADER_SIZE) + b"\x01", 5, 1)
    assert len(res.records) == 2
    assert (res.status, res.offset) == (SP_ZERO, len(log))


@settings(max_examples=EXAMPLES)
@given(txns=logs, seed=seeds, position=positions)
def test_flipping_any_bit_stops_the_scan_at_the_damaged_record(codec, txns, seed, position):
    log, records = build_log(codec, seed, txns)
    bit = position % (8 * len(log))
    offsets = record_offsets(records)
    damaged = max(i for i, off in enumerate(offsets) if off <= bit // 8)
    res = codec.scan(flip_bit(log, bit), seed, 1)
    assert res.records == expected_infos(records, 1)[:damaged]
    assert res.offset == offsets[damaged]
    assert res.status not in CLEAN_ENDS and res.status != SP_OK


@settings(max_examples=EXAMPLES)
@given(txns=logs, seed=seeds, position=positions)
def test_cutting_the_log_anywhere_keeps_only_whole_records(codec, txns, seed, position):
    log, records = build_log(codec, seed, txns)
    cut = position % (len(log) + 1)
    res = codec.scan(truncate_at(log, cut), seed, 1)
    whole = [info for info in expected_infos(records, 1) if info.offset + info.length <= cut]
    assert res.records == whole
    assert res.status in (SP_END, SP_TRUNCATED)
    if cut - res.offset >= RECORD_HEADER_SIZE:
        assert res.status == SP_TRUNCATED


@settings(max_examples=EXAMPLES)
@given(txns=logs, seed=seeds, position=positions)
def test_zeroing_a_sector_never_yields_damaged_content(codec, txns, seed, position):
    base = 40  # records start after a segment header, so they straddle sectors
    log, records = build_log(codec, seed, txns)
    segment = bytes(base) + log + bytes(SECTOR)
    sector = position % ((len(segment) - 1) // SECTOR + 1)
    damaged = zero_range(segment, sector * SECTOR, (sector + 1) * SECTOR)
    res = codec.scan(damaged, seed, 1, start=base)

    infos = expected_infos(records, 1, base)
    changed = [
        i
        for i, info in enumerate(infos)
        if damaged[info.offset : info.offset + info.length] != records[i]
    ]
    first_changed = changed[0] if changed else len(infos)
    before = sum(1 for info in infos if info.offset + info.length <= sector * SECTOR)
    assert res.records == infos[: len(res.records)]
    assert before <= len(res.records) <= first_changed


@pytest.mark.parametrize("length", [MAX_PAYLOAD_SIZE + 1, U32, 1 << 31])
def test_length_above_the_maximum_is_bad_length(codec, length):
    log, records = build_log(codec, 5, [[(OP_PUT, b"a", b"1")]] * 3)
    first = len(records[0])
    damaged = records[0] + set_length(records[1], length) + records[2]
    res = codec.scan(damaged, 5, 1)
    assert (len(res.records), res.status, res.offset) == (1, SP_BAD_LENGTH, first)


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_length_below_the_minimum_is_bad_length(codec, length):
    record = build_log(codec, 5, [[(OP_PUT, b"a", b"1")]])[0]
    assert codec.scan(set_length(record, length), 5, 1).status == SP_BAD_LENGTH


@pytest.mark.parametrize("extra", [1, 100, MAX_PAYLOAD_SIZE - 100])
def test_length_beyond_the_buffer_is_truncated(codec, extra):
    record = build_log(codec, 5, [[(OP_PUT, b"a", b"1")]])[0]
    payload_len = len(record) - RECORD_HEADER_SIZE
    res = codec.scan(set_length(record, payload_len + extra), 5, 1)
    assert (res.records, res.status, res.offset) == ([], SP_TRUNCATED, 0)
    assert codec.find_valid(set_length(record, payload_len + extra), 5, 1) is None


@settings(max_examples=EXAMPLES // 2)
@given(txns=logs, seed=seeds, other=seeds)
def test_record_of_another_store_never_validates(codec, txns, seed, other):
    assume(seed != other)
    log, _ = build_log(codec, other, txns)
    res = codec.scan(log, seed, 1)
    assert (res.records, res.status, res.offset) == ([], SP_BAD_CRC, 0)
    assert codec.find_valid(log, seed, 1) is None


@pytest.mark.parametrize(
    "lsns, stop", [([1, 2, 4], 2), ([1, 2, 2], 2), ([1, 1], 1), ([2], 0), ([1, 0], 1)]
)
def test_lsn_gap_or_repeat_is_bad_lsn(codec, lsns, stop):
    records = [codec.encode_record(5, lsn, TIME_NS, encode_payload([])) for lsn in lsns]
    res = codec.scan(b"".join(records), 5, 1)
    assert (len(res.records), res.status, res.offset) == (stop, SP_BAD_LSN, EMPTY * stop)
    assert res.next_lsn == 1 + stop


MALFORMED_PAYLOADS = {
    "op count beyond the ops": bytes.fromhex("02000000 01 0100 01000000 6b76"),
    "op count below the ops": bytes.fromhex("00000000 01 0100 01000000 6b76"),
    "unknown kind": bytes.fromhex("01000000 03 0100 01000000 6b76"),
    "kind zero": bytes.fromhex("01000000 00 0100 01000000 6b76"),
    "delete with a value": bytes.fromhex("01000000 02 0100 01000000 6b76"),
    "key too long": bytes.fromhex("01000000 01 0002 00000000") + bytes(512),
    "value past the end": bytes.fromhex("01000000 01 0100 05000000 6b76"),
    "key past the end": bytes.fromhex("01000000 01 0500 00000000 6b"),
    "short op header": bytes.fromhex("01000000 01 0100"),
    "trailing bytes": bytes.fromhex("00000000 00"),
}


@pytest.mark.parametrize("payload", MALFORMED_PAYLOADS.values(), ids=MALFORMED_PAYLOADS.keys())
def test_crc_valid_record_with_malformed_payload_is_bad_payload(codec, payload):
    good = codec.encode_record(5, 1, TIME_NS, encode_payload([]))
    res = codec.scan(good + raw_record(5, 2, payload), 5, 1)
    assert (len(res.records), res.status, res.offset) == (1, SP_BAD_PAYLOAD, EMPTY)
    assert codec.find_valid(raw_record(5, 2, payload), 5, 1) is None
    with pytest.raises(ValueError):
        codec.check_payload(payload)
    with pytest.raises(ValueError):
        decode_payload(payload)


def test_key_of_the_maximum_size_is_accepted(codec):
    payload = encode_payload([(OP_PUT, b"k" * MAX_KEY_SIZE, b"")])
    assert codec.check_payload(payload) == 1


# --- backend selection -----------------------------------------------------------------


def _backend_in_subprocess(value):
    env = dict(os.environ)
    env.pop("SAFEPOINT_BACKEND", None)
    if value is not None:
        env["SAFEPOINT_BACKEND"] = value
    return subprocess.run(
        [sys.executable, "-c", "import safepoint.records as r; print(r.BACKEND)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_native_backend_is_the_default():
    assert _backend_in_subprocess(None).stdout.strip() == "native"


def test_python_backend_is_chosen_by_the_environment():
    assert _backend_in_subprocess("python").stdout.strip() == "python"


# Error paths ---------------------------------------------------------------------------


def test_unknown_backend_name_fails_to_import():
    proc = _backend_in_subprocess("fortran")
    assert proc.returncode != 0 and "SAFEPOINT_BACKEND" in proc.stderr


def test_encode_refuses_a_payload_over_the_maximum(codec):
    with mmap.mmap(-1, MAX_PAYLOAD_SIZE + 1) as big:  # untouched pages cost nothing
        with pytest.raises(ValueError, match="outside"):
            codec.encode_record(5, 1, TIME_NS, big)


def test_encode_payload_refuses_a_payload_over_the_maximum():
    with mmap.mmap(-1, MAX_PAYLOAD_SIZE) as big:
        with pytest.raises(ValueError, match="MAX_PAYLOAD_SIZE"):
            encode_payload([(OP_PUT, b"k", big)])


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x00", *MALFORMED_PAYLOADS.values()])
def test_encode_refuses_a_malformed_payload(codec, payload):
    with pytest.raises(ValueError):
        codec.encode_record(5, 1, TIME_NS, payload)


@pytest.mark.parametrize(
    "seed, lsn, time_ns, payload, error",
    [
        ("5", 1, 0, b"\0\0\0\0", TypeError),
        (5, 1.0, 0, b"\0\0\0\0", TypeError),
        (5, 1, None, b"\0\0\0\0", TypeError),
        (5, 1, 0, "\0\0\0\0", TypeError),
        (5, 1, 0, 4, TypeError),
        (-1, 1, 0, b"\0\0\0\0", ValueError),
        (U32 + 1, 1, 0, b"\0\0\0\0", ValueError),
        (5, -1, 0, b"\0\0\0\0", ValueError),
        (5, U64 + 1, 0, b"\0\0\0\0", ValueError),
        (5, 1, U64 + 1, b"\0\0\0\0", ValueError),
    ],
)
def test_encode_refuses_bad_arguments(codec, seed, lsn, time_ns, payload, error):
    with pytest.raises(error):
        codec.encode_record(seed, lsn, time_ns, payload)


@pytest.mark.parametrize(
    "durable_lsn, error", [(-1, ValueError), (U64 + 1, ValueError), ("0", TypeError)]
)
def test_encode_refuses_a_bad_durable_lsn(codec, durable_lsn, error):
    with pytest.raises(error):
        codec.encode_record(5, 1, 0, b"\0\0\0\0", durable_lsn=durable_lsn)


@pytest.mark.parametrize(
    "ops, error",
    [
        ([(OP_PUT, "key", b"v")], TypeError),
        ([(OP_PUT, b"k", "value")], TypeError),
        ([(OP_PUT, b"k", None)], TypeError),
        ([(OP_PUT, b"k", 5)], TypeError),
        ([(OP_PUT, b"k" * (MAX_KEY_SIZE + 1), b"v")], ValueError),
        ([(OP_DELETE, b"k", b"v")], ValueError),
        ([(3, b"k", b"v")], ValueError),
        ([(OP_PUT, b"k")], ValueError),
    ],
)
def test_encode_payload_refuses_bad_ops(ops, error):
    with pytest.raises(error):
        encode_payload(ops)
    with pytest.raises(error):
        encode_payload([(OP_DELETE, b"other", None), *ops])


def test_scan_refuses_a_start_beyond_the_buffer(codec):
    with pytest.raises(ValueError):
        codec.scan(b"\0" * 10, 1, 1, start=11)
    with pytest.raises(ValueError):
        codec.find_valid(b"\0" * 10, 1, 1, start=-1)


def test_scan_refuses_a_non_contiguous_buffer(codec):
    with pytest.raises(TypeError):
        codec.scan(memoryview(bytes(100))[::2], 1, 1)


def test_scan_refuses_what_is_not_bytes_like(codec):
    with pytest.raises(TypeError):
        codec.scan("text", 1, 1)
    with pytest.raises(TypeError):
        codec.crc32c("text")
