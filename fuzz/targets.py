"""Fuzz targets: plain functions of one byte string.

Each target raises (AssertionError or the escaping exception) on a finding
and returns None otherwise.  The atheris wrappers (fuzz_<target>.py) feed
them mutated inputs; tests/test_fuzz_corpus.py replays fuzz/corpus/<target>/
through them in CI.  Targets:

* ``scan``      the segment scanner: the native core and the pure-Python
                reference agree; every record either accepts passes an
                independent CRC32C check, has the expected LSN and a payload
                that parses; ``find_valid`` agrees too.
* ``payload``   the payload decoder: both codecs accept the same payloads
                with the same op count, and decode-then-encode gives back the
                same bytes; the writes they hold are checked and encoded
                alike by _sp_batch and its Python twins.
* ``recovery``  a fresh store whose log segment (valid header) holds the
                fuzzed bytes: open succeeds or raises safepoint.Error, never
                anything else; a second open sees the same state.
* ``manifest``  snapshot manifests: decoding, SnapshotInfo and verification
                raise only CorruptionError.
* ``wal_engine`` a script of appends (valid and fuzzed payloads), flushes
                and syncs run on the native group-commit engine and on the
                Python oracle (wal.py): each step ends alike, and both logs
                hold the same records in the same segments.
* ``memtable``  a script of writes (valid and fuzzed payloads and record
                spans) and reads run on the native memtable and the Python
                oracle: every answer equal, every malformed input refused
                with the table unchanged (fuzz/memtable_target.py).

Half of the inputs of ``scan`` and ``recovery`` are read as a recipe for a
valid log (records with correct CRCs) followed by damage, so the fuzzer
reaches past the CRC check instead of stopping at it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import crc32c as crc32c_package
from memtable_target import memtable  # fuzz/memtable_target.py, beside this file

import safepoint
from safepoint import _records_native as native
from safepoint import _records_py as reference
from safepoint import _sp_batch
from safepoint._records_common import decode_payload, encode_payload
from safepoint.errors import CorruptionError
from safepoint.format import (
    CLEAN_ENDS,
    MAX_KEY_SIZE,
    OP_DELETE,
    OP_PUT,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SP_OK,
    segment_name,
)
from safepoint.fs import DEFAULT_FS
from safepoint.segment import encode_header
from safepoint.snapshot_files import (
    decode_checked_json,
    encode_checked_json,
    snapshot_info,
    verify_snapshot,
)
from safepoint.testing.wal_contents import log_contents
from safepoint.wal import WalWriter

U64 = (1 << 64) - 1
logging.getLogger("safepoint").setLevel(logging.CRITICAL)


# --- building logs from a recipe ---------------------------------------------------


def build_log(recipe: bytes, seed: int, first_lsn: int) -> bytes:
    """Valid records drawn from ``recipe``, then damage drawn from what is left.

    Recipe: a record count, then per record an op count and per op a key
    length, a value length and their bytes; then 3-byte damage instructions
    (kind, 16-bit position): flip a bit, zero 8 bytes, cut the log there, or
    insert a byte.
    """
    out = bytearray()
    pos = 1
    lsn = first_lsn
    count = recipe[0] % 7 if recipe else 0
    for _ in range(count):
        if pos >= len(recipe):
            break
        n_ops = recipe[pos] % 4
        pos += 1
        ops: list[tuple[int, bytes, bytes | None]] = []
        for _ in range(n_ops):
            if pos + 2 > len(recipe):
                break
            key_len, value_len = recipe[pos] % 24 + 1, recipe[pos + 1] % 80
            pos += 2
            key = recipe[pos : pos + key_len] or b"k"
            pos += key_len
            value = recipe[pos : pos + value_len]
            pos += value_len
            ops.append((OP_DELETE, key, None) if value_len % 5 == 0 else (OP_PUT, key, value))
        payload = encode_payload(ops)
        durable = max(0, lsn - 1 - recipe[min(pos, len(recipe)) - 1] % 3)
        out += native.encode_record(
            seed, lsn & U64, lsn & 0xFFFF, payload, durable_lsn=durable & U64
        )
        lsn += 1
    while pos + 3 <= len(recipe) and out:
        kind, where = (
            recipe[pos] % 4,
            int.from_bytes(recipe[pos + 1 : pos + 3], "little") % len(out),
        )
        pos += 3
        if kind == 0:
            out[where] ^= 1 << (recipe[pos - 1] % 8)
        elif kind == 1:
            out[where : where + 8] = bytes(len(out[where : where + 8]))
        elif kind == 2:
            del out[where:]
        else:
            out.insert(where, recipe[pos - 2])
        if not out:
            break
    return bytes(out)


# --- scan ----------------------------------------------------------------------


def check_scan(buf: bytes, seed: int, expect: int, start: int, res: object) -> None:
    """Every record a scan accepted is whole, CRC-valid (by the crc32c
    package, not the codec under test), numbered in order and parseable."""
    records, status, offset, next_lsn = res  # type: ignore[misc]
    assert status != SP_OK, "a scan must end with a stop status"
    pos, lsn = start, expect
    for r in records:
        assert r.offset == pos, f"record at {r.offset}, expected {pos}"
        assert r.offset + r.length <= len(buf), "record runs past the buffer"
        crc, length, rec_lsn, _, durable = RECORD_HEADER.unpack_from(buf, r.offset)
        assert r.length == RECORD_HEADER_SIZE + length
        body = buf[r.offset + 4 : r.offset + r.length]
        assert crc32c_package.crc32c(body, value=seed) == crc, f"bad CRC accepted at {r.offset}"
        assert rec_lsn == lsn == r.lsn and durable == r.durable_lsn
        assert (
            len(decode_payload(buf[r.offset + RECORD_HEADER_SIZE : r.offset + r.length]))
            == r.op_count
        )
        pos += r.length
        lsn = (lsn + 1) & U64
    assert offset == pos and next_lsn == lsn
    if status in CLEAN_ENDS:
        left = buf[offset : offset + RECORD_HEADER_SIZE]
        assert len(left) < RECORD_HEADER_SIZE or not any(left), "clean end before a header"


def scan(data: bytes) -> None:
    """Target: the two scanners agree and accept only valid records."""
    if len(data) < 14:
        return
    seed = int.from_bytes(data[0:4], "little")
    expect = int.from_bytes(data[4:12], "little")
    mode, shift = data[12], data[13]
    buf = data[14:]
    if mode & 1:
        expect = max(1, expect % 1000)
        buf = build_log(buf, seed, expect)
    start = shift % (len(buf) + 1) if mode & 2 else 0
    a = native.scan(buf, seed, expect, start)
    b = reference.scan(buf, seed, expect, start)
    assert a == b, f"native {a} != reference {b}"
    check_scan(buf, seed, expect, start, a)
    fa = native.find_valid(buf, seed, expect, start)
    fb = reference.find_valid(buf, seed, expect, start)
    assert fa == fb, f"find_valid: native {fa} != reference {fb}"
    if fa is not None:
        off, lsn = fa
        res = reference.scan(buf, seed, lsn, off)
        assert res.records, f"find_valid found a record at {off} that a scan rejects"
        check_scan(buf, seed, lsn, off, res)


# --- payload ---------------------------------------------------------------------


def _outcome(fn: Callable[[Any], object], data: object) -> object:
    try:
        return fn(data)
    except ValueError:
        return "ValueError"


def payload(data: bytes) -> None:
    """Target: both codecs judge a payload alike; valid ones round-trip."""
    a, b = _outcome(native.check_payload, data), _outcome(reference.check_payload, data)
    assert a == b, f"check_payload: native {a!r} != reference {b!r}"
    if isinstance(a, str):
        return
    ops = decode_payload(data)
    assert len(ops) == a
    assert encode_payload(ops) == data, "decode then encode changed the payload"
    if len(data) >= 4:
        rec = native.encode_record(7, 1, 2, data, durable_lsn=0)
        assert rec == reference.encode_record(7, 1, 2, data, durable_lsn=0)
    _writes_agree(ops)


def _writes_agree(ops: list[tuple[int, bytes, bytes | None]]) -> None:
    """A transaction's writes built from decoded ops: the C checker and
    encoders (_sp_batch) agree with their Python twins."""
    pairs = [(k, v) for kind, k, v in ops if kind == OP_PUT and v is not None]
    valid = all(0 < len(k) <= MAX_KEY_SIZE for k, _ in pairs)
    got = _sp_batch.bytes_pairs(pairs)
    assert got == (dict(pairs) if valid else None), "bytes_pairs != dict(pairs)"
    if got is not None:
        assert list(got.items()) == list(dict(pairs).items()), "bytes_pairs changed the order"
    encoded = _sp_batch.encode_pairs(pairs)
    if valid and pairs:
        assert encoded == encode_payload([(OP_PUT, k, v) for k, v in pairs]), "encode_pairs"
    else:
        assert encoded is None, "encode_pairs accepted what it must decline"
    writes = {k: v if kind == OP_PUT else None for kind, k, v in ops}
    a, b = _outcome(native.encode_writes, writes), _outcome(reference.encode_writes, writes)
    assert a == b, f"encode_writes: native {a!r} != reference {b!r}"


# --- recovery -------------------------------------------------------------------------

_template: tuple[str, bytes] | None = None
MODES = ("tolerate_tail", "strict", "point_in_time")


def _store_template() -> tuple[str, bytes]:
    """A fresh store's directory without its log, made once per process."""
    global _template
    if _template is None:
        root = os.path.join(tempfile.mkdtemp(prefix="safepoint-fuzz-"), "template")
        with safepoint.open(root, segment_bytes=4096) as db:
            store_id = db.store_id
        shutil.rmtree(os.path.join(root, "wal"))
        os.mkdir(os.path.join(root, "wal"))
        _template = (root, store_id)
    return _template


