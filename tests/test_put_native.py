"""safepoint._sp_put.StorePut (Store.put on the native backend) against its
pure-Python oracle, ``Store._put_py``.

The same puts through the C method and through the oracle, on two stores,
must leave the same contents, the same records in the log and the same
counters; every case the C declines (arguments, codec, store state, a
transaction of the calling thread, a rollover) must end in the oracle's
answer or error; failures after the record is queued (a failed engine, a
failed write, a frozen memtable) must end as the oracle's do.  Real files
throughout.  On SAFEPOINT_BACKEND=python ``Store.put`` is the oracle
itself, so the comparisons hold trivially and the C-only tests check that.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import safepoint
from helpers import segment_records, segments
from safepoint import _sp_put, records
from safepoint import store as store_mod
from safepoint.errors import StoreFailedError
from safepoint.format import MAX_KEY_SIZE, RECORD_HEADER_SIZE
from safepoint.store import Store
from safepoint.testing import FaultFS
from safepoint.values import BytesCodec

NATIVE = safepoint.BACKEND == "native"


def native_only(test):
    """A test of the C method's own behaviour.  On SAFEPOINT_BACKEND=python
    ``Store.put`` is the oracle itself, and that is what the test checks
    there instead (no test is skipped)."""
    if NATIVE:
        return test

    @functools.wraps(test)
    def put_is_the_oracle(*args, **kwargs):
        assert Store.put is Store._put_py

    return put_is_the_oracle


keys = st.binary(min_size=1, max_size=12)
values = st.binary(max_size=300)


def outcome(fn, *args, **kwargs):
    """(value, None) or (None, (exception type, message))."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return None, (type(exc), str(exc))


def put_outcome(put, db, *args):
    """outcome of ``put(db, *args)``, the store's path in a message made
    "STORE" (twin stores live in two directories)."""
    value, error = outcome(put, db, *args)
    return value, error and (error[0], error[1].replace(str(db.path), "STORE"))


def oracle_put(db, key, value):
    return Store._put_py(db, key, value)


def log_records(path) -> list[tuple[int, int, bytes]]:
    """(lsn, durable_lsn, payload) of every record in a closed store's log."""
    out = []
    for seg in segments(path):
        data = seg.read_bytes()
        for r in segment_records(seg):
            payload = data[r.offset + RECORD_HEADER_SIZE : r.offset + r.length]
            out.append((r.lsn, r.durable_lsn, payload))
    return out


def counters(db) -> dict[str, object]:
    """The stats() numbers both paths must agree on."""
    s = db.stats()
    keep = ("lsn", "durable_lsn", "wal_segments", "wal_bytes_since_checkpoint")
    return {k: s[k] for k in keep} | {"bytes_appended": db._wal.bytes_appended}


def spy_put():
    """A StorePut like Store.put's whose fallback records each call it gets."""
    calls = []

    def fallback(db, *args, **kwargs):
        calls.append(args)
        return Store._put_py(db, *args, **kwargs)

    return store_mod._c_put(fallback), calls


def test_store_put_is_the_c_method_on_the_native_backend():
    if NATIVE:
        assert type(Store.__dict__["put"]) is _sp_put.StorePut
        assert Store._put_py is not Store.put
    else:  # SAFEPOINT_BACKEND=python: the oracle is the method
        assert Store.put is Store._put_py


@settings(max_examples=40, deadline=None)
@given(puts=st.lists(st.tuples(keys, values), min_size=1, max_size=60))
def test_puts_leave_the_same_state_records_and_counters(tmp_path_factory, puts):
    """Small segments, so that some puts roll over (the oracle's) between
    puts the C makes."""
    root = tmp_path_factory.mktemp("put")
    opts = {"sync": "always", "segment_bytes": 4096, "checkpoint_bytes": None}
    with safepoint.open(root / "c", **opts) as c, safepoint.open(root / "py", **opts) as py:
        for k, v in puts:
            c.put(k, v)
            oracle_put(py, k, v)
            assert counters(c) == counters(py)
        assert dict(c.items()) == dict(py.items()) == dict(puts)
    assert log_records(root / "c") == log_records(root / "py")
    assert [lsn for lsn, _, _ in log_records(root / "c")] == list(range(1, len(puts) + 1))
    with safepoint.open(root / "c", **opts) as c:
        assert dict(c.items()) == dict(puts)


@settings(max_examples=60, deadline=None)
@given(k=st.binary(min_size=1, max_size=MAX_KEY_SIZE), v=st.binary(max_size=2000))
def test_the_payload_is_byte_identical_to_encode_writes(tmp_path_factory, k, v):
    path = tmp_path_factory.mktemp("payload") / "s.sp"
    with safepoint.open(path, sync="none", checkpoint_bytes=None) as db:
        db.put(k, v)
    ((_, _, payload),) = log_records(path)
    assert payload == records.encode_writes({k: v})
    if records.encode_writes_or_none is not None:
        assert payload == records.encode_writes_or_none({k: v})


