"""Fuzz target ``memtable``: the native memtable against the Python oracle.

The input is a script of steps; each applies one write to both memtables
(put, update, apply_commit of a valid or a fuzzed payload, apply_records of
real records optionally followed by a fuzzed one) or compares one read
(get, lookup, a range, an iterator opened earlier, fold_batches), or
freezes or thaws both.  A fuzzed payload must be refused (ValueError, table
unchanged) exactly when the codec cannot decode it or it holds a key outside
1..511 bytes; otherwise both memtables take its ops in order.  While frozen,
every write must be refused by both (RuntimeError, table unchanged).
"""

from __future__ import annotations

from safepoint._sp_memtable import NativeMemtable

from safepoint._records_common import decode_payload
from safepoint.format import MAX_KEY_SIZE
from safepoint.memtable import Memtable
from safepoint.records import encode_record, encode_writes

POOL = [b"a", b"a\x00", b"b", b"key0000000000001", b"key0000000000002", b"\xff" * 9, b"L" * 511]
MAX_STEPS = 64


class Script:
    """Reads the fuzz input as small numbers and byte strings."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.data)

    def byte(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def key(self) -> bytes:
        b = self.byte()
        if b < 0xC0:
            return POOL[b % len(POOL)]
        return self.raw(b % 12) or b"k"

    def value(self) -> bytes | None:
        b = self.byte()
        return None if b % 5 == 0 else self.raw(b % 24)

    def writes(self) -> dict[bytes, bytes | None]:
        return {self.key(): self.value() for _ in range(self.byte() % 6)}


def _ops_or_none(payload: bytes) -> dict[bytes, bytes | None] | None:
    """The writes of a payload as the native memtable takes them, or None
    if it must refuse the payload."""
    try:
        ops = decode_payload(payload)
    except ValueError:
        return None
    writes: dict[bytes, bytes | None] = {}
    for _, key, value in ops:
        if not 1 <= len(key) <= MAX_KEY_SIZE:
            return None
        writes[key] = value
    return writes


def _refused(fn, *args) -> bool:
    try:
        fn(*args)
    except ValueError as e:
        assert "offset" in str(e), f"message names no offset: {e}"
        return True
    return False


def _frozen_refuses(fn, *args) -> None:
    try:
        fn(*args)
    except RuntimeError as e:
        assert str(e) == "memtable is frozen", e
        return
    raise AssertionError(f"a frozen memtable took {fn.__name__}")


def memtable(data: bytes) -> None:
    """Target: the native memtable answers as the Python oracle does."""
    s = Script(data)
    native, oracle = NativeMemtable(), Memtable()
    iters: list = []
    for _ in range(MAX_STEPS):
        if not s.more():
            break
        op = s.byte() % 10
        frozen = oracle.frozen
        if op <= 2 and frozen:
            before = native.snapshot()
            w = {s.key(): s.value()} if op == 0 else s.writes()
            for mem in (native, oracle):
                _frozen_refuses(mem.apply_commit, w, encode_writes(w))
                _frozen_refuses(mem.update, w)
                for k, v in w.items():
                    _frozen_refuses(mem.put, k, v)
            assert native.snapshot() == before, "a frozen table changed"
        elif op == 0:
            k, v = s.key(), s.value()
            native.put(k, v)
            oracle.put(k, v)
        elif op == 1:
            w = s.writes()
            native.update(w)
            oracle.update(w)
        elif op == 2:
            w = s.writes()
            native.apply_commit(w, encode_writes(w))
            oracle.apply_commit(w, encode_writes(w))
        elif op in (3, 4) and frozen:
            payload = s.raw(s.byte())
            _frozen_refuses(native.apply_commit, {}, payload)
            _frozen_refuses(native.apply_records, payload, 0, len(payload))
        elif op == 3:
            payload = s.raw(s.byte())
            before = native.snapshot()
            want = _ops_or_none(payload)
            assert _refused(native.apply_commit, {}, payload) == (want is None), payload
            if want is None:
                assert native.snapshot() == before, "a refused payload changed the table"
            else:
                oracle.apply_commit(want, payload)
        elif op == 4:
            batches = [s.writes() for _ in range(s.byte() % 4)]
            log = b"".join(
                encode_record(1, i + 1, 0, encode_writes(w)) for i, w in enumerate(batches)
            )
            tail = b""
            if s.byte() & 1:  # a record holding a fuzzed payload
                payload = s.raw(s.byte())
                # The memtable trusts the scan for CRCs and LSNs: zeros will do.
                tail = bytes(4) + len(payload).to_bytes(4, "little") + bytes(24) + payload
            pad = s.raw(s.byte() % 4)
            buf = pad + log + tail
            before = native.snapshot()
            refused = _refused(native.apply_records, buf, len(pad), len(buf))
            fine = (_ops_or_none(tail[32:]) is not None) if tail else True
            assert refused == (not fine), "apply_records judged a span wrongly"
            if refused:
                assert native.snapshot() == before, "a refused span changed the table"
            else:
                oracle.apply_records(buf, len(pad), len(buf))
        elif op == 5:
            k = s.key()
            assert native.get(k, "absent") == oracle.get(k, "absent")
            assert native.lookup(k) == oracle.lookup(k)
        elif op == 6:
            start, stop = s.key(), s.key()
            assert native.snapshot(start, stop) == oracle.snapshot(start, stop)
        elif op == 7 and len(iters) < 4:
            start = s.key() if s.byte() & 1 else None
            iters.append((native.items(start), oracle.items(start)))
        elif op == 8 and iters:
            a, b = iters[s.byte() % len(iters)]
            assert next(a, None) == next(b, None), "iterators disagree"
        elif op == 9:
            b = s.byte()
            if b >= 0xF0:  # rare: most scripts never freeze
                for mem in (native, oracle):
                    mem.thaw() if frozen else mem.freeze()
            else:
                step = b % 8 + 1
                assert list(native.fold_batches(step)) == list(oracle.fold_batches(step))
        assert len(native) == len(oracle)
        assert native.frozen == oracle.frozen
    assert list(native.items()) == list(oracle.items())
    for a, b in iters:
        assert list(a) == list(b), "iterators disagree at the end"
