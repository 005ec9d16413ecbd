"""safepoint._sp_fast against its pure-Python oracle in base.py.

``_sp_fast.check_entry`` must return the value exactly when
``base.check_entry_py`` does (and None where the oracle raises
CorruptionError), for valid entries and for every bit flip and truncation of
one.  ``_sp_fast.Reader`` (a writable base image's ``get`` on the native
backend) must give ``BaseImage._get_cached``'s answer or error for every key,
present, absent or damaged, through the same cached read transaction, and
leave the slot and the resize gate as the oracle does.
"""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import sys
import threading
import time
import weakref

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import safepoint
from safepoint import _sp_fast, base, records
from safepoint.errors import CorruptionError

keys = st.binary(min_size=1, max_size=48)
values = st.binary(max_size=120)
# Every bit of an entry is flipped in turn: keep those entries short.
short_values = st.binary(max_size=24)
TIMEOUT_S = 30


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def truncate_at(data: bytes, length: int) -> bytes:
    return data[:length]


def oracle_entry(key: bytes, stored: bytes) -> bytes | str:
    """The oracle's value, or the message of the CorruptionError it raises."""
    try:
        return base.check_entry_py(key, stored)
    except CorruptionError as exc:
        return str(exc)


def native_entry(key: bytes, stored: bytes) -> bytes | str:
    """_sp_fast's value; where it declines, the error base.check_entry raises."""
    value = _sp_fast.check_entry(key, stored)
    if value is not None:
        return value
    with pytest.raises(CorruptionError) as info:
        base.check_entry(key, stored)
    return str(info.value)


def assert_same_entry_answer(key: bytes, stored: bytes) -> None:
    assert native_entry(key, stored) == oracle_entry(key, stored)


@given(keys, values)
def test_check_entry_returns_the_value_of_a_valid_entry(key, value):
    stored = base.entry_value(key, value)
    assert _sp_fast.check_entry(key, stored) == value
    assert base.check_entry(key, stored) == value == base.check_entry_py(key, stored)


@given(keys, short_values)
def test_every_bit_flip_of_an_entry_gives_the_oracles_answer(key, value):
    stored = base.entry_value(key, value)
    for bit in range(len(stored) * 8):
        damaged = flip_bit(stored, bit)
        assert _sp_fast.check_entry(key, damaged) is None  # CRC32C catches any 1-bit error
        assert_same_entry_answer(key, damaged)


@given(keys, short_values)
def test_every_bit_flip_of_the_key_gives_the_oracles_answer(key, value):
    stored = base.entry_value(key, value)
    for bit in range(len(key) * 8):
        assert_same_entry_answer(flip_bit(key, bit), stored)


@given(keys, values)
def test_every_truncation_of_an_entry_gives_the_oracles_answer(key, value):
    stored = base.entry_value(key, value)
    for length in range(len(stored)):
        assert_same_entry_answer(key, truncate_at(stored, length))


@given(keys, st.binary(max_size=64))
def test_arbitrary_bytes_as_an_entry_give_the_oracles_answer(key, stored):
    assert_same_entry_answer(key, stored)


@given(keys, values)
def test_check_entry_reads_memoryviews_and_bytearrays_as_bytes(key, value):
    stored = base.entry_value(key, value)
    assert _sp_fast.check_entry(memoryview(key), memoryview(stored)) == value
    assert _sp_fast.check_entry(bytearray(key), bytearray(stored)) == value


# --- the Reader on a real base image ------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    db = safepoint.open(
        tmp_path_factory.mktemp("fast") / "store.sp", sync="none", checkpoint_bytes=None
    )
    db.put(b"seed", b"v")
    db.checkpoint()
    yield db
    db.close()


_prefixes = itertools.count()


def write_entries(image: base.BaseImage, entries: dict[bytes, bytes]) -> None:
    """Put raw stored entries (CRC included, right or wrong) in the base
    image, then retire the cached read transactions as a checkpoint does."""
    with image.env.begin(write=True, db=image._data) as txn:
        for k, stored in entries.items():
            txn.put(k, stored)
    image._retire_readers()


def delete_entries(image: base.BaseImage, ks) -> None:
    with image.env.begin(write=True, db=image._data) as txn:
        for k in ks:
            txn.delete(k)
    image._retire_readers()


def thread_slot(image: base.BaseImage) -> base._ReadSlot:
    image.get(b"seed")  # gives this thread its slot and a fresh transaction
    return image._local.slot


def reader_of(image: base.BaseImage) -> _sp_fast.Reader:
    """A Reader of ``image``, as BaseImage makes on the native backend."""
    return _sp_fast.Reader(image, image._local)