@native_only
def test_the_common_case_never_reaches_the_fallback(tmp_path):
    put, calls = spy_put()
    with safepoint.open(tmp_path / "s.sp", checkpoint_bytes=None) as db:
        for i in range(50):
            put(db, b"k%d" % i, b"v" * i)
        assert calls == []
        assert dict(db.items()) == {b"k%d" % i: b"v" * i for i in range(50)}
        assert db.stats()["lsn"] == db.stats()["durable_lsn"] == 50


def test_sync_none_and_interval_puts_are_written_not_synced(tmp_path):
    for mode in ("none", "interval"):
        with safepoint.open(tmp_path / mode, sync=mode, checkpoint_bytes=None) as db:
            for i in range(20):
                db.put(b"k%d" % i, b"v")
            assert db.stats()["lsn"] == 20
        with safepoint.open(tmp_path / mode) as db:
            assert len(db) == 20


def test_crossing_half_the_segment_starts_preparing_the_next(tmp_path):
    with safepoint.open(tmp_path / "s.sp", segment_bytes=1 << 16, checkpoint_bytes=None) as db:
        assert not db._wal._prepare_requested
        while db._wal._end * 2 <= db._wal._alloc:
            db.put(os.urandom(8), b"v" * 500)
        assert db._wal._prepare_requested


def test_puts_across_many_segments_survive_a_reopen(tmp_path):
    """Rollovers, and values bigger than a segment (an empty segment is
    extended to fit them), between puts the C makes."""
    path = tmp_path / "s.sp"
    model = {}
    with safepoint.open(path, segment_bytes=4096, checkpoint_bytes=None) as db:
        for i in range(300):
            v = os.urandom(9000 if i % 97 == 0 else i % 200)
            db.put(b"k%04d" % (i % 150), v)
            model[b"k%04d" % (i % 150)] = v
        assert db.stats()["wal_segments"] > 5
    with safepoint.open(path) as db:
        assert dict(db.items()) == model
        assert db.stats()["lsn"] == 300


def test_eight_threads_lose_no_put_and_leave_dense_lsns(tmp_path):
    path = tmp_path / "s.sp"
    n = 150
    with safepoint.open(path, segment_bytes=1 << 14, checkpoint_bytes=None) as db:

        def work(t: int) -> None:
            for i in range(n):
                db.put(b"t%d-%04d" % (t, i), b"%d" % (t * n + i) * 10)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert db.stats()["lsn"] == db.stats()["durable_lsn"] == 8 * n
    assert [lsn for lsn, _, _ in log_records(path)] == list(range(1, 8 * n + 1))
    with safepoint.open(path) as db:
        assert dict(db.items()) == {
            b"t%d-%04d" % (t, i): b"%d" % (t * n + i) * 10 for t in range(8) for i in range(n)
        }


def test_a_put_waits_for_another_threads_transaction(tmp_path):
    with safepoint.open(tmp_path / "s.sp", checkpoint_bytes=None) as db:
        entered, done = threading.Event(), []
        with db.transaction() as txn:
            txn.put(b"a", b"txn")
            t = threading.Thread(
                target=lambda: (entered.set(), db.put(b"a", b"put"), done.append(1))
            )
            t.start()
            entered.wait()
            time.sleep(0.05)
            assert done == []  # blocked on the write lock the transaction holds
        t.join()
        assert db[b"a"] == b"put"
        assert db.stats()["lsn"] == 2


def test_a_checkpoint_is_triggered_by_checkpoint_bytes(tmp_path):
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=4096) as db:
        for i in range(100):
            db.put(b"k%03d" % i, b"v" * 100)
        assert db._ckpt_bytes_mark > 0
        deadline = time.monotonic() + 10
        while db.stats()["checkpoint_lsn"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert db.stats()["checkpoint_lsn"] > 0
        assert db[b"k099"] == b"v" * 100


def test_help_and_signature_are_the_methods():
    assert Store.put.__doc__ == Store._put_py.__doc__
    assert inspect.signature(Store.put) == inspect.signature(Store._put_py)


def test_a_bound_put_and_the_unbound_descriptor_work(tmp_path):
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None) as db:
        put = db.put
        put(b"a", b"1")
        Store.put(db, b"b", b"2")
        db[b"c"] = b"3"
        assert dict(db.items()) == {b"a": b"1", b"b": b"2", b"c": b"3"}


