"""The memtable: a dict whose key order is built on demand.

Checked against a model (a dict, sorted on every read) under hypothesis,
through interleaved puts, deletes and range reads; plus the properties the
store relies on: a range's keys are fixed when it is taken, an ordered key
list once handed out never changes, and a memtable no longer written (the
frozen one of a checkpoint) keeps answering the same.
"""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from safepoint.base import entry_value
from safepoint.memtable import _ENTRY_OVERHEAD_BYTES, _INSORT_MAX, Memtable
from safepoint.records import encode_record, encode_writes

keys = st.binary(min_size=1, max_size=4)
bounds = st.one_of(st.none(), st.binary(max_size=4))
values = st.one_of(st.none(), st.binary(max_size=8))  # None: a delete
steps = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, values),
        st.tuples(st.just("range"), bounds, bounds),
        st.tuples(st.just("many"), st.dictionaries(keys, values, max_size=_INSORT_MAX + 8)),
    ),
    max_size=40,
)


def model_range(model, start, stop):
    return [
        (k, v)
        for k, v in sorted(model.items())
        if (start is None or k >= start) and (stop is None or k < stop)
    ]


def filled(entries):
    mem = Memtable()
    for k, v in entries:
        mem.put(k, v)
    return mem


@given(steps)
def test_ranges_match_a_sorted_dict_through_interleaved_writes(script):
    mem, model = Memtable(), {}
    for step in script:
        if step[0] == "put":
            _, k, v = step
            mem.put(k, v)
            model[k] = v
        elif step[0] == "many":
            mem.update(step[1])
            model.update(step[1])
        else:
            _, start, stop = step
            assert list(mem.items(start, stop)) == model_range(model, start, stop)
    assert list(mem.items()) == model_range(model, None, None)
    assert len(mem) == len(model)


@given(st.dictionaries(keys, values), st.dictionaries(keys, values))
def test_keys_added_after_an_ordered_read_are_merged_in_order(first, second):
    mem = Memtable()
    mem.update(first)
    list(mem.items())
    mem.update(second)
    assert list(mem.items()) == sorted({**first, **second}.items())


def test_a_delete_is_a_tombstone_that_stays_in_ranges():
    mem = filled([(b"a", b"1"), (b"b", b"2")])
    mem.put(b"a", None)
    assert list(mem.items()) == [(b"a", None), (b"b", b"2")]
    assert mem.lookup(b"a") == (True, None)


def test_lookup_of_an_unknown_key_says_not_found():
    assert filled([(b"a", b"1")]).lookup(b"z") == (False, None)


def test_a_range_keeps_the_keys_it_was_taken_with():
    mem = filled([(b"a", b"1"), (b"c", b"3")])
    taken = mem.items()
    mem.put(b"b", b"2")
    assert list(taken) == [(b"a", b"1"), (b"c", b"3")]


def test_a_snapshot_is_unchanged_by_later_writes():
    mem = filled([(b"a", b"1"), (b"c", b"3")])
    snap = mem.snapshot()
    mem.put(b"a", b"new")
    mem.put(b"b", b"2")
    assert snap == [(b"a", b"1"), (b"c", b"3")]


def test_a_handed_out_key_order_is_never_changed_in_place():
    mem = filled([(b"b", b"1"), (b"d", b"2")])
    order = mem._ordered()
    few = [b"a", b"c"]  # merged one by one
    many = [bytes([0x61, i]) for i in range(_INSORT_MAX + 1)]  # merged by a sort
    for batch in (few, many):
        mem.update(dict.fromkeys(batch, b"x"))
        assert mem._ordered() is not order
        assert order == [b"b", b"d"]


def test_a_frozen_memtable_answers_the_same_while_a_new_one_is_written():
    frozen = filled([(b"k%d" % i, b"v%d" % i) for i in range(50)])
    before = list(frozen.items())
    newer = Memtable()
    for i in range(0, 50, 3):
        newer.put(b"k%d" % i, None)
        newer.put(b"n%d" % i, b"new")
    assert list(frozen.items()) == before
    assert list(frozen.items(b"k1", b"k2")) == [e for e in before if b"k1" <= e[0] < b"k2"]


