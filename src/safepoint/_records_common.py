"""What the two record codecs share: result types, argument checks, payloads.

The native codec (``_records_native``) and the pure-Python reference
(``_records_py``) return these same types, so a test can compare their
results with ``==``.  Payload encoding and decoding are plain Python in both:
the hot part of a commit is the CRC, and ``b"".join`` already copies each key
and value exactly once.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Iterable, Mapping
from itertools import chain, repeat
from typing import NamedTuple, cast

import crc32c as _crc32c_package

from .format import (
    MAX_KEY_SIZE,
    MAX_PAYLOAD_SIZE,
    OP_COUNT,
    OP_DELETE,
    OP_HEADER,
    OP_HEADER_SIZE,
    OP_PUT,
    RECORD_HEADER_SIZE,
)

U32_MAX = (1 << 32) - 1
U64_MAX = (1 << 64) - 1

Op = tuple[int, bytes, "bytes | None"]


def crc32c_bytes(data: bytes, seed: int = 0) -> int:  # noqa: ARG001 - documented twin
    """CRC32C of ``bytes``, continuing from ``seed``; no argument checks.

    Both backends use the ``crc32c`` package's C extension here: for the short
    buffers of base-image entries, checked on every read, one call costs about
    0.25 us against 0.45 us through cffi.  Its results equal ``crc32c``'s
    (tests/test_records.py checks).
    """
    return _crc32c_package.crc32c(data, seed)  # type: ignore[no-any-return]


class RecordInfo(NamedTuple):
    """One valid record found by a scan."""

    offset: int  # first byte of the record, relative to the start of the buffer
    length: int  # whole record: RECORD_HEADER_SIZE + payload length
    lsn: int
    time_ns: int
    op_count: int
    durable_lsn: int  # highest LSN on disk when the writer wrote this record


class ScanResult(NamedTuple):
    """The valid records at the start of a buffer, and where and why they end."""

    records: list[RecordInfo]
    status: int  # SP_END / SP_ZERO (clean end) or the first problem, SP_TRUNCATED..
    offset: int  # first byte not consumed: where the scan stopped
    next_lsn: int  # the LSN a record at ``offset`` would have to carry


class ScanSpan(NamedTuple):
    """A scan's outcome without the per-record table: recovery's fast path."""

    record_count: int  # valid records from the start offset on
    status: int  # as ScanResult.status
    offset: int  # as ScanResult.offset: the end of the valid records
    next_lsn: int  # as ScanResult.next_lsn


def check_uint(name: str, value: int, maximum: int) -> int:
    """``value`` as an int in [0, maximum]; TypeError / ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= maximum:
        raise ValueError(f"{name} must be in [0, {maximum}], got {value}")
    return value


def byte_view(buf: object) -> memoryview:
    """A flat unsigned-byte view of any contiguous bytes-like object.

    The caller releases it (``with``) so that an mmap can be closed after.
    """
    view = memoryview(buf)  # type: ignore[arg-type]  # TypeError if not bytes-like
    if view.format == "B" and view.ndim == 1 and view.c_contiguous:
        return view
    if not view.c_contiguous:
        view.release()
        raise TypeError("buffer must be C-contiguous")
    with view:
        return view.cast("B")


def check_start(start: int, length: int) -> int:
    """``start`` checked as an offset into a buffer of ``length`` bytes."""
    return check_uint("start", start, length)


# --- payloads ------------------------------------------------------------------

_ONE_OP = struct.Struct("<IBHI")  # op_count = 1, then the op header
_ONE_OP_LIMIT = MAX_PAYLOAD_SIZE - _ONE_OP.size