def test_no_reference_is_leaked(tmp_path):
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None) as db:
        k, v = b"key", b"v" * 100
        db.put(k, v)
        before = sys.getrefcount(k), sys.getrefcount(v), sys.getrefcount(db)
        for _ in range(2000):
            db.put(k, v)
        assert (sys.getrefcount(k), sys.getrefcount(v), sys.getrefcount(db)) == before


# --- Declined cases -------------------------------------------------------------------


class SubStore(Store):
    pass


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("a", b"1"), {}),  # a str key: converted by the oracle
        ((b"", b"1"), {}),  # empty: the oracle's ValueError
        ((b"x" * (MAX_KEY_SIZE + 1), b"1"), {}),  # too long
        ((3, b"1"), {}),  # not a key at all
        ((b"a", "text"), {}),  # not bytes: the bytes codec's TypeError
        ((b"a", bytearray(b"ba")), {}),  # bytes-like: encoded by the oracle
        ((b"a", memoryview(b"mv")), {}),
        ((b"a",), {}),  # too few
        ((b"a", b"1", b"2"), {}),  # too many
        ((), {"key": b"a", "value": b"kw"}),  # keywords
        ((b"a",), {"value": b"kw"}),
    ],
)
def test_declined_arguments_end_in_the_oracles_answer_or_error(tmp_path, args, kwargs):
    with (
        safepoint.open(tmp_path / "c", checkpoint_bytes=None) as c,
        safepoint.open(tmp_path / "py", checkpoint_bytes=None) as py,
    ):
        assert outcome(c.put, *args, **kwargs) == outcome(Store._put_py, py, *args, **kwargs)
        assert dict(c.items()) == dict(py.items())
        assert counters(c) == counters(py)


@native_only
@pytest.mark.parametrize(
    "args", [("a", b"1"), (b"", b"1"), (b"a", bytearray(b"1")), (b"a",), (b"a", b"1", b"2")]
)
def test_declined_arguments_go_to_the_fallback(tmp_path, args):
    put, calls = spy_put()
    with safepoint.open(tmp_path / "s.sp", checkpoint_bytes=None) as db:
        outcome(put, db, *args)
        assert calls == [args]


def test_a_closed_store_raises_the_oracles_error(tmp_path):
    db = safepoint.open(tmp_path / "s.sp", checkpoint_bytes=None)
    db.close()
    got = outcome(db.put, b"a", b"1")
    assert got == outcome(Store._put_py, db, b"a", b"1")
    assert got[1][0] is safepoint.ClosedError


def test_a_readonly_store_raises_the_oracles_error(tmp_path):
    safepoint.open(tmp_path / "s.sp").close()
    with safepoint.open(tmp_path / "s.sp", readonly=True) as db:
        got = outcome(db.put, b"a", b"1")
        assert got == outcome(Store._put_py, db, b"a", b"1")
        assert got[1][0] is safepoint.ReadOnlyError


def test_a_failed_store_raises_the_oracles_error(tmp_path):
    with safepoint.open(tmp_path / "s.sp", checkpoint_bytes=None) as db:
        db._failed = OSError(errno.EIO, "simulated")
        got = outcome(db.put, b"a", b"1")
        assert got == outcome(Store._put_py, db, b"a", b"1")
        assert got[1][0] is StoreFailedError
        db._failed = None


def test_a_put_inside_the_threads_own_transaction_raises_the_oracles_error(tmp_path):
    with safepoint.open(tmp_path / "s.sp", checkpoint_bytes=None) as db:
        with db.transaction():
            got = outcome(db.put, b"a", b"1")
            assert got == outcome(Store._put_py, db, b"a", b"1")
        assert got[1][0] is RuntimeError and "open transaction" in got[1][1]
        assert db.get(b"a") is None


def test_another_codec_goes_through_the_oracle(tmp_path):
    with safepoint.open(tmp_path / "s.sp", codec="json", checkpoint_bytes=None) as db:
        db.put("n", {"x": [1]})
        db.put(b"b", "text")  # a bytes key: the codec still encodes the value
        assert db.get("n") == {"x": [1]} and db.get(b"b") == "text"
        # Bytes values are the json codec's to refuse, not the C's to store.
        got = outcome(db.put, b"c", b"raw")
        assert got == outcome(Store._put_py, db, b"c", b"raw")
        assert got[1][0] is TypeError and db.get(b"c") is None


@native_only
def test_a_subclass_and_the_python_engine_go_to_the_fallback(tmp_path):
    put, calls = spy_put()
    sub = SubStore(tmp_path / "sub", checkpoint_bytes=None)
    try:
        put(sub, b"a", b"1")
        assert sub[b"a"] == b"1"
    finally:
        sub.close()
    # A file system of safepoint.testing: the log runs the Python engine.
    with safepoint.open(tmp_path / "faulty", fs=FaultFS(tmp_path), checkpoint_bytes=None) as db:
        assert db._wal.engine == "python"
        put(db, b"b", b"2")
        assert db[b"b"] == b"2"
    assert calls == [(b"a", b"1"), (b"b", b"2")]


