"""The native record codec: thin wrappers over native/sp_core.c through cffi.

Same signatures and results as the reference ``_records_py``.  Buffers are
passed to C without a copy (``ffi.from_buffer``) and borrowed only for the
duration of a call; an mmap can be closed as soon as a call returns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence

from ._records_common import (
    U32_MAX,
    U64_MAX,
    RecordInfo,
    ScanResult,
    ScanSpan,
    byte_view,
    check_start,
    check_uint,
)
from ._records_common import encode_writes as _encode_writes_py
from ._sp_batch import encode_writes as _encode_writes_c
from ._sp_core import ffi, lib
from .format import (
    MAX_PAYLOAD_SIZE,
    MIN_PAYLOAD_SIZE,
    RECORD_CRC_START,
    RECORD_HEADER_SIZE,
    SP_BAD_LENGTH,
    SP_BAD_PAYLOAD,
    SP_OK,
    STATUS_NAMES,
)

BACKEND = "native"

# sp_record as laid out by the compiler: four u64 then two u32, no padding.
_SP_RECORD = struct.Struct("=QQQQII")
assert ffi.sizeof("sp_record") == _SP_RECORD.size
# The record header after its CRC: length, lsn, time_ns, durable_lsn.
_RECORD_TAIL = struct.Struct("<IQQQ")
assert _RECORD_TAIL.size == RECORD_HEADER_SIZE - RECORD_CRC_START
_MAX_OUT = 4096  # records per sp_scan call; the scan loops until a real end
_MIN_RECORD_SIZE = RECORD_HEADER_SIZE + MIN_PAYLOAD_SIZE


def encode_writes(writes: Mapping[bytes, bytes | None]) -> bytes:
    """``_records_common.encode_writes`` (same bytes, same errors), in one C
    pass for a dict of bytes; anything the C declines goes to the Python one."""
    payload = _encode_writes_c(writes)
    return _encode_writes_py(writes) if payload is None else payload


def _check(rc: int, what: str) -> None:
    """Turn an sp_* status into the exception the reference codec raises."""
    if rc == SP_OK:
        return
    if rc in (SP_BAD_LENGTH, SP_BAD_PAYLOAD):
        raise ValueError(f"{what}: {STATUS_NAMES[rc]}")
    raise RuntimeError(f"{what}: unexpected status {rc} ({STATUS_NAMES.get(rc, '?')})")


def crc32c(data: object, seed: int = 0) -> int:
    """CRC32C of ``data`` continuing from ``seed`` (the CRC of what came before)."""
    check_uint("seed", seed, U32_MAX)
    if type(data) is bytes:
        return int(lib.sp_crc32c(seed, data, len(data)))
    with byte_view(data) as view, ffi.from_buffer("uint8_t[]", view) as ptr:
        return int(lib.sp_crc32c(seed, ptr, len(view)))


def _crc32c_portable(data: object, seed: int = 0) -> int:
    """The table-driven path alone (tests compare it with the hardware one)."""
    check_uint("seed", seed, U32_MAX)
    with byte_view(data) as view, ffi.from_buffer("uint8_t[]", view) as ptr:
        return int(lib.sp_crc32c_portable(seed, ptr, len(view)))


def _crc32c_hardware() -> bool:
    """True if crc32c() uses the CPU's CRC32 instruction."""
    return bool(lib.sp_crc32c_hardware())


def store_seed(store_id: bytes) -> int:
    """The CRC seed of a store's records: ``crc32c(store_id)``."""
    return crc32c(store_id)


def check_payload(payload: object) -> int:
    """The op count of a payload that parses exactly; ValueError otherwise."""
    count = ffi.new("uint32_t *")
    with byte_view(payload) as view, ffi.from_buffer("uint8_t[]", view) as ptr:
        _check(lib.sp_payload_check(ptr, len(view), count), "payload")
    return int(count[0])


def encode_record(
    seed: int, lsn: int, time_ns: int, payload: object, durable_lsn: int = 0
) -> bytes:
    """One whole record (header + payload) for a payload from encode_payload.

    ``durable_lsn`` is the highest LSN known to be on disk as the record is
    written (docs/design.md, "Telling a torn tail from damage").  ValueError
    if the payload length is outside [MIN_PAYLOAD_SIZE, MAX_PAYLOAD_SIZE] or
    the payload does not parse.
    """
    check_uint("seed", seed, U32_MAX)
    check_uint("lsn", lsn, U64_MAX)
    check_uint("time_ns", time_ns, U64_MAX)
    check_uint("durable_lsn", durable_lsn, U64_MAX)
    if type(payload) is bytes:  # the commit path: cffi passes bytes without a copy
        return _encode(seed, lsn, time_ns, durable_lsn, payload, payload)
    with byte_view(payload) as view, ffi.from_buffer("uint8_t[]", view) as ptr:
        return _encode(seed, lsn, time_ns, durable_lsn, view, ptr)