def encode_payload(ops: Iterable[Op]) -> bytes:
    """The payload of one record: op_count, then each (kind, key, value) op.

    ``kind`` is OP_PUT (value: bytes-like) or OP_DELETE (value: None).  Keys
    and values are any bytes-like objects.  ValueError for an unknown kind, a
    key longer than MAX_KEY_SIZE or a payload over MAX_PAYLOAD_SIZE;
    TypeError for values that are not bytes-like.
    """
    # The single put of an autocommit is the hot path: one pack, one join.
    if type(ops) is list or type(ops) is tuple:
        if len(ops) == 1:
            kind, key, value = ops[0]
            if (
                kind == OP_PUT
                and type(key) is bytes
                and type(value) is bytes
                and len(key) <= MAX_KEY_SIZE
                and len(value) <= _ONE_OP_LIMIT - len(key)
            ):
                return b"".join((_ONE_OP.pack(1, OP_PUT, len(key), len(value)), key, value))
    parts = [b""]
    size = OP_COUNT.size
    count = 0
    for op in ops:
        kind, key, value = op
        key_len = _nbytes(key, "key")
        if key_len > MAX_KEY_SIZE:
            raise ValueError(f"key of {key_len} bytes is longer than {MAX_KEY_SIZE}")
        if kind == OP_PUT:
            if value is None:
                raise TypeError("a put needs a bytes-like value, not None")
            value_len = _nbytes(value, "value")
            data: tuple[bytes, ...] = (key, value)
        elif kind == OP_DELETE:
            if value is not None:
                raise ValueError("a delete carries no value (pass None)")
            value_len = 0
            data = (key,)
        else:
            raise ValueError(f"unknown op kind {kind!r}")
        size += OP_HEADER_SIZE + key_len + value_len
        if size > MAX_PAYLOAD_SIZE:
            raise ValueError(f"payload is larger than MAX_PAYLOAD_SIZE ({MAX_PAYLOAD_SIZE})")
        parts.append(OP_HEADER.pack(kind, key_len, value_len))
        parts.extend(data)
        count += 1
    parts[0] = OP_COUNT.pack(count)
    return b"".join(parts)


_BYTES_ONLY = {bytes}
# The op count and one op header together: a payload of a single put.
_ONE_PUT = struct.Struct("<IBHI")
assert _ONE_PUT.size == OP_COUNT.size + OP_HEADER_SIZE


def encode_writes(writes: Mapping[bytes, bytes | None]) -> bytes:
    """The payload of a transaction's final writes, in the mapping's order.

    A key whose value is None is a delete, any other a put: equal to
    ``encode_payload`` of those ops, with the same errors.  A transaction of
    puts of ``bytes`` is encoded without a Python step per op (map, join
    and set run in C); anything else takes ``encode_payload``'s loop.
    """
    if len(writes) == 1:
        # db.put: one struct call and one join, the commonest transaction.
        ((key, value),) = writes.items()
        if type(key) is bytes and type(value) is bytes and len(key) <= MAX_KEY_SIZE:
            size = _ONE_PUT.size + len(key) + len(value)
            if size <= MAX_PAYLOAD_SIZE:
                return b"".join((_ONE_PUT.pack(1, OP_PUT, len(key), len(value)), key, value))
    keys = list(writes)
    values = cast("list[bytes]", list(writes.values()))  # checked just below
    count = len(keys)
    if not count or set(map(type, keys)) != _BYTES_ONLY or set(map(type, values)) != _BYTES_ONLY:
        return encode_payload(
            [(OP_PUT, k, v) if v is not None else (OP_DELETE, k, None) for k, v in writes.items()]
        )
    key_lens = set(map(len, keys))
    value_lens = set(map(len, values))
    if max(key_lens) > MAX_KEY_SIZE:
        raise ValueError(f"key of {max(key_lens)} bytes is longer than {MAX_KEY_SIZE}")
    if len(key_lens) == 1 and len(value_lens) == 1:
        # Every op has the same header (bulk loads, fixed-size records).
        key_len, value_len = next(iter(key_lens)), next(iter(value_lens))
        size = OP_COUNT.size + count * (OP_HEADER_SIZE + key_len + value_len)
        headers: Iterable[bytes] = repeat(OP_HEADER.pack(OP_PUT, key_len, value_len), count)
    else:
        size = OP_COUNT.size + count * OP_HEADER_SIZE + sum(map(len, keys)) + sum(map(len, values))
        headers = map(OP_HEADER.pack, repeat(OP_PUT), map(len, keys), map(len, values))
    if size > MAX_PAYLOAD_SIZE:
        raise ValueError(f"payload is larger than MAX_PAYLOAD_SIZE ({MAX_PAYLOAD_SIZE})")
    ops = chain.from_iterable(zip(headers, keys, values, strict=True))
    return b"".join(chain((OP_COUNT.pack(count),), ops))


