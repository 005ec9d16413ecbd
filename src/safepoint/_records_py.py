"""The pure-Python record codec: the reference the native one is tested against.

Written to be read beside docs/format.md, rule by rule, rather than to be
fast; the CRC comes from the ``crc32c`` package.  Signatures and results are
identical to ``_records_native`` (tests/test_records.py compares them).
Buffers are borrowed for the duration of a call and never kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import crc32c as _crc32c

from ._records_common import (
    U32_MAX,
    U64_MAX,
    RecordInfo,
    ScanResult,
    ScanSpan,
    byte_view,
    check_start,
    check_uint,
    decode_payload,
)
from ._records_common import encode_writes as encode_writes
from .format import (
    MAX_PAYLOAD_SIZE,
    MIN_PAYLOAD_SIZE,
    OP_COUNT,
    RECORD_CRC_START,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SP_BAD_CRC,
    SP_BAD_LENGTH,
    SP_BAD_LSN,
    SP_BAD_PAYLOAD,
    SP_END,
    SP_TRUNCATED,
    SP_ZERO,
)

BACKEND = "python"

_ZERO_HEADER = bytes(RECORD_HEADER_SIZE)
_LSN_WINDOW = 1 << 32  # find_valid's plausibility window, as in sp_core.c


def crc32c(data: object, seed: int = 0) -> int:
    """CRC32C of ``data`` continuing from ``seed`` (the CRC of what came before)."""
    check_uint("seed", seed, U32_MAX)
    with byte_view(data) as view:
        return int(_crc32c.crc32c(view, value=seed))


def store_seed(store_id: bytes) -> int:
    """The CRC seed of a store's records: ``crc32c(store_id)``."""
    return crc32c(store_id)


def check_payload(payload: object) -> int:
    """The op count of a payload that parses exactly; ValueError otherwise."""
    with byte_view(payload) as view:
        return _payload_op_count(view)


def encode_batch(seed: int, durable_lsn: int, batch: Sequence[tuple[int, int, bytes]]) -> bytes:
    """The records of ``batch`` ((lsn, time_ns, payload) with bytes payloads),
    concatenated: what a group-commit leader writes in one pwrite."""
    return b"".join(
        encode_record(seed, lsn, time_ns, payload, durable_lsn) for lsn, time_ns, payload in batch
    )


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
    with byte_view(payload) as view:
        length = len(view)
        if not MIN_PAYLOAD_SIZE <= length <= MAX_PAYLOAD_SIZE:
            raise ValueError(
                f"payload of {length} bytes is outside [{MIN_PAYLOAD_SIZE}, {MAX_PAYLOAD_SIZE}]"
            )
        _payload_op_count(view)
        header = RECORD_HEADER.pack(0, length, lsn, time_ns, durable_lsn)
        body = header[RECORD_CRC_START:] + view
    crc = _crc32c.crc32c(body, value=seed)
    return crc.to_bytes(4, "little") + body


def scan(buf: object, seed: int, expect_lsn: int, start: int = 0) -> ScanResult:
    """Validate the records of ``buf[start:]``, the first carrying ``expect_lsn``.

    Applies the rules of docs/format.md in order at each record and stops at
    the first that fails (or at a clean end).  Offsets are relative to the
    start of ``buf``.
    """
    check_uint("seed", seed, U32_MAX)
    check_uint("expect_lsn", expect_lsn, U64_MAX)
    with byte_view(buf) as view:
        end = len(view)
        offset = check_start(start, end)
        records: list[RecordInfo] = []
        while True:
            status = _check_record(view, offset, seed, expect_lsn)
            if status is not None:
                return ScanResult(records, status, offset, expect_lsn)
            _, length, lsn, time_ns, durable_lsn = RECORD_HEADER.unpack_from(view, offset)
            body = offset + RECORD_HEADER_SIZE
            op_count = OP_COUNT.unpack_from(view, body)[0]
            size = RECORD_HEADER_SIZE + length
            records.append(RecordInfo(offset, size, lsn, time_ns, op_count, durable_lsn))
            offset = body + length
            expect_lsn = (expect_lsn + 1) & U64_MAX


def scan_span(buf: object, seed: int, expect_lsn: int, start: int = 0) -> ScanSpan:
    """``scan`` without the list of records: how many are valid from
    ``start`` on, and where and why they end."""
    res = scan(buf, seed, expect_lsn, start)
    return ScanSpan(len(res.records), res.status, res.offset, res.next_lsn)


def find_valid(buf: object, seed: int, min_lsn: int, start: int = 0) -> tuple[int, int] | None:
    """(offset, lsn) of the first whole, valid record in ``buf[start:]`` whose
    lsn is in [min_lsn, min_lsn + 2**32), or None.  Used to resynchronise
    after damage: is there anything valid after the stop?"""
    check_uint("seed", seed, U32_MAX)
    check_uint("min_lsn", min_lsn, U64_MAX)
    with byte_view(buf) as view:
        end = len(view)
        for offset in range(check_start(start, end), end - RECORD_HEADER_SIZE + 1):
            _, length, lsn, _, _ = RECORD_HEADER.unpack_from(view, offset)
            if not MIN_PAYLOAD_SIZE <= length <= MAX_PAYLOAD_SIZE:
                continue
            if length > end - offset - RECORD_HEADER_SIZE:
                continue
            if not 0 <= lsn - min_lsn < _LSN_WINDOW:
                continue
            if _check_record(view, offset, seed, lsn) is None:
                return offset, lsn
        return None


def _check_record(view: memoryview, offset: int, seed: int, expect_lsn: int) -> int | None:
    """The status of the record at ``offset`` (docs/format.md rules 1-6, in
    order), or None if it is valid."""
    left = len(view) - offset
    if left < RECORD_HEADER_SIZE:  # rule 1
        return SP_END
    if view[offset : offset + RECORD_HEADER_SIZE] == _ZERO_HEADER:
        return SP_ZERO
    crc, length, lsn, _, _ = RECORD_HEADER.unpack_from(view, offset)
    if not MIN_PAYLOAD_SIZE <= length <= MAX_PAYLOAD_SIZE:  # rule 2
        return SP_BAD_LENGTH
    if length > left - RECORD_HEADER_SIZE:  # rule 3
        return SP_TRUNCATED
    body = offset + RECORD_HEADER_SIZE
    if _crc32c.crc32c(view[offset + RECORD_CRC_START : body + length], value=seed) != crc:
        return SP_BAD_CRC  # rule 4
    if lsn != expect_lsn:  # rule 5
        return SP_BAD_LSN
    try:  # rule 6
        _payload_op_count(view[body : body + length])
    except ValueError:
        return SP_BAD_PAYLOAD
    return None


def _payload_op_count(view: memoryview) -> int:
    return len(decode_payload(view))