# --- Error paths ----------------------------------------------------------------------


def twin_stores(tmp_path, **opts):
    return (
        safepoint.open(tmp_path / "c", checkpoint_bytes=None, **opts),
        safepoint.open(tmp_path / "py", checkpoint_bytes=None, **opts),
    )


@native_only
def test_a_failed_engine_fails_the_put_as_the_oracles(tmp_path):
    """sp_wal_append's SP_WAL_FAILED: check_append, then _native_refused."""
    c, py = twin_stores(tmp_path)
    try:
        for db in (c, py):
            db.put(b"a", b"1")
            db._wal._native.fail(errno.EIO)
        got = put_outcome(Store.put, c, b"b", b"2")
        assert got == put_outcome(Store._put_py, py, b"b", b"2")
        assert got[1][0] is StoreFailedError
        assert type(c._failed) is type(py._failed) is OSError
        assert c._txn_owner is None and not c._write_lock.locked()
        assert not c._wal._lock.locked()
        assert put_outcome(Store.put, c, b"c", b"3") == put_outcome(Store._put_py, py, b"c", b"3")
    finally:
        c.close()
        py.close()


@native_only
def test_a_failed_write_fails_the_put_as_the_oracles(tmp_path):
    """sp_wal_flush's SP_WAL_FAILED (its pwrite fails: the engine was lent a
    read-only descriptor): _native_refused under the log's lock."""
    c, py = twin_stores(tmp_path)
    fds = []
    try:
        for db in (c, py):
            db.put(b"a", b"1")
            fd = os.open(db._wal.segments[-1].path, os.O_RDONLY)
            fds.append(fd)
            assert db._wal._native.switch(fd, db._wal._end) == 0
        got = put_outcome(Store.put, c, b"b", b"2")
        assert got == put_outcome(Store._put_py, py, b"b", b"2")
        assert got[1][0] is StoreFailedError and "Bad file descriptor" in got[1][1]
        # As in the oracle, the record was applied before its flush failed.
        assert c.get(b"b") == py.get(b"b") == b"2"
        assert c._last_lsn == py._last_lsn == 2
        assert type(c._failed) is type(py._failed) is OSError
        assert not c._wal._lock.locked() and not c._write_lock.locked()
    finally:
        c.close()
        py.close()
        for fd in fds:
            os.close(fd)


@native_only
def test_a_failed_apply_after_logging_fails_the_store_as_the_oracles(tmp_path):
    """An error between logging and applying: Store._append_failed refuses
    writes until reopen, whose replay applies the record."""
    c, py = twin_stores(tmp_path)
    try:
        for db in (c, py):
            db._mem.freeze()
        got = put_outcome(Store.put, c, b"a", b"1")
        assert got == put_outcome(Store._put_py, py, b"a", b"1")
        assert got[1] == (RuntimeError, "memtable is frozen")
        assert type(c._failed) is RuntimeError and type(py._failed) is RuntimeError
        assert not c._mem_lock.locked() and not c._write_lock.locked()
        assert c._txn_owner is None
        for db in (c, py):
            db._mem.thaw()
    finally:
        c.close()
        py.close()
    for name in ("c", "py"):
        with safepoint.open(tmp_path / name) as db:
            assert dict(db.items()) == {b"a": b"1"}


def test_a_closed_log_raises_the_oracles_error(tmp_path):
    c, py = twin_stores(tmp_path)
    try:
        for db in (c, py):
            db._wal._closed = True
        got = put_outcome(Store.put, c, b"a", b"1")
        assert got == put_outcome(Store._put_py, py, b"a", b"1")
        assert got[1][0] is safepoint.ClosedError
        for db in (c, py):
            db._wal._closed = False
    finally:
        c.close()
        py.close()


@native_only
def test_constructor_rejects_bad_arguments():
    with pytest.raises(TypeError):
        _sp_put.StorePut(None, Store, BytesCodec, Store, Store, Store, 1, 1)
    with pytest.raises(TypeError):
        _sp_put.StorePut(Store._put_py, "not a type", BytesCodec, Store, Store, Store, 1, 1)
    with pytest.raises(TypeError):
        _sp_put.StorePut(Store._put_py, Store, BytesCodec, Store, Store, Store, 0, 1)
    with pytest.raises(TypeError):
        _sp_put.StorePut(Store._put_py, Store, BytesCodec, Store, Store, Store, 1, 1, x=1)