def _nbytes(obj: object, what: str) -> int:
    if type(obj) is bytes:
        return len(obj)
    if isinstance(obj, str):
        raise TypeError(f"{what} must be bytes-like, not str (encode it first)")
    try:
        with memoryview(obj) as view:  # type: ignore[arg-type]
            if not view.c_contiguous:
                raise TypeError(f"{what} must be a C-contiguous bytes-like object")
            return view.nbytes
    except TypeError:
        raise TypeError(f"{what} must be bytes-like, not {type(obj).__name__}") from None


def decode_payload(payload: object) -> list[tuple[int, bytes, bytes | None]]:
    """The ops of a payload as (kind, key, value) tuples; value None for a delete.

    ValueError if the payload does not parse exactly (docs/format.md).
    """
    with byte_view(payload) as view:
        end = len(view)
        if end < OP_COUNT.size:
            raise ValueError(f"payload of {end} bytes has no op count")
        (count,) = OP_COUNT.unpack_from(view, 0)
        pos = OP_COUNT.size
        ops: list[tuple[int, bytes, bytes | None]] = []
        unpack = OP_HEADER.unpack_from
        for index in range(count):
            if end - pos < OP_HEADER_SIZE:
                raise ValueError(f"op {index} of {count}: header runs past the payload")
            kind, key_len, value_len = unpack(view, pos)
            pos += OP_HEADER_SIZE
            if kind == OP_DELETE and value_len:
                raise ValueError(f"op {index}: a delete with a {value_len}-byte value")
            if kind != OP_PUT and kind != OP_DELETE:
                raise ValueError(f"op {index}: unknown kind {kind}")
            if key_len > MAX_KEY_SIZE:
                raise ValueError(f"op {index}: key of {key_len} bytes")
            if key_len + value_len > end - pos:
                raise ValueError(f"op {index}: key or value runs past the payload")
            key = bytes(view[pos : pos + key_len])
            pos += key_len
            if kind == OP_PUT:
                ops.append((kind, key, bytes(view[pos : pos + value_len])))
            else:
                ops.append((kind, key, None))
            pos += value_len
        if pos != end:
            raise ValueError(f"{end - pos} bytes left over after {count} ops")
        return ops


# --- replay ----------------------------------------------------------------------

# A record's length, op count and first op header, read in one unpack.
_RECORD_FIRST_OP = struct.Struct("<4xI24xIBHI")
_FIRST_OP_END = _RECORD_FIRST_OP.size  # 32 + 4 + 7 = 43: the first key starts here
_OP_BYTES_START = RECORD_HEADER_SIZE  # op count and first op header: 11 bytes from here
_RUN_MIN = 4  # records (or ops) of one shape worth decoding as a run
_RUN_COOLDOWN = 8  # records decoded one by one after a run attempt fails
_RUN_CHUNK = 4096  # items per regex match (see _run_end)
_runs: dict[tuple[int, bytes, int], re.Pattern[bytes]] = {}
_pairs: dict[tuple[int, int, int], struct.Struct] = {}


def _run_pattern(lead: int, shape: bytes, size: int) -> re.Pattern[bytes]:
    """A pattern matching consecutive items of ``size`` bytes that each hold
    ``shape`` after ``lead`` bytes; ``match().end()`` is where the run ends.
    Cached: a log has few shapes."""
    key = (lead, shape, size)
    pattern = _runs.get(key)
    if pattern is None:
        if len(_runs) > 256:
            _runs.clear()
        rest = size - lead - len(shape)
        item = b".{%d}" % lead + re.escape(shape) + b".{%d}" % rest
        pattern = _runs[key] = re.compile(b"(?:" + item + b")*", re.DOTALL)
    return pattern


