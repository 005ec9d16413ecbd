"""The native memtable (safepoint._sp_memtable) against the Python oracle.

A hypothesis state machine drives both through the same writes (put, update,
apply_commit, apply_records of real records) and compares every answer (get,
lookup, ranges, iterators opened before later writes, snapshot, len,
fold_batches).  Targeted tests cover what the machine cannot see: buffers
released when their last entry is overwritten, orders never changed in
place, malformed input refused with the table unchanged, an mmap kept alive
by the memtable, and lock-free gets beside a writer.
"""

from __future__ import annotations

import mmap
import random
import sys
import threading
from collections.abc import Mapping

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from safepoint._sp_memtable import NativeMemtable

from safepoint.base import entry_value
from safepoint.format import MAX_KEY_SIZE
from safepoint.memtable import Memtable
from safepoint.records import encode_record, encode_writes

# --- strategies ------------------------------------------------------------------

FIXED = [b"a", b"a\x00", b"a\x00\x00x", b"b", b"key0000000000001", b"key0000000000002"]
keys = st.one_of(
    st.sampled_from(FIXED),
    st.binary(min_size=1, max_size=3),
    st.builds(lambda n: b"key%013d" % n, st.integers(0, 60)),  # long shared prefix
    st.builds(
        lambda p, s: p * (MAX_KEY_SIZE - 1) + s,
        st.sampled_from([b"L", b"\xff"]),
        st.binary(min_size=1, max_size=1),
    ),
)
values = st.one_of(st.none(), st.binary(max_size=12))  # None: a delete
writes = st.dictionaries(keys, values, max_size=24)
bounds = st.one_of(st.none(), st.binary(max_size=4), st.sampled_from(FIXED))


def span_of(batches: list[dict], pad: int) -> tuple[bytes, int, int]:
    """Whole records of the writes in ``batches`` after ``pad`` junk bytes."""
    log = b"".join(
        encode_record(7, lsn, lsn, encode_writes(w)) for lsn, w in enumerate(batches, start=1)
    )
    junk = b"\xee" * pad
    return junk + log + junk, pad, pad + len(log)


def records_file(tmp_path, batches: list[dict]):
    """A file of the records of ``batches``, mapped read-only."""
    buf, start, stop = span_of(batches, 0)
    path = tmp_path / "seg"
    path.write_bytes(buf)
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), start, stop


# --- the machine -----------------------------------------------------------------


class NativeAgreesWithOracle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.native = NativeMemtable()
        self.oracle = Memtable()
        self.open_iters: list = []

    def write(self, native_write, oracle_write):
        """Both writes apply, or, frozen, both are refused."""
        if self.oracle.frozen:
            with pytest.raises(RuntimeError, match="frozen"):
                native_write()
            with pytest.raises(RuntimeError, match="frozen"):
                oracle_write()
        else:
            native_write()
            oracle_write()

    @rule(k=keys, v=values)
    def put(self, k, v):
        self.write(lambda: self.native.put(k, v), lambda: self.oracle.put(k, v))

    @rule(w=writes)
    def update(self, w):
        self.write(lambda: self.native.update(w), lambda: self.oracle.update(w))

    @rule(w=writes)
    def apply_commit(self, w):
        payload = encode_writes(w)
        self.write(
            lambda: self.native.apply_commit(w, payload),
            lambda: self.oracle.apply_commit(w, payload),
        )

    @rule(batches=st.lists(writes, max_size=5), pad=st.integers(0, 40), as_view=st.booleans())
    def apply_records(self, batches, pad, as_view):
        buf, start, stop = span_of(batches, pad)
        self.write(
            lambda: self.native.apply_records(memoryview(buf) if as_view else buf, start, stop),
            lambda: self.oracle.apply_records(buf, start, stop),
        )

    @rule()
    def freeze(self):
        self.native.freeze()
        self.oracle.freeze()

    @rule()
    def thaw(self):
        self.native.thaw()
        self.oracle.thaw()

    @rule(k=keys)
    def point_reads_agree(self, k):
        assert self.native.get(k) == self.oracle.get(k)
        assert self.native.get(k, "absent") == self.oracle.get(k, "absent")
        assert self.native.lookup(k) == self.oracle.lookup(k)

    @rule(start=bounds, stop=bounds)
    def ranges_agree(self, start, stop):
        assert list(self.native.items(start, stop)) == list(self.oracle.items(start, stop))
        assert self.native.snapshot(start, stop) == self.oracle.snapshot(start, stop)

    @precondition(lambda self: len(self.open_iters) < 4)
    @rule(start=bounds, stop=bounds)
    def open_an_iterator(self, start, stop):
        self.open_iters.append((self.native.items(start, stop), self.oracle.items(start, stop)))

    @precondition(lambda self: self.open_iters)
    @rule(i=st.integers(0, 3), n=st.integers(1, 5))
    def advance_an_iterator(self, i, n):
        a, b = self.open_iters[i % len(self.open_iters)]
        for _ in range(n):
            assert next(a, "end") == next(b, "end")

    @rule(step=st.integers(1, 9))
    def fold_batches_agree(self, step):
        assert list(self.native.fold_batches(step)) == list(self.oracle.fold_batches(step))

    @invariant()
    def same_length(self):
        assert len(self.native) == len(self.oracle)
        assert self.native.frozen == self.oracle.frozen
        assert self.native.payload_bytes > 0

    def teardown(self):
        for a, b in self.open_iters:
            assert list(a) == list(b)


