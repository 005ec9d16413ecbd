"""safepoint._sp_get.StoreGet (Store.get on the native backend) against its
pure-Python oracle, ``Store._get_py``.

For every key, present or absent, in the memtable, the frozen memtable of a
checkpoint or the base image, the C method must return what the Python one
returns; every case it declines (a closed store, a key that is not bytes of
a valid length, another codec, keywords, a wrong argument count) must end in
the oracle's answer or error.  It must read the layers newest first, leak no
reference, and look like the method it replaces to help() and inspect.
"""

from __future__ import annotations

import inspect
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import safepoint
from safepoint import _sp_get
from safepoint import store as store_mod
from safepoint.errors import ClosedError
from safepoint.format import MAX_KEY_SIZE
from safepoint.memtable import new_memtable
from safepoint.store import Store

keys = st.binary(min_size=1, max_size=12)
values = st.binary(max_size=40)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, values),
        st.tuples(st.just("delete"), keys, st.none()),
        st.tuples(st.just("checkpoint"), st.none(), st.none()),
    ),
    max_size=40,
)


def outcome(fn, *args, **kwargs):
    """(value, None) or (None, (exception type, message))."""
    try:
        return fn(*args, **kwargs), None
    except Exception as exc:  # noqa: BLE001 - compared, not handled
        return None, (type(exc), str(exc))


def test_store_get_is_the_c_method_on_the_native_backend():
    if safepoint.BACKEND == "native":
        assert type(Store.__dict__["get"]) is _sp_get.StoreGet
        assert Store._get_py is not Store.get
    else:  # SAFEPOINT_BACKEND=python: the oracle is the method
        assert Store.get is Store._get_py


@settings(max_examples=60, deadline=None)
@given(ops=ops, probes=st.lists(keys, max_size=20))
def test_every_get_matches_the_oracle(tmp_path_factory, ops, probes):
    path = tmp_path_factory.mktemp("get") / "s.sp"
    with safepoint.open(path, sync="none", checkpoint_bytes=None) as db:
        model: dict[bytes, bytes] = {}
        for op, k, v in ops:
            if op == "put":
                db.put(k, v)
                model[k] = v
            elif op == "delete":
                db.delete(k)
                model.pop(k, None)
            else:
                db.checkpoint()
        default = object()
        for k in [*model, *probes]:
            got = db.get(k, default)
            assert got == Store._get_py(db, k, default)
            assert got is default if k not in model else got == model[k]
            assert db.get(k) == Store._get_py(db, k) == model.get(k)


def test_layers_are_read_newest_first(tmp_path):
    """mem, then the frozen memtable of a checkpoint under way, then the base."""
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None) as db:
        db.put(b"k", b"base")
        db.put(b"only-base", b"b")
        db.checkpoint()
        db.put(b"k", b"frozen")
        db.put(b"only-frozen", b"f")
        # A checkpoint's swap, as checkpoint.py makes it (under the locks).
        with db._mem_lock:
            frozen, db._frozen = db._mem, db._mem
            db._mem = new_memtable()
            db._mem.last_lsn = frozen.last_lsn
        try:
            assert db.get(b"k") == b"frozen"
            assert db.get(b"only-frozen") == b"f"
            assert db.get(b"only-base") == b"b"
            db._mem.put(b"k", b"mem")
            db._mem.put(b"only-base", None)  # a delete in the newest layer hides the base
            assert db.get(b"k") == b"mem"
            assert db.get(b"only-base", 7) == 7
            for k in (b"k", b"only-frozen", b"only-base", b"absent"):
                assert db.get(k, 7) == Store._get_py(db, k, 7)
        finally:
            with db._mem_lock:
                for k, v in db._mem.items():
                    frozen.put(k, v)
                db._mem, db._frozen = frozen, None