def outcome(get, *args):
    try:
        return ("value", get(*args))
    except Exception as exc:  # noqa: BLE001 - compared, not swallowed
        return ("error", type(exc), str(exc))


def damage(stored: bytes, how: int) -> bytes:
    """One of: a flipped bit (in the CRC or the value), a truncation, nothing."""
    kind, where = divmod(how, 1 << 16)
    if kind == 0:
        return flip_bit(stored, where % (len(stored) * 8))
    if kind == 1:
        return truncate_at(stored, where % len(stored))
    return stored


@settings(max_examples=max(10, settings.default.max_examples // 4))
@given(
    st.dictionaries(keys, st.tuples(values, st.integers(0, 3 << 16)), max_size=12),
    st.lists(keys, max_size=6),
)
def test_the_reader_gives_the_oracles_answer_for_every_key(store, entries, absent):
    image = store._base
    prefix = b"%08d/" % next(_prefixes)
    stored = {
        prefix + k: damage(base.entry_value(prefix + k, v), how) for k, (v, how) in entries.items()
    }
    write_entries(image, stored)
    try:
        slot = thread_slot(image)
        read = reader_of(image)
        probes = list(stored) + [prefix + b"absent/" + k for k in absent]
        for k in probes:
            native = outcome(read, k)
            assert native == outcome(image._get_cached, slot, k)
            assert native == outcome(image.get, k)
            assert len(slot) == 1 and slot.active == []
    finally:
        delete_entries(image, stored)


def test_the_reader_reuses_the_slots_transaction(store):
    image = store._base
    slot = thread_slot(image)
    txn = slot[0]
    assert reader_of(image)(b"seed") == b"v"
    assert slot == [txn] and slot.active == []


def test_the_reader_after_a_commit_renews_the_slots_transaction(store):
    image = store._base
    slot = thread_slot(image)
    old = slot[0]
    write_entries(image, {b"renewed": base.entry_value(b"renewed", b"yes")})
    try:
        assert slot == []  # the commit retired the idle transaction
        assert reader_of(image)(b"renewed") == b"yes"
        assert len(slot) == 1 and slot[0] is not old
        assert slot.generation == image._generation
    finally:
        delete_entries(image, [b"renewed"])


def test_a_get_overtaken_by_a_commit_retires_its_own_transaction(store):
    """txn.get releases the GIL: a commit that lands then finds the slot
    empty and cannot retire the transaction, so the get must, or the slot
    keeps a stale snapshot pinned."""
    image = store._base
    read = reader_of(image)
    me = threading.get_ident()
    in_oracle = [False]
    overtaken: list[bool] = []  # per retire by the Reader itself: slot empty after
    retire, oracle = image._retire_slot, image._get_cached

    def counting_retire(slot: base._ReadSlot) -> None:
        retire(slot)
        if threading.get_ident() == me and not in_oracle[0]:
            overtaken.append(slot == [])

    def marked_oracle(slot: base._ReadSlot, key: bytes) -> bytes | None:
        in_oracle[0] = True  # renewals go there; its own retires do not count
        try:
            return oracle(slot, key)
        finally:
            in_oracle[0] = False

    stop = threading.Event()

    def commits() -> None:
        while not stop.is_set():
            image._retire_readers()  # what a checkpoint's commit does

    image._retire_slot, image._get_cached = counting_retire, marked_oracle
    bumper = threading.Thread(target=commits)
    bumper.start()
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not overtaken and time.monotonic() < deadline:
            assert read(b"seed") == b"v"
    finally:
        stop.set()
        bumper.join(TIMEOUT_S)
        del image._retire_slot, image._get_cached
    assert overtaken and all(overtaken)


def test_the_reader_waits_while_the_map_is_being_resized(store):
    image = store._base
    read = reader_of(image)
    got: list[bytes | None] = []
    ready, go = threading.Event(), threading.Event()

    def reader() -> None:
        thread_slot(image)  # a fresh transaction: only the gate stops it
        ready.set()
        go.wait(TIMEOUT_S)
        got.append(read(b"seed"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        assert ready.wait(TIMEOUT_S)
        with image._gate.exclusive(timeout_s=TIMEOUT_S):
            go.set()
            time.sleep(0.2)
            assert got == []  # held off by the gate, not reading under a resize
    finally:
        go.set()
        t.join(TIMEOUT_S)
    assert got == [b"v"]


def test_a_writable_base_images_get_is_a_reader_on_the_native_backend_only(store):
    native = records.BACKEND == "native"
    assert (type(store._base.get) is _sp_fast.Reader) == native
    assert store._base.get(b"seed") == b"v"


def test_a_reader_gives_the_oracles_answer(store):
    image = store._base
    write_entries(image, {b"r": base.entry_value(b"r", b"1"), b"rbad": b"\x00" * 5})
    try:
        read = reader_of(image)
        slot = thread_slot(image)
        for k in (b"r", b"rbad", b"rmissing", "not bytes"):
            assert outcome(read, k) == outcome(image._get_cached, slot, k)
    finally:
        delete_entries(image, [b"r", b"rbad"])


def test_a_reader_in_a_thread_that_never_read_gives_the_thread_a_slot(store):
    image = store._base
    read = reader_of(image)

    def first_get() -> tuple[bytes | None, bool]:
        value = read(b"seed")
        return value, isinstance(getattr(image._local, "slot", None), base._ReadSlot)

    out: list = []
    t = threading.Thread(target=lambda: out.append(first_get()))
    t.start()
    t.join(TIMEOUT_S)
    assert out == [(b"v", True)]


def test_a_base_image_no_longer_used_is_collected_with_its_reader(tmp_path):
    db = safepoint.open(tmp_path / "s", sync="none")
    db.put(b"k", b"v")
    db.checkpoint()
    assert db.get(b"k") == b"v"
    image = weakref.ref(db._base)
    db.close()
    del db
    gc.collect()  # the image and its Reader refer to each other
    assert image() is None


def backend_in_subprocess(value: str) -> str:
    env = dict(os.environ, SAFEPOINT_BACKEND=value)
    code = (
        "import safepoint, safepoint.base as b, tempfile, os\n"
        "d = tempfile.mkdtemp()\n"
        "with safepoint.open(os.path.join(d, 's'), sync='none') as db:\n"
        "    db.put(b'k', b'v'); db.checkpoint(); db.get(b'k')\n"
        "    print(b._sp_fast is not None, db.get(b'k') == b'v')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_native_backend_reads_through_sp_fast():
    assert backend_in_subprocess("native") == "True True"


def test_the_python_backend_reads_without_sp_fast():
    assert backend_in_subprocess("python") == "False True"


# Error paths


def test_a_key_lmdb_refuses_raises_its_error_and_the_next_get_works(store):
    image = store._base
    slot = thread_slot(image)
    read = reader_of(image)
    with pytest.raises(lmdb.BadValsizeError):
        read(b"")  # LMDB has no empty key
    assert slot == [] and slot.active == []  # the transaction was aborted, the gate left
    assert outcome(read, b"") == outcome(image._get_cached, slot, b"")
    assert read(b"seed") == b"v"


def test_a_damaged_entry_raises_the_oracles_corruption_error(store):
    image = store._base
    write_entries(image, {b"bad": b"\x00\x00\x00\x00value"})
    try:
        slot = thread_slot(image)
        with pytest.raises(CorruptionError, match="checksum mismatch for key b'bad'"):
            reader_of(image)(b"bad")
        assert len(slot) == 1 and slot.active == []
    finally:
        delete_entries(image, [b"bad"])


def test_the_reader_after_close_raises_closed_error(tmp_path):
    db = safepoint.open(tmp_path / "s", sync="none")
    db.put(b"k", b"v")
    db.checkpoint()
    image = db._base
    read = reader_of(image)
    thread_slot(image)
    db.close()
    with pytest.raises(safepoint.ClosedError):
        read(b"k")


def test_check_entry_refuses_what_is_not_a_buffer():
    with pytest.raises(TypeError):
        _sp_fast.check_entry("key", b"\x00\x00\x00\x00")
    with pytest.raises(TypeError):
        _sp_fast.check_entry(b"key", None)


@pytest.mark.parametrize("args", [(), (b"k",), (b"k", b"s", b"x")])
def test_check_entry_refuses_a_wrong_argument_count(args):
    with pytest.raises(TypeError, match="2 arguments"):
        _sp_fast.check_entry(*args)


@pytest.mark.parametrize("args", [(), (b"k", b"x")])
def test_the_reader_refuses_a_wrong_argument_count(store, args):
    with pytest.raises(TypeError, match="1 positional argument"):
        reader_of(store._base)(*args)


def test_the_reader_refuses_keyword_arguments(store):
    with pytest.raises(TypeError):
        reader_of(store._base)(key=b"seed")


def test_a_reader_needs_an_image_and_a_thread_local(store):
    with pytest.raises(TypeError):
        _sp_fast.Reader(store._base)