def test_concurrent_ordered_reads_of_a_frozen_memtable_agree():
    # A checkpoint thread and an iterator both order the frozen memtable,
    # without a lock between them.
    mem = Memtable()
    mem.update({b"%05d" % i: b"v" for i in range(0, 20000, 2)})
    list(mem.items())
    mem.update({b"%05d" % i: b"v" for i in range(1, 20000, 2)})  # unmerged keys
    want = sorted(mem._data)
    results = []

    def read():
        results.append([k for k, _ in mem.items()])

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 4


def test_a_frozen_memtable_answers_reads_and_takes_writes_after_thaw():
    mem = filled([(b"a", b"1"), (b"b", None)])
    mem.freeze()
    assert mem.frozen
    assert mem.get(b"a") == b"1" and mem.lookup(b"b") == (True, None)
    assert list(mem.items()) == [(b"a", b"1"), (b"b", None)]
    assert list(mem.fold_batches(8)) == [([(b"a", entry_value(b"a", b"1"))], [b"b"])]
    mem.thaw()
    assert not mem.frozen
    mem.put(b"c", b"3")
    assert mem.snapshot() == [(b"a", b"1"), (b"b", None), (b"c", b"3")]


def test_get_answers_value_tombstone_or_default():
    mem = filled([(b"k", b"v"), (b"gone", None)])
    missing = object()
    assert mem.get(b"k") == b"v"
    assert mem.get(b"gone", missing) is None
    assert mem.get(b"never", missing) is missing


def test_apply_commit_sets_the_transactions_puts_and_tombstones():
    mem = filled([(b"gone", b"old")])
    writes = {b"k": b"v", b"gone": None}
    mem.apply_commit(writes, encode_writes(writes))
    assert list(mem.items()) == [(b"gone", None), (b"k", b"v")]


def test_apply_records_replays_every_op_of_a_span_in_order():
    payloads = [encode_writes({b"a": b"1", b"b": b"2"}), encode_writes({b"a": None})]
    log = b"".join(
        encode_record(0, lsn, 0, payload) for lsn, payload in enumerate(payloads, start=1)
    )
    mem = Memtable()
    mem.apply_records(b"pad" + log, 3, 3 + len(log))
    assert list(mem.items()) == [(b"a", None), (b"b", b"2")]


@given(st.dictionaries(keys, values, max_size=40), st.integers(1, 8))
def test_fold_batches_give_every_entry_in_order_as_base_entries(model, step):
    mem = filled(model.items())
    batches = list(mem.fold_batches(step))
    assert all(len(puts) + len(deletes) <= step for puts, deletes in batches)
    puts = [p for batch_puts, _ in batches for p in batch_puts]
    deletes = [k for _, batch_deletes in batches for k in batch_deletes]
    assert puts == [(k, entry_value(k, v)) for k, v in sorted(model.items()) if v is not None]
    assert deletes == sorted(k for k, v in model.items() if v is None)


def test_payload_bytes_counts_keys_values_and_per_entry_overhead():
    mem = filled([(b"ab", b"123"), (b"c", None), (b"ab", b"1")])
    assert mem.payload_bytes == 2 * _ENTRY_OVERHEAD_BYTES + len(b"ab1c")


def test_an_empty_memtable_holds_no_bytes():
    assert Memtable().payload_bytes == 0


# Error paths


def test_a_range_with_start_after_stop_is_empty():
    assert list(filled([(b"a", b"1"), (b"b", b"2")]).items(b"b", b"a")) == []


def test_every_write_to_a_frozen_memtable_is_refused_and_changes_nothing():
    mem = filled([(b"a", b"1"), (b"b", None)])
    mem.freeze()
    log = encode_record(0, 1, 0, encode_writes({b"x": b"y"}))
    writes = [
        lambda: mem.put(b"x", b"y"),
        lambda: mem.update({b"x": b"y"}),
        lambda: mem.update({}),
        lambda: mem.apply_commit({b"x": b"y"}, encode_writes({b"x": b"y"})),
        lambda: mem.apply_records(log, 0, len(log)),
    ]
    for write in writes:
        with pytest.raises(RuntimeError, match="memtable is frozen"):
            write()
    assert mem.snapshot() == [(b"a", b"1"), (b"b", None)] and mem.frozen