def _state(root: str, mode: str) -> dict[bytes, bytes]:
    with safepoint.open(root, recovery=mode, segment_bytes=4096) as db:
        return dict(db.items())


def recovery(data: bytes) -> None:
    """Target: a store whose segment holds fuzzed bytes opens or raises
    safepoint.Error, and opens the same way a second time."""
    if not data:
        return
    template, store_id = _store_template()
    root = os.path.join(os.path.dirname(template), "store")
    if os.path.exists(root):
        shutil.rmtree(root)
    shutil.copytree(template, root)
    mode = MODES[data[0] % 3]
    body = data[1:]
    if data[0] & 4:
        body = build_log(body, safepoint.records.store_seed(store_id), 1)
    segment = encode_header(store_id, 1) + body
    if data[0] & 8:  # the preallocated zero tail
        segment += bytes(max(0, 4096 - len(segment)))
    with open(os.path.join(root, "wal", segment_name(1)), "wb") as f:
        f.write(segment)
    try:
        first = _state(root, mode)
    except safepoint.Error:
        return
    second = _state(root, mode)
    assert first == second, "a second open saw a different state"


# --- manifest --------------------------------------------------------------------------

_snap_dir: str | None = None


def manifest(data: bytes) -> None:
    """Target: a snapshot manifest (and its data file) either checks out or
    raises CorruptionError."""
    global _snap_dir
    if not data:
        return
    text = data[1:]
    if data[0] & 1:
        # Give a parseable body a correct manifest CRC, so the checks after
        # the CRC see fuzzed structure.
        try:
            body = json.loads(text)
        except (ValueError, RecursionError):
            body = None
        if isinstance(body, dict):
            body.pop("manifest_crc32c", None)
            try:
                text = encode_checked_json(body)
            except (ValueError, RecursionError):
                return
    try:
        m = decode_checked_json(text, "snapshots/s/manifest.json")
    except CorruptionError:
        return
    try:
        snapshot_info("s", m, len(text))
    except CorruptionError:
        pass
    if _snap_dir is None:
        _snap_dir = os.path.join(tempfile.mkdtemp(prefix="safepoint-fuzz-"), "s")
        os.mkdir(_snap_dir)
    with open(os.path.join(_snap_dir, "manifest.json"), "wb") as f:
        f.write(text)
    with open(os.path.join(_snap_dir, "data.mdb"), "wb") as f:
        f.write(data[:64])
    try:
        verify_snapshot(DEFAULT_FS, _snap_dir)
    except CorruptionError:
        pass