NativeAgreesWithOracle.TestCase.settings = settings(
    max_examples=max(50, settings.default.max_examples // 4), stateful_step_count=40
)
test_native_agrees_with_the_oracle = NativeAgreesWithOracle.TestCase


# --- order ------------------------------------------------------------------------


@given(
    st.binary(max_size=12),
    st.lists(st.binary(max_size=20).map(lambda b: b.replace(b"\x02", b"\x00")), max_size=300),
    st.integers(0, 5),
)
def test_items_are_in_bytes_order_for_keys_sharing_prefixes(prefix, tails, split):
    # Keys that are prefixes of each other, or equal for 8+ bytes, sort as bytes do.
    ks = list(dict.fromkeys(prefix + b"x" + t for t in tails))
    mem = NativeMemtable()
    cut = len(ks) * split // 5  # part sorted first, the rest merged in
    mem.update(dict.fromkeys(ks[:cut], b""))
    list(mem.items())
    mem.update(dict.fromkeys(ks[cut:], b""))
    assert [k for k, _ in mem.items()] == sorted(ks)


def test_a_handed_out_order_is_unchanged_by_later_keys():
    mem = NativeMemtable()
    mem.update({b"b": b"1", b"d": b"2"})
    taken = mem.items()
    mem.update({bytes([0x61, i]): b"x" for i in range(100)})
    mem.put(b"c", b"3")
    assert list(taken) == [(b"b", b"1"), (b"d", b"2")]
    assert len(list(mem.items())) == 103


def test_an_iterator_reads_values_as_it_advances():
    mem = NativeMemtable()
    mem.update({b"a": b"1", b"b": b"2"})
    it = mem.items()
    mem.put(b"b", None)
    mem.put(b"ab", b"new")  # after the call: not in this iterator
    assert list(it) == [(b"a", b"1"), (b"b", None)]


def test_fold_batches_build_base_entries_for_puts_and_list_deletes():
    mem = NativeMemtable()
    mem.update({b"k%03d" % i: (None if i % 3 == 0 else b"v%d" % i) for i in range(100)})
    batches = list(mem.fold_batches(16))
    assert [len(p) + len(d) for p, d in batches] == [16] * 6 + [4]
    puts = [p for ps, _ in batches for p in ps]
    assert puts == [(k, entry_value(k, v)) for k, v in mem.items() if v is not None]
    assert [k for _, ds in batches for k in ds] == [k for k, v in mem.items() if v is None]


# --- memory -----------------------------------------------------------------------


def test_rewriting_one_key_does_not_grow_memory():
    mem = NativeMemtable()

    def rewrite(i):
        mem.put(b"weights", bytes(1000))
        w = {b"weights": b"%d" % i * 100}  # small at first (the arena), then by reference
        mem.apply_commit(w, encode_writes(w))

    for i in range(100):
        rewrite(i)
    held = mem.payload_bytes
    for i in range(20_000):
        rewrite(i)
    assert mem.payload_bytes <= held + 1000


def test_overwriting_every_key_of_a_commit_releases_its_payload():
    mem = NativeMemtable()
    w = {b"a": b"1" * 200, b"b": b"2" * 200}  # past the arena's limit: kept by reference
    payload = encode_writes(w)
    before = sys.getrefcount(payload)
    mem.apply_commit(w, payload)
    assert sys.getrefcount(payload) == before + 1
    mem.put(b"a", b"x")
    assert sys.getrefcount(payload) == before + 1  # b still points into it
    mem.update({b"b": None})
    assert sys.getrefcount(payload) == before


def test_small_commits_are_copied_into_a_shared_arena_not_kept():
    mem = NativeMemtable()
    w = {b"k": b"v" * 100}
    payload = encode_writes(w)
    before = sys.getrefcount(payload)
    mem.apply_commit(w, payload)
    assert sys.getrefcount(payload) == before
    for i in range(1000):
        one = {b"key%013d" % i: bytes(100)}
        mem.apply_commit(one, encode_writes(one))
    assert mem.get(b"k") == b"v" * 100
    # 1001 entries of ~116 payload bytes: two 64 KiB arenas, not 1001 chunks.
    assert mem.payload_bytes < 1.6 * 1001 * 116


def test_an_arena_whose_entries_are_all_overwritten_is_released():
    mem = NativeMemtable()
    for _ in range(3):
        for i in range(1000):
            one = {b"key%04d" % i: bytes(100)}
            mem.apply_commit(one, encode_writes(one))
    # Three rounds filled ~6 arenas; only those holding the last round live.
    assert mem.payload_bytes < 4 * 64 * 1024


def test_payload_bytes_count_a_replayed_buffer_until_its_last_key_goes():
    buf, start, stop = span_of([{b"k%d" % i: bytes(1000)} for i in range(100)], 0)
    mem = NativeMemtable()
    mem.apply_records(buf, start, stop)
    assert mem.payload_bytes > len(buf)
    mem.update({b"k%d" % i: None for i in range(99)})
    assert mem.payload_bytes > len(buf)
    mem.put(b"k99", b"")
    assert mem.payload_bytes < len(buf)


def test_a_3_mib_value_round_trips():
    big = random.Random(3).randbytes(3 << 20)
    mem = NativeMemtable()
    mem.put(b"big", big)
    w = {b"big2": big}
    mem.apply_commit(w, encode_writes(w))
    assert mem.get(b"big") == big and mem.get(b"big2") == big
    [(puts, deletes)] = mem.fold_batches(10)
    assert puts == [(b"big", entry_value(b"big", big)), (b"big2", entry_value(b"big2", big))]


def test_an_empty_value_is_not_a_tombstone():
    mem = NativeMemtable()
    mem.update({b"empty": b"", b"gone": None})
    assert mem.get(b"empty") == b"" and mem.lookup(b"empty") == (True, b"")
    assert mem.get(b"gone", "absent") is None and mem.lookup(b"gone") == (True, None)
    assert mem.get(b"never", "absent") == "absent" and mem.lookup(b"never") == (False, None)


def test_last_lsn_is_a_settable_int():
    mem = NativeMemtable()
    assert mem.last_lsn == 0
    mem.last_lsn = 2**64 - 1
    assert mem.last_lsn == 2**64 - 1


# --- buffers ----------------------------------------------------------------------


def test_entries_replayed_from_an_mmap_outlive_the_callers_reference(tmp_path):
    batches = [{b"k%d" % i: b"v%d" % i, b"gone": None} for i in range(50)]
    data, start, stop = records_file(tmp_path, batches)
    mem = NativeMemtable()
    mem.apply_records(data, start, stop)
    del data
    (tmp_path / "seg").unlink()
    assert mem.get(b"k7") == b"v7"
    assert mem.snapshot(b"k4", b"k5") == [(b"k4", b"v4")] + [
        (b"k4%d" % i, b"v4%d" % i) for i in range(10)
    ]


def test_a_mapped_span_counts_its_records_not_the_whole_mapping(tmp_path):
    # A preallocated segment is mostly zeros: the memtable holds the pages of
    # the records it replayed, not the mapping's length.
    buf, start, stop = span_of([{b"k": b"v" * 100}], 0)
    path = tmp_path / "seg"
    path.write_bytes(buf + bytes(1 << 20))
    with open(path, "rb") as f:
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    mem = NativeMemtable()
    mem.apply_records(data, start, stop)
    assert stop - start <= mem.payload_bytes < 64 * 1024
    same = NativeMemtable()
    same.apply_records(buf + bytes(1 << 20), start, stop)  # bytes are held whole
    assert same.payload_bytes > 1 << 20


def test_an_mmap_held_by_the_memtable_cannot_be_closed(tmp_path):
    # Recovery must drop its mmaps, not close them, once it replays into a
    # NativeMemtable: the memtable holds a buffer export on each.
    data, start, stop = records_file(tmp_path, [{b"k": b"v"}])
    mem = NativeMemtable()
    mem.apply_records(data, start, stop)
    with pytest.raises(BufferError):
        data.close()
    mem.put(b"k", b"new")  # the last entry in it goes: the export is released
    data.close()


def test_concurrent_gets_see_only_written_values():
    mem = NativeMemtable()
    written = {b"v%d" % i for i in range(2000)}
    mem.update({b"k%d" % i: b"v0" for i in range(64)})
    done = threading.Event()
    bad: list = []

    def reader():
        rng = random.Random()
        while not done.is_set():
            v = mem.get(b"k%d" % rng.randrange(64))
            if v not in written:
                bad.append(v)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(2000):
        w = {b"k%d" % (i % 64): b"v%d" % i, b"n%d" % i: b"v%d" % i}
        mem.apply_commit(w, encode_writes(w))
        mem.put(b"k%d" % ((i * 7) % 64), b"v%d" % i)
    done.set()
    for t in threads:
        t.join()
    assert bad == []


# --- frozen tables: freeze, thaw, sorting without the GIL ----------------------------


def test_a_frozen_table_answers_reads_and_takes_writes_after_thaw():
    mem, before = filled_pair()
    mem.freeze()
    assert mem.frozen
    assert mem.get(b"a") == b"1" and mem.lookup(b"b") == (True, None)
    assert mem.snapshot() == before and len(list(mem.fold_batches(1))) == 2
    mem.thaw()
    assert not mem.frozen
    mem.put(b"c", b"3")
    assert mem.snapshot() == before + [(b"c", b"3")]


def random_keys(n: int, seed: int) -> list[bytes]:
    """n distinct keys, b"key" + 8 random bytes, in random order."""
    data = random.Random(seed).randbytes(8 * n)
    keys = list({b"key" + data[i : i + 8]: None for i in range(0, 8 * n, 8)})
    assert len(keys) == n  # 2^64 values: a repeat is all but impossible
    return keys


def test_python_threads_run_while_a_frozen_table_is_sorted():
    # A checkpoint's fold must not stall committers: the spinner counts the
    # loops it runs after the sort began (flag set) and before the order
    # was installed (payload_bytes grows by it, under the GIL).  Holding
    # the GIL, the sort would leave it only a switch in the two bytecodes
    # before the call; a long switch interval makes that all but never.
    mem = NativeMemtable()
    mem.update(dict.fromkeys(random_keys(1_000_000, seed=1), b"v" * 10))
    mem.freeze()
    unsorted = mem.payload_bytes
    sorting = threading.Event()
    running = threading.Event()
    done = threading.Event()
    during = [0]

    def spin():
        running.set()
        while not done.is_set():
            if sorting.is_set() and mem.payload_bytes == unsorted:
                during[0] += 1

    spinner = threading.Thread(target=spin)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    try:
        spinner.start()
        running.wait()
        sorting.set()
        batches = mem.fold_batches(512)
        done.set()
        spinner.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert mem.payload_bytes > unsorted
    assert during[0] > 1000
    assert len(next(batches)[0]) == 512


def pair_of(*updates: dict) -> tuple[NativeMemtable, Memtable]:
    """Both memtables after the same updates, the native one not yet sorted."""
    mem, oracle = NativeMemtable(), Memtable()
    for u in updates:
        mem.update(u)
        oracle.update(u)
    return mem, oracle


def test_concurrent_ordered_reads_and_a_fold_of_a_frozen_table_agree_with_the_oracle():
    # Enough new keys to sort without the GIL, after a sorted prefix (an
    # ordered read before the rest was written) that each sorter pins and
    # merges with; two items() and a fold sort at once, one order wins.
    keys = random_keys(60_000, seed=2)
    mem, oracle = pair_of(
        {k: (None if i % 7 == 0 else k[-5:]) for i, k in enumerate(keys[:20_000])}
    )
    mem.snapshot()
    unsorted = mem.payload_bytes
    mem.update({k: k[-3:] for k in keys[20_000:]})
    oracle.update({k: k[-3:] for k in keys[20_000:]})
    mem.freeze()
    barrier = threading.Barrier(3)
    got: dict = {}

    def read(name, read_table):
        barrier.wait()
        got[name] = read_table()

    threads = [
        threading.Thread(target=read, args=("items1", lambda: list(mem.items()))),
        threading.Thread(target=read, args=("items2", lambda: list(mem.items(b"key1", None)))),
        threading.Thread(target=read, args=("fold", lambda: list(mem.fold_batches(512)))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got["items1"] == list(oracle.items())
    assert got["items2"] == list(oracle.items(b"key1", None))
    assert got["fold"] == list(oracle.fold_batches(512))
    assert mem.payload_bytes > unsorted  # one order installed, the others freed


def test_thaw_waits_for_a_sort_running_without_the_gil():
    # Writes would move the arrays the sorter reads: thaw() must return only
    # once the order is built and installed (payload_bytes counts it).
    keys = random_keys(300_000, seed=3)
    mem = NativeMemtable()
    mem.update(dict.fromkeys(keys, b"v"))
    mem.freeze()
    unsorted = mem.payload_bytes
    started = threading.Event()
    got: list = []

    def fold():
        started.set()
        got.extend(mem.fold_batches(4096))

    folder = threading.Thread(target=fold)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.05)
    try:
        folder.start()
        started.wait()  # the GIL comes back here only once the folder lets go of it: sorting
        assert mem.payload_bytes == unsorted
        mem.thaw()
        assert mem.payload_bytes > unsorted
        mem.put(b"key-new", b"x")
        folder.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert [k for puts, _ in got for k, _ in puts] == sorted(keys)
    assert got[0][0][0] == (min(keys), entry_value(min(keys), b"v"))
    assert mem.get(b"key-new") == b"x" and len(mem) == len(keys) + 1


# Error paths


def test_every_write_to_a_frozen_table_is_refused_and_changes_nothing():
    mem, before = filled_pair()
    mem.freeze()
    buf, start, stop = span_of([{b"x": b"y"}], 0)
    writes = [
        lambda: mem.put(b"x", b"y"),
        lambda: mem.put(b"a", None),
        lambda: mem.update({b"x": b"y"}),
        lambda: mem.update({}),
        lambda: mem.apply_commit({b"x": b"y"}, encode_writes({b"x": b"y"})),
        lambda: mem.apply_records(buf, start, stop),
    ]
    for write in writes:
        with pytest.raises(RuntimeError, match="memtable is frozen"):
            write()
    assert mem.snapshot() == before and mem.frozen


def test_an_update_whose_mapping_freezes_the_table_is_refused():
    # items() of the mapping is Python code that runs before any change.
    mem, before = filled_pair()

    class Freezing(Mapping):
        def __getitem__(self, key):
            return {b"x": b"y"}[key]

        def __iter__(self):
            return iter([b"x"])

        def __len__(self):
            return 1

        def items(self):
            mem.freeze()
            return [(b"x", b"y")]

    with pytest.raises(RuntimeError, match="frozen"):
        mem.update(Freezing())
    assert mem.snapshot() == before


MALFORMED = {
    "no op count": b"\x01\x00",
    "count too high": encode_writes({b"k": b"v"})[:4].replace(b"\x01", b"\x02")
    + encode_writes({b"k": b"v"})[4:],
    "unknown kind": b"\x01\x00\x00\x00\x09\x01\x00\x00\x00\x00\x00k",
    "delete with a value": b"\x01\x00\x00\x00\x02\x01\x00\x01\x00\x00\x00kv",
    "empty key": b"\x01\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00",
    "key of 512 bytes": b"\x01\x00\x00\x00\x01\x00\x02\x00\x00\x00\x00" + b"k" * 512,
    "value past the end": b"\x01\x00\x00\x00\x01\x01\x00\x05\x00\x00\x00kv",
    "trailing byte": encode_writes({b"k": b"v"}) + b"\x00",
}


def filled_pair() -> tuple[NativeMemtable, list]:
    mem = NativeMemtable()
    mem.update({b"a": b"1", b"b": None})
    return mem, mem.snapshot()


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_payload_is_refused_and_changes_nothing(name):
    mem, before = filled_pair()
    bad = MALFORMED[name]
    good = encode_writes({b"a": b"changed", b"c": b"new"})  # two ops, then the bad ones
    if len(bad) >= 4:
        count = 2 + int.from_bytes(bad[:4], "little")
        bad_after_good = count.to_bytes(4, "little") + good[4:] + bad[4:]
    else:
        bad_after_good = good + bad
    with pytest.raises(ValueError, match="offset"):
        mem.apply_commit({}, bad_after_good)
    with pytest.raises(ValueError, match="offset"):
        mem.apply_commit({}, MALFORMED[name])
    assert mem.snapshot() == before and len(mem) == 2


@pytest.mark.parametrize("name", MALFORMED)
def test_a_span_with_a_malformed_record_is_refused_and_changes_nothing(name):
    mem, before = filled_pair()
    buf, start, stop = span_of([{b"a": b"changed"}], 3)
    bad = encode_record(7, 2, 2, encode_writes({b"x": b"y"}))[:32]
    bad = bad[:4] + len(MALFORMED[name]).to_bytes(4, "little") + bad[8:] + MALFORMED[name]
    buf = buf[:stop] + bad
    with pytest.raises(ValueError, match=f"offset {stop + 32}"):
        mem.apply_records(buf, start, len(buf))
    assert mem.snapshot() == before


def test_a_span_ending_inside_a_record_is_refused():
    mem, before = filled_pair()
    buf, start, stop = span_of([{b"a": b"x"}, {b"c": b"y"}], 0)
    for cut in (stop - 1, stop - 20, 10):
        with pytest.raises(ValueError, match="offset"):
            mem.apply_records(buf, start, cut)
    with pytest.raises(ValueError, match="start <= stop"):
        mem.apply_records(buf, 0, len(buf) + 1)
    assert mem.snapshot() == before


def test_keys_must_be_bytes_of_1_to_511_bytes():
    mem, before = filled_pair()
    with pytest.raises(TypeError, match="str"):
        mem.put("k", b"v")
    with pytest.raises(TypeError, match="int"):
        mem.get(1)
    with pytest.raises(TypeError, match="bytearray"):
        mem.update({bytearray(b"k"): b"v"})
    for bad in (b"", b"k" * (MAX_KEY_SIZE + 1)):
        with pytest.raises(ValueError, match="1..511"):
            mem.put(bad, b"v")
        with pytest.raises(ValueError, match="1..511"):
            mem.lookup(bad)
    assert mem.snapshot() == before


def test_values_must_be_bytes_or_none_and_a_bad_update_changes_nothing():
    mem, before = filled_pair()
    with pytest.raises(TypeError, match="int"):
        mem.put(b"k", 5)
    with pytest.raises(TypeError, match="str"):
        mem.update({b"a": b"fine", b"k": "text"})
    with pytest.raises(TypeError, match="payload must be bytes"):
        mem.apply_commit({}, bytearray(encode_writes({b"k": b"v"})))
    assert mem.snapshot() == before


def test_range_bounds_and_fold_step_are_checked():
    mem, _ = filled_pair()
    with pytest.raises(TypeError, match="start"):
        mem.items("a")
    with pytest.raises(ValueError, match="step"):
        mem.fold_batches(0)


def test_an_index_past_the_huge_page_threshold_finds_every_key():
    """Past 4 MiB of index (524,288 slots, reached at ~393k keys) the slots
    live in a mapping of their own with huge pages asked for: every key is
    found, updated and deleted through it, and a grow from it and the
    table's release unmap it (run under fuzz/build_asan.sh too)."""
    m = NativeMemtable()
    n = 600_000
    keys = [b"key-%09d" % i for i in range(n)]
    for i in range(0, n, 1000):
        m.update({k: b"v" for k in keys[i : i + 1000]})
    assert len(m) == n
    assert all(m.get(k) == b"v" for k in keys[::7])
    for k in keys[::3]:
        m.put(k, None)
    assert m.lookup(keys[3]) == (True, None)
    assert m.get(keys[1]) == b"v"
    assert sum(1 for _ in m.items()) == n
    del m