def _run_end(pattern: re.Pattern[bytes], buf: object, pos: int, stop: int, size: int) -> int:
    """Where the run of ``size``-byte items matched by ``pattern`` from
    ``pos`` ends (at most ``stop``).  Matched a bounded number of items at a
    time: the regex engine's backtracking stack grows with every repetition
    of a group, and one match over 100,000 items costs three times as much
    per item as matches over 4,096."""
    while True:
        limit = pos + min((stop - pos) // size, _RUN_CHUNK) * size
        match = pattern.match(buf, pos, limit)  # type: ignore[call-overload]
        assert match is not None  # a starred group matches, if only emptily
        end: int = match.end()
        if end != limit or end == pos:
            return end
        pos = end


def _pair_struct(skip: int, key_len: int, value_len: int) -> struct.Struct:
    """Unpacks (key, value) from an item that starts ``skip`` bytes before
    its key.  Cached like the patterns."""
    key = (skip, key_len, value_len)
    st = _pairs.get(key)
    if st is None:
        if len(_pairs) > 256:
            _pairs.clear()
        st = _pairs[key] = struct.Struct(f"<{skip}x{key_len}s{value_len}s")
    return st


def apply_records(buf: object, start: int, stop: int, table: dict[bytes, bytes | None]) -> None:
    """Apply every op of the records in ``buf[start:stop]`` to ``table``, in
    order: ``table[key] = value`` for a put, ``None`` for a delete.

    The records must be whole and valid, as ``scan`` (or ``scan_span``)
    reported them: their CRCs, LSNs and payloads are not checked again.
    Each key and value is copied out of ``buf`` exactly once.

    Recovery's hot loop.  Logs are mostly runs of records of one shape (the
    same key and value sizes: an autocommit loop, a training step), and a
    run is found and applied without a Python step per record.  Its records
    carry the same 11 bytes after the record header (op count 1, PUT, key
    and value lengths); since the scan checked that every payload parses
    exactly, those bytes fix the record's size, so a regular expression
    matching them at that stride (``(?:.{32}H.{n})*``) finds where the run
    ends, and ``dict.update`` over an ``iter_unpack`` of the keys and
    values stores it.  Anything else is decoded record by record.
    """
    data = buf if isinstance(buf, (bytes, mmap.mmap)) else bytes(buf)  # type: ignore[call-overload]
    head = _RECORD_FIRST_OP.unpack_from
    cooldown = 0
    with memoryview(data) as view:
        pos = start
        while pos < stop:
            if stop - pos < _FIRST_OP_END:
                # The last record, too short for an op: an empty transaction.
                _apply_payload(view, pos + RECORD_HEADER_SIZE, stop, table)
                break
            length, count, kind, key_len, value_len = head(data, pos)
            size = RECORD_HEADER_SIZE + length
            single_put = (
                count == 1 and kind == OP_PUT and size == _FIRST_OP_END + key_len + value_len
            )
            if single_put and not cooldown and stop - pos >= _RUN_MIN * size:
                shape = data[pos + _OP_BYTES_START : pos + _FIRST_OP_END]
                pattern = _run_pattern(RECORD_HEADER_SIZE, shape, size)
                run = (_run_end(pattern, data, pos, stop, size) - pos) // size
                if run >= _RUN_MIN:
                    end = pos + run * size
                    pairs = _pair_struct(_FIRST_OP_END, key_len, value_len)
                    table.update(pairs.iter_unpack(view[pos:end]))
                    pos = end
                    continue
                cooldown = _RUN_COOLDOWN
            if cooldown:
                cooldown -= 1
            if single_put:
                key_end = pos + _FIRST_OP_END + key_len
                table[data[pos + _FIRST_OP_END : key_end]] = data[key_end : pos + size]  # type: ignore[index]
            else:
                _apply_payload(view, pos + RECORD_HEADER_SIZE, pos + size, table)
            pos += size


def _apply_payload(
    view: memoryview, start: int, stop: int, table: dict[bytes, bytes | None]
) -> None:
    """Apply one record's payload, ``view[start:stop]``; a run of puts of
    one shape (a bulk load's transaction) is found and stored in C too."""
    count = OP_COUNT.unpack_from(view, start)[0]
    pos = start + OP_COUNT.size
    if count >= _RUN_MIN:
        kind, key_len, value_len = OP_HEADER.unpack_from(view, pos)
        stride = OP_HEADER_SIZE + key_len + value_len
        if kind == OP_PUT and count * stride == stop - pos:
            shape = view[pos : pos + OP_HEADER_SIZE].tobytes()
            if _run_end(_run_pattern(0, shape, stride), view, pos, stop, stride) == stop:
                pairs = _pair_struct(OP_HEADER_SIZE, key_len, value_len)
                table.update(pairs.iter_unpack(view[pos:stop]))
                return
    for _, key, value in decode_payload(view[start:stop]):
        table[key] = value