# --- wal_engine -------------------------------------------------------------------------

_engine_root: str | None = None
ENGINE_STORE_ID = bytes(range(16))


def _run_engine(engine: str, script: bytes) -> tuple[list[str], object]:
    global _engine_root
    if _engine_root is None:
        _engine_root = tempfile.mkdtemp(prefix="safepoint-fuzz-")
    wal_dir = os.path.join(_engine_root, engine)
    if os.path.exists(wal_dir):
        shutil.rmtree(wal_dir)
    os.mkdir(wal_dir)
    w = WalWriter(
        DEFAULT_FS,
        wal_dir,
        ENGINE_STORE_ID,
        next_lsn=1,
        segments=[],
        tail_offset=None,
        segment_bytes=4096,
        sync="none",
        engine=engine,
    )
    outcomes: list[str] = []
    i, lsn = 0, 0
    try:
        while i < len(script) and len(outcomes) < 40:
            op, i = script[i], i + 1
            size = script[i] * 8 if i < len(script) else 0
            i += 1
            if op % 4 == 0:  # a valid one-put payload of a fuzzed size
                body = encode_payload([(OP_PUT, bytes([op]), script[i : i + size])])
            elif op % 4 == 1:  # fuzzed bytes as the payload
                body, i = script[i : i + size], i + size
            elif op % 4 == 2:
                if lsn:
                    w.flush(lsn, durable=bool(op & 4))
                outcomes.append("flush")
                continue
            else:
                w.sync()
                outcomes.append("sync")
                continue
            try:
                lsn = w.append(body)
                outcomes.append(f"append {lsn}")
            except ValueError:  # the codecs word it differently: the type is the contract
                outcomes.append("ValueError")
    finally:
        w.close()
    return outcomes, log_contents(wal_dir, ENGINE_STORE_ID)


def wal_engine(data: bytes) -> None:
    """Target: the native group-commit engine does what its oracle does."""
    a = _run_engine("native", data)
    b = _run_engine("python", data)
    assert a[0] == b[0], f"outcomes differ: native {a[0]} python {b[0]}"
    assert a[1] == b[1], "the two engines wrote different logs"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "scan": scan,
    "payload": payload,
    "recovery": recovery,
    "manifest": manifest,
    "wal_engine": wal_engine,
    "memtable": memtable,
}