def test_an_empty_memtable_is_passed_over_and_a_filled_one_is_read_again(tmp_path):
    """After a checkpoint the memtable is empty and a get goes straight to
    the base; the first put makes it a layer to read again."""
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None) as db:
        db.update([(b"a", b"base-a"), (b"b", b"base-b")])
        db.checkpoint()
        assert len(db._mem) == 0
        assert (db.get(b"a"), db.get(b"zz", 7)) == (b"base-a", 7)
        db.put(b"a", b"mem-a")
        del db[b"b"]
        assert (db.get(b"a"), db.get(b"b", 7)) == (b"mem-a", 7)
        for k in (b"a", b"b", b"zz"):
            assert db.get(k, 7) == Store._get_py(db, k, 7)


@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("a",), {}),  # a str key: converted by the oracle
        ((b"",), {}),  # empty: the oracle's ValueError
        ((b"x" * (MAX_KEY_SIZE + 1),), {}),  # too long: the oracle's ValueError
        ((3,), {}),  # not a key at all
        ((), {}),  # no key
        ((b"a", 1, 2), {}),  # too many
        ((b"a",), {"default": 5}),  # keywords go to the oracle
        ((), {"key": b"zz", "default": 5}),
        ((b"a",), {"nope": 1}),
    ],
)
def test_declined_calls_end_in_the_oracles_answer_or_error(tmp_path, args, kwargs):
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None) as db:
        db.put(b"a", b"1")
        assert outcome(db.get, *args, **kwargs) == outcome(Store._get_py, db, *args, **kwargs)


def test_a_closed_store_raises_closed_error(tmp_path):
    db = safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None)
    db.put(b"a", b"1")
    db.close()
    with pytest.raises(ClosedError, match="is closed"):
        db.get(b"a")
    assert outcome(db.get, b"a") == outcome(Store._get_py, db, b"a")


def test_another_codec_decodes_through_the_oracle(tmp_path):
    with safepoint.open(tmp_path / "s.sp", codec="json", checkpoint_bytes=None) as db:
        db["n"] = {"x": [1, 2]}
        assert db.get("n") == {"x": [1, 2]} == Store._get_py(db, "n")
        assert db.get(b"n") == {"x": [1, 2]}
        db.checkpoint()
        assert db.get(b"n") == {"x": [1, 2]}
        assert db.get(b"missing", "d") == "d"


def test_a_bound_get_and_the_unbound_descriptor_work(tmp_path):
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None) as db:
        db.put(b"a", b"1")
        get = db.get
        assert get(b"a") == b"1" and get(b"b", 2) == 2
        assert Store.get(db, b"a") == b"1"
        assert db[b"a"] == b"1" and b"a" in db
        with pytest.raises(KeyError):
            db[b"b"]


def test_no_reference_is_leaked(tmp_path):
    with safepoint.open(tmp_path / "s.sp", sync="none", checkpoint_bytes=None) as db:
        db.put(b"in-base", b"v" * 50)
        db.checkpoint()
        db.put(b"in-mem", b"w" * 50)
        default = object()

        def counts():
            return (
                sys.getrefcount(default),
                sys.getrefcount(store_mod._MISSING),
                sys.getrefcount(None),
            )

        for k in (b"in-mem", b"in-base", b"absent"):
            db.get(k, default)  # first calls may allocate caches (a read slot)
        before = counts()
        for _ in range(2000):
            for k in (b"in-mem", b"in-base", b"absent"):
                db.get(k, default)
                db.get(k)
        after = counts()
        assert after[:2] == before[:2]
        assert abs(after[2] - before[2]) < 100  # None is shared process-wide


def test_help_and_signature_are_the_methods():
    assert Store.get.__doc__ == Store._get_py.__doc__
    assert "default" in Store.get.__doc__
    assert inspect.signature(Store.get) == inspect.signature(Store._get_py)


def test_constructor_rejects_bad_arguments():
    with pytest.raises(TypeError):
        _sp_get.StoreGet(None, object(), bytes, 10)
    with pytest.raises(TypeError):
        _sp_get.StoreGet(Store._get_py, object(), "not a type", 10)
    with pytest.raises(TypeError):
        _sp_get.StoreGet(Store._get_py, object(), bytes, 0)
    with pytest.raises(TypeError):
        _sp_get.StoreGet(Store._get_py, object(), bytes, 10, extra=1)