def encode_batch(seed: int, durable_lsn: int, batch: Sequence[tuple[int, int, bytes]]) -> bytes:
    """The records of ``batch`` ((lsn, time_ns, payload) with bytes payloads),
    concatenated: what a group-commit leader writes in one pwrite.

    Equal to joining ``encode_record`` over the batch, with the argument
    checks done once; every payload is still parsed before it is sealed.
    """
    check_uint("seed", seed, U32_MAX)
    check_uint("durable_lsn", durable_lsn, U64_MAX)
    parts: list[bytes] = []
    pack, crc, check = _RECORD_TAIL.pack, lib.sp_crc32c, lib.sp_payload_check
    count = ffi.new("uint32_t *")
    tail_size = _RECORD_TAIL.size
    for lsn, time_ns, payload in batch:
        if type(payload) is not bytes:
            payload = bytes(payload)
        length = len(payload)
        if not MIN_PAYLOAD_SIZE <= length <= MAX_PAYLOAD_SIZE:
            raise ValueError(
                f"payload of {length} bytes is outside [{MIN_PAYLOAD_SIZE}, {MAX_PAYLOAD_SIZE}]"
            )
        _check(check(payload, length, count), "payload")
        header = pack(length, check_uint("lsn", lsn, U64_MAX), time_ns, durable_lsn)
        parts.append(crc(crc(seed, header, tail_size), payload, length).to_bytes(4, "little"))
        parts.append(header)
        parts.append(payload)
    return b"".join(parts)


def _encode(
    seed: int, lsn: int, time_ns: int, durable_lsn: int, data: bytes | memoryview, ptr: object
) -> bytes:
    # Not sp_record_encode: Python cannot lend C an uninitialised bytes
    # object, so encoding into a buffer costs a zero-fill and a copy out on
    # top of the copy in; joining the header and payload copies once (a
    # 1 MiB record: 75 us against 1.2 ms).  C still checks and checksums.
    length = len(data)
    if not MIN_PAYLOAD_SIZE <= length <= MAX_PAYLOAD_SIZE:
        raise ValueError(
            f"payload of {length} bytes is outside [{MIN_PAYLOAD_SIZE}, {MAX_PAYLOAD_SIZE}]"
        )
    _check(lib.sp_payload_check(ptr, length, ffi.new("uint32_t *")), "payload")
    header = _RECORD_TAIL.pack(length, lsn, time_ns, durable_lsn)
    crc = lib.sp_crc32c(lib.sp_crc32c(seed, header, len(header)), ptr, length)
    return b"".join((crc.to_bytes(4, "little"), header, data))


def _scan_loop(
    buf: object,
    seed: int,
    expect_lsn: int,
    start: int,
    on_batch: Callable[[int, object, int], None],
) -> tuple[int, int, int]:
    """Call sp_scan over ``buf[start:]`` until a real end; after each call,
    ``on_batch(offset of the call, its sp_record array, records in it)``.
    Returns (status, offset where it stopped, next expected lsn)."""
    check_uint("seed", seed, U32_MAX)
    check_uint("expect_lsn", expect_lsn, U64_MAX)
    with byte_view(buf) as view, ffi.from_buffer("uint8_t[]", view) as base:
        end = len(view)
        offset = check_start(start, end)
        # A record takes at least 28 bytes: a small buffer gets a small array.
        cap = max(1, min(_MAX_OUT, (end - offset) // _MIN_RECORD_SIZE))
        out = ffi.new("sp_record[]", cap)
        res = ffi.new("sp_scan_result *")
        while True:
            rc = lib.sp_scan(base + offset, end - offset, seed, expect_lsn, out, cap, res)
            on_batch(offset, out, res.count)
            offset += res.offset
            expect_lsn = res.next_lsn
            if rc != SP_OK:
                return rc, offset, expect_lsn


def scan(buf: object, seed: int, expect_lsn: int, start: int = 0) -> ScanResult:
    """Validate the records of ``buf[start:]``, the first carrying ``expect_lsn``.

    Applies the rules of docs/format.md in order at each record and stops at
    the first that fails (or at a clean end).  Offsets are relative to the
    start of ``buf``.
    """
    records: list[RecordInfo] = []

    def collect(offset: int, out: object, count: int) -> None:
        raw = ffi.buffer(out, count * _SP_RECORD.size)
        records.extend(
            RecordInfo(offset + rel, length, lsn, time_ns, op_count, durable)
            for rel, lsn, time_ns, durable, length, op_count in _SP_RECORD.iter_unpack(raw)
        )

    rc, offset, next_lsn = _scan_loop(buf, seed, expect_lsn, start, collect)
    return ScanResult(records, rc, offset, next_lsn)


def scan_span(buf: object, seed: int, expect_lsn: int, start: int = 0) -> ScanSpan:
    """``scan`` without the list of records: how many are valid from
    ``start`` on, and where and why they end.

    Recovery replays whole runs of records and needs no per-record table;
    building one costs more than the C scan itself.
    """
    counts: list[int] = []
    rc, offset, next_lsn = _scan_loop(
        buf, seed, expect_lsn, start, lambda _offset, _out, count: counts.append(count)
    )
    return ScanSpan(sum(counts), rc, offset, next_lsn)


def find_valid(buf: object, seed: int, min_lsn: int, start: int = 0) -> tuple[int, int] | None:
    """(offset, lsn) of the first whole, valid record in ``buf[start:]`` whose
    lsn is in [min_lsn, min_lsn + 2**32), or None.  Used to resynchronise
    after damage: is there anything valid after the stop?"""
    check_uint("seed", seed, U32_MAX)
    check_uint("min_lsn", min_lsn, U64_MAX)
    found = ffi.new("uint64_t[2]")
    with byte_view(buf) as view, ffi.from_buffer("uint8_t[]", view) as base:
        end = len(view)
        offset = check_start(start, end)
        rc = lib.sp_find_valid(base + offset, end - offset, seed, min_lsn, found, found + 1)
    if rc != SP_OK:
        return None
    return offset + int(found[0]), int(found[1])
