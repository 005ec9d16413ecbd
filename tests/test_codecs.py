"""Value codecs (src/safepoint/values.py): pickle, json, numpy and custom
codec objects, on their own and through a store (memtable, base image after
a checkpoint, and a reopened store).  Keys never go through a codec.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import safepoint
from safepoint.values import BytesCodec, JsonCodec, NumpyCodec, PickleCodec, resolve

SMALL = {"segment_bytes": 1 << 16}


@pytest.fixture
def path(tmp_path):
    return tmp_path / "store.sp"


def store_round_trip(path, codec, value, *, checkpoint: bool = False, reopen: bool = False):
    """Put ``value`` through a store with ``codec`` and read it back."""
    with safepoint.open(path, codec=codec, **SMALL) as db:
        db.put(b"k", value)
        if checkpoint:
            db.checkpoint()
        if not reopen:
            return db.get(b"k")
    with safepoint.open(path, codec=codec, **SMALL) as db:
        return db.get(b"k")


WHERE = [
    pytest.param({}, id="memtable"),
    pytest.param({"checkpoint": True}, id="base-image"),
    pytest.param({"reopen": True}, id="reopened"),
    pytest.param({"checkpoint": True, "reopen": True}, id="base-image-reopened"),
]


@dataclasses.dataclass
class Point:
    x: int
    y: float


class UpperCodec:
    """A custom codec: str values, stored upper-cased with a marker."""

    def encode(self, obj):
        return b"U:" + obj.upper().encode()

    def decode(self, data):
        assert data[:2] == b"U:"
        return bytes(data[2:]).decode()


def as_array(data: bytes) -> np.ndarray:
    """The raw bytes as a uint8 array, to test memory sharing."""
    return np.frombuffer(data, dtype=np.uint8)


# --- resolving codec names ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [(None, BytesCodec), ("bytes", BytesCodec), ("pickle", PickleCodec), ("json", JsonCodec)]
    + [("numpy", NumpyCodec)],
)
def test_codec_names_resolve_to_their_codecs(name, cls):
    assert isinstance(resolve(name), cls)


def test_a_codec_object_is_used_as_it_is():
    codec = UpperCodec()
    assert resolve(codec) is codec


# --- pickle ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_pickle_stores_arbitrary_python_objects(path, where):
    value = {"step": 5, "p": Point(1, 2.5), "s": {1, 2}, "t": (None, b"raw")}
    assert store_round_trip(path, "pickle", value, **where) == value


def test_a_stored_none_is_a_value_not_a_missing_key(path):
    with safepoint.open(path, codec="pickle", **SMALL) as db:
        db.put(b"k", None)
        assert b"k" in db and len(db) == 1
        assert db.get(b"k", "default") is None


# --- json -----------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_json_round_trips_json_values(value):
    codec = JsonCodec()
    assert codec.decode(codec.encode(value)) == value


def test_json_is_compact_utf8():
    assert JsonCodec().encode({"é": [1, 2]}) == '{"é":[1,2]}'.encode()


@pytest.mark.parametrize("where", WHERE)
def test_json_values_survive_the_store(path, where):
    value = {"loss": 0.31, "tags": ["a", "ü"], "n": None}
    assert store_round_trip(path, "json", value, **where) == value


def test_the_stored_bytes_are_the_codecs_own(path):
    # No wrapping: a store reopened without the codec reads the codec's bytes.
    with safepoint.open(path, codec="json", **SMALL) as db:
        db.put(b"k", {"a": 1})
    with safepoint.open(path, **SMALL) as raw:
        assert raw.get(b"k") == b'{"a":1}'


# --- numpy ----------------------------------------------------------------------------------------

DTYPES = ["float16", "float32", "float64", "bool", "int8", "int64", "uint64", ">i4", "complex64"]
DTYPES += ["datetime64[ns]"]


@given(
    hnp.arrays(
        dtype=st.sampled_from(DTYPES).map(np.dtype),
        shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    )
)
def test_numpy_round_trips_dtype_shape_and_bytes(arr):
    codec = NumpyCodec()
    out = codec.decode(codec.encode(arr))
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.tobytes() == arr.tobytes()  # bit-exact, NaNs included


@pytest.mark.parametrize(
    "arr",
    [
        np.array(3.5, dtype=np.float16),
        np.array(True),
        np.zeros((0,), dtype=np.int64),
        np.zeros((3, 0, 2), dtype=np.float32),
        np.array(["ab", "c"]),
    ],
    ids=["0-d float16", "0-d bool", "empty", "empty 3-d", "unicode"],
)
def test_numpy_round_trips_edge_shapes(arr):
    codec = NumpyCodec()
    out = codec.decode(codec.encode(arr))
    assert out.dtype == arr.dtype and out.shape == arr.shape and np.array_equal(out, arr)


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(20, dtype=np.int64)[::3],
        np.arange(12, dtype=np.float64).reshape(3, 4).T,
        np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4)[:, ::2, 1:],
    ],
    ids=["strided", "transposed", "fortran", "sliced 3-d"],
)
def test_numpy_accepts_non_contiguous_arrays(arr):
    assert not arr.flags.c_contiguous
    codec = NumpyCodec()
    out = codec.decode(codec.encode(arr))
    assert out.shape == arr.shape and np.array_equal(out, arr)


def test_numpy_accepts_array_likes():
    codec = NumpyCodec()
    assert np.array_equal(codec.decode(codec.encode([[1, 2], [3, 4]])), [[1, 2], [3, 4]])


def test_a_decoded_array_shares_memory_with_the_bytes_and_is_read_only():
    codec = NumpyCodec()
    data = codec.encode(np.arange(8, dtype=np.float64))
    out = codec.decode(data)
    assert np.shares_memory(out, as_array(data))
    assert not out.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        out[0] = 1.0


@pytest.mark.parametrize("where", WHERE)
def test_numpy_arrays_survive_the_store(path, where):
    arr = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    out = store_round_trip(path, "numpy", arr, **where)
    assert out.dtype == arr.dtype and out.shape == (3, 4) and np.array_equal(out, arr)
    assert not out.flags.writeable


# --- custom codecs and transactions -----------------------------------------------------------------


@pytest.mark.parametrize("where", WHERE)
def test_a_custom_codec_object_is_used_for_every_value(path, where):
    assert store_round_trip(path, UpperCodec(), "hello", **where) == "HELLO"


def test_codecs_apply_to_transactions_and_iteration(path):
    with safepoint.open(path, codec="json", **SMALL) as db:
        with db.transaction() as txn:
            txn.put("a", [1])
            txn["b"] = {"x": 2}
            assert txn.get("a") == [1] and dict(txn.items()) == {b"a": [1], b"b": {"x": 2}}
        db.update({"c": "three"})
        assert dict(db.items()) == {b"a": [1], b"b": {"x": 2}, b"c": "three"}
        assert list(db.values(prefix="b")) == [{"x": 2}]
        assert db.pop("c") == "three"


def test_keys_do_not_go_through_the_codec(path):
    with safepoint.open(path, codec="json", **SMALL) as db:
        db.put("k", 1)
        assert list(db.keys()) == [b"k"]


# Error paths ---------------------------------------------------------------------------------------


def test_an_unknown_codec_name_raises_value_error_naming_it(path):
    with pytest.raises(ValueError, match="'msgpack'"):
        safepoint.open(path, codec="msgpack")


def test_a_codec_object_without_decode_raises_type_error():
    class EncodeOnly:
        def encode(self, obj):
            return b""

    with pytest.raises(TypeError, match="encode.*decode"):
        resolve(EncodeOnly())


def test_numpy_refuses_object_arrays_and_logs_nothing(path):
    with safepoint.open(path, codec="numpy", **SMALL) as db:
        with pytest.raises(TypeError, match="object arrays"):
            db.put(b"k", np.array([{"a": 1}, None], dtype=object))
        assert db.stats()["lsn"] == 0


def test_numpy_refuses_structured_dtypes():
    with pytest.raises(TypeError, match="structured"):
        NumpyCodec().encode(np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]))


@pytest.mark.parametrize(
    "data",
    [b"", b"SPND", b"not an array at all", NumpyCodec().encode(np.arange(4))[:-3]],
    ids=["empty", "magic only", "other bytes", "truncated"],
)
def test_numpy_decode_of_bytes_that_are_no_array_raises_value_error(data):
    with pytest.raises(ValueError, match="numpy codec"):
        NumpyCodec().decode(data)


def test_json_refuses_values_json_cannot_hold(path):
    with safepoint.open(path, codec="json", **SMALL) as db:
        with pytest.raises(TypeError, match="set"):
            db.put(b"k", {1, 2})
        assert len(db) == 0


def test_a_bytes_store_refuses_objects_with_a_hint_about_codecs(path):
    with safepoint.open(path, **SMALL) as db:
        with pytest.raises(TypeError, match="codec='pickle'"):
            db.put(b"k", {"a": 1})


def test_a_pickle_store_refuses_unpicklable_values_and_logs_nothing(path):
    with safepoint.open(path, codec="pickle", **SMALL) as db:
        with pytest.raises(TypeError, match="lock"):
            db.put(b"k", threading.Lock())
        assert db.stats()["lsn"] == 0
