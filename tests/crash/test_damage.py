"""The damage matrix: real store files cut, zero-filled, bit-flipped, mixed
up with other stores' files, and LMDB's own data file damaged.

What must hold:

* a damaged tail (a crash during a write) recovers an exact prefix of the
  committed sequence, and cutting later never yields a shorter prefix;
* damage before the tail is an error in tolerate_tail and strict, and a
  recovered prefix in point_in_time with the damaged bytes kept in lost/;
* a flipped bit in the base image is an error, never wrong data.

Stores are written with sync="always": each record was durable before the
next was written, so every later record proves the one before it was synced.
"""

from __future__ import annotations

import os
import shutil

import pytest

import safepoint
from helpers import (
    copy_store,
    find_all,
    flip_bit,
    log_end,
    lost_files,
    read_bytes,
    read_state,
    record_at_lsn,
    segment_first_lsn,
    segment_records,
    segments,
    truncate_at,
    zero_range,
    zero_tail,
)
from safepoint.errors import CorruptionError

from .child_writer import commit_serial, serial_model

OPTIONS = {"sync": "always", "checkpoint_bytes": None, "segment_bytes": 64 << 10}
SMALL_SEGMENTS = {**OPTIONS, "segment_bytes": 4096}
MODES = ["tolerate_tail", "strict", "point_in_time"]
CUT_STEP = 7  # bytes between cuts: lands on every field of every record
TAIL_RECORDS = 3  # how many records at the end of the log the cuts sweep


class _Templates:
    """Stores written once per module: most tests damage a copy of the same
    few stores, and writing one costs an fdatasync per commit."""

    root = ""
    paths: dict[tuple[object, ...], str] = {}


@pytest.fixture(scope="module", autouse=True)
def _templates(tmp_path_factory):
    _Templates.root = str(tmp_path_factory.mktemp("templates"))
    _Templates.paths = {}
    yield


def build_store(path, count: int, *, fresh: bool = False, **options) -> str:
    """A closed store holding serial transactions 1..count, one record each.

    A copy of a store written once per module, unless ``fresh`` (a store with
    a store id of its own).
    """
    opts = {**OPTIONS, **options}
    key = (count, *sorted(opts.items()))
    if fresh or key not in _Templates.paths:
        target = path if fresh else os.path.join(_Templates.root, f"t{len(_Templates.paths)}")
        with safepoint.open(target, **opts) as db:
            for i in range(1, count + 1):
                commit_serial(db, i)
        if fresh:
            return str(path)
        _Templates.paths[key] = target
    return str(copy_store(_Templates.paths[key], path))


def prefix_of(state: dict[bytes, bytes]) -> int:
    """j such that ``state`` is the model after 1..j; fails if there is none."""
    j = int(state.get(b"counter", b"0"))
    assert state == serial_model(j), f"state is not the model after {j} transactions"
    return j


# --- a damaged tail: an exact prefix, monotone in the cut ------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "zero_fill"])
def test_tail_damaged_at_any_offset_recovers_an_exact_prefix_monotone_in_the_cut(tmp_path, damage):
    count = 30
    pristine = build_store(tmp_path / "pristine.sp", count)
    seg_name = segments(pristine)[-1].name
    recs = segment_records(segments(pristine)[-1])
    assert len(recs) == count
    start, end = recs[-TAIL_RECORDS].offset, log_end(segments(pristine)[-1])
    cuts = [*range(start, end, CUT_STEP), end]
    recovered = []
    for n, cut in enumerate(cuts):
        store = copy_store(pristine, tmp_path / f"cut{n}.sp")
        seg = store / "wal" / seg_name
        if damage == "truncate":
            truncate_at(seg, cut)
        else:
            zero_tail(seg, cut)
        j = prefix_of(read_state(store, **OPTIONS))
        whole = sum(1 for r in recs if r.offset + r.length <= cut)
        assert j == whole, f"cut at {cut}: recovered {j} transactions, {whole} were whole"
        recovered.append(j)
        shutil.rmtree(store)
    assert recovered == sorted(recovered)
    assert recovered[0] == count - TAIL_RECORDS and recovered[-1] == count


def test_tail_cut_in_point_in_time_recovers_the_same_prefix(tmp_path):
    store = build_store(tmp_path / "s.sp", 30)
    seg = segments(store)[-1]
    last = segment_records(seg)[-1]
    truncate_at(seg, last.offset + 9)
    assert prefix_of(read_state(store, **OPTIONS, recovery="point_in_time")) == 29


def test_flipped_bit_in_the_very_last_record_is_a_torn_tail(tmp_path):
    # Nothing after it proves it was ever durable: a crash could have torn it.
    store = build_store(tmp_path / "s.sp", 30)
    seg, rec = record_at_lsn(store, 30)
    flip_bit(seg, rec.offset + rec.length - 1)
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.torn_tail
        assert prefix_of(dict(db.items())) == 29


# --- damage in the middle -------------------------------------------------------------------

# Where in a record the bit flips: every field of the header, and the payload.
FIELDS = {"crc": 1, "length": 5, "lsn": 8, "time": 17, "durable_lsn": 24, "payload": 40}


def damage_record(store: str, lsn: int, field_offset: int) -> tuple[str, int, bytes]:
    """Flip a bit of record ``lsn``; return (segment, record offset, damaged
    bytes from the record to the last non-zero byte of the segment)."""
    seg, rec = record_at_lsn(store, lsn)
    flip_bit(seg, rec.offset + field_offset, 3)
    return str(seg), rec.offset, read_bytes(seg, rec.offset).rstrip(b"\0")


def middle_store(tmp_path) -> tuple[str, int, int]:
    """A store of several small segments; return (path, a middle lsn in the
    first segment, a middle lsn in the last segment)."""
    store = build_store(tmp_path / "s.sp", 120, **SMALL_SEGMENTS)
    segs = segments(store)
    assert len(segs) >= 3
    last_first = segment_first_lsn(segs[-1])
    assert len(segment_records(segs[-1])) >= 3
    return store, 7, last_first + 1


@pytest.mark.parametrize("where", ["first_segment", "last_segment"])
@pytest.mark.parametrize("field", list(FIELDS))
@pytest.mark.parametrize("mode", ["tolerate_tail", "strict"])
def test_flipped_bit_before_the_tail_raises(tmp_path, mode, field, where):
    store, first_mid, last_mid = middle_store(tmp_path)
    lsn = first_mid if where == "first_segment" else last_mid
    seg, offset, _ = damage_record(store, lsn, FIELDS[field])
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **SMALL_SEGMENTS, recovery=mode)
    err = info.value
    assert (err.file, err.offset, err.lsn) == (
        os.path.join("wal", os.path.basename(seg)),
        offset,
        lsn,
    )
    assert lost_files(store) == []


@pytest.mark.parametrize("where", ["first_segment", "last_segment"])
@pytest.mark.parametrize("field", list(FIELDS))
def test_flipped_bit_before_the_tail_recovers_the_prefix_in_point_in_time(tmp_path, field, where):
    store, first_mid, last_mid = middle_store(tmp_path)
    lsn = first_mid if where == "first_segment" else last_mid
    later = [s for s in segments(store) if segment_first_lsn(s) > lsn]
    later_bytes = {s.name: read_bytes(s) for s in later}
    _, _, damaged = damage_record(store, lsn, FIELDS[field])
    with safepoint.open(store, **SMALL_SEGMENTS, recovery="point_in_time") as db:
        assert prefix_of(dict(db.items())) == lsn - 1
        assert not db.recovery.torn_tail
    kept = {p.name: read_bytes(p) for p in lost_files(store)}
    assert damaged in kept.values()  # the damaged record and what followed it
    for name, data in later_bytes.items():
        assert kept[name] == data  # later segments moved aside whole
    assert prefix_of(read_state(store, **SMALL_SEGMENTS)) == lsn - 1


SECTOR = 512


def lose_sector(store: str, lsn: int) -> tuple[int, int]:
    """Zero the 512-byte sector holding the start of record ``lsn`` (a lost
    write); return (first lsn damaged, offset of its record)."""
    seg, rec = record_at_lsn(store, lsn)
    start = rec.offset // SECTOR * SECTOR
    hit = [r for r in segment_records(seg) if r.offset + r.length > start]
    zero_range(seg, start, start + SECTOR)
    return hit[0].lsn, hit[0].offset


@pytest.mark.parametrize("mode", ["tolerate_tail", "strict"])
def test_lost_sector_before_the_tail_raises(tmp_path, mode):
    store = build_store(tmp_path / "s.sp", 40)
    lsn, offset = lose_sector(store, 12)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS, recovery=mode)
    assert (info.value.lsn, info.value.offset) == (lsn, offset)


def test_lost_sector_before_the_tail_recovers_the_prefix_in_point_in_time(tmp_path):
    store = build_store(tmp_path / "s.sp", 40)
    lsn, _ = lose_sector(store, 12)
    assert prefix_of(read_state(store, **OPTIONS, recovery="point_in_time")) == lsn - 1
    assert len(lost_files(store)) == 1


def test_damage_in_the_last_record_of_a_segment_with_a_later_segment_raises(tmp_path):
    store, _, _ = middle_store(tmp_path)
    seg = segments(store)[0]
    last = segment_records(seg)[-1]
    flip_bit(seg, last.offset + last.length - 1)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **SMALL_SEGMENTS)
    assert info.value.lsn == last.lsn
    assert "later segment" in str(info.value)


# --- segments that do not belong -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tolerate_tail", "strict"])
def test_missing_middle_segment_raises(tmp_path, mode):
    store, _, _ = middle_store(tmp_path)
    gone = segments(store)[1]
    gap = segment_first_lsn(gone)
    os.remove(gone)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **SMALL_SEGMENTS, recovery=mode)
    assert info.value.lsn == gap
    assert "missing" in str(info.value)


def test_missing_middle_segment_recovers_the_prefix_in_point_in_time(tmp_path):
    store, _, _ = middle_store(tmp_path)
    gone = segments(store)[1]
    gap = segment_first_lsn(gone)
    later = {s.name: read_bytes(s) for s in segments(store)[2:]}
    os.remove(gone)
    assert prefix_of(read_state(store, **SMALL_SEGMENTS, recovery="point_in_time")) == gap - 1
    kept = {p.name: read_bytes(p) for p in lost_files(store)}
    assert all(kept[name] == data for name, data in later.items())


@pytest.mark.parametrize("mode", MODES)
def test_segment_of_another_store_after_the_log_raises(tmp_path, mode):
    store = build_store(tmp_path / "s.sp", 10)
    other = build_store(tmp_path / "other.sp", 10, fresh=True)
    # Named as the store's next segment would be, so only the store id is wrong.
    foreign = os.path.join(store, "wal", f"{11:020d}.wal")
    shutil.copyfile(segments(other)[0], foreign)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS, recovery=mode)
    assert "another store" in str(info.value)
    assert info.value.file == os.path.join("wal", os.path.basename(foreign))


# --- the base image -----------------------------------------------------------------------------

VICTIM_KEY = b"victim-key-7f3a9c"
VICTIM_VALUE = b"DISTINCTIVE-VALUE-5b1e0d4c8a2f-" * 3


def checkpointed_store(tmp_path) -> str:
    """A store whose base image holds the victim between other entries."""
    path = tmp_path / "s.sp"
    with safepoint.open(path, **OPTIONS) as db:
        for i in range(1, 21):
            commit_serial(db, i)
        db.put(VICTIM_KEY, VICTIM_VALUE)
        db.checkpoint()
    return str(path)


def flip_in_base(store: str, needle: bytes, index: int) -> None:
    """Flip a bit of byte ``index`` of every copy of ``needle`` in data.mdb."""
    data_file = os.path.join(store, "base", "data.mdb")
    hits = find_all(data_file, needle)
    assert hits, "the needle is not in the base image"
    for at in hits:
        flip_bit(data_file, at + index, 4)


def test_checkpointed_value_is_read_from_the_base_image(tmp_path):
    # The premise of the damage tests below: the value is in data.mdb and
    # no longer in the log that recovery replays.
    store = checkpointed_store(tmp_path)
    assert find_all(os.path.join(store, "base", "data.mdb"), VICTIM_VALUE)
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.records_replayed == 0
        assert db[VICTIM_KEY] == VICTIM_VALUE


def test_flipped_value_byte_in_the_base_image_raises_on_read(tmp_path):
    store = checkpointed_store(tmp_path)
    flip_in_base(store, VICTIM_VALUE, 40)
    with safepoint.open(store, **OPTIONS) as db:
        with pytest.raises(CorruptionError) as info:
            db.get(VICTIM_KEY)
        assert info.value.file == os.path.join("base", "data.mdb")
        with pytest.raises(CorruptionError):
            db[VICTIM_KEY]  # noqa: B018 - the read is the test
        assert db.get(b"counter") == b"20"  # undamaged entries still read


def test_flipped_value_byte_in_the_base_image_raises_during_iteration(tmp_path):
    store = checkpointed_store(tmp_path)
    flip_in_base(store, VICTIM_VALUE, 0)
    with safepoint.open(store, **OPTIONS) as db:
        with pytest.raises(CorruptionError):
            list(db.items())
        with pytest.raises(CorruptionError):
            list(db.keys())
        with pytest.raises(CorruptionError):
            list(db.values(prefix=b"victim"))


def test_flipped_key_byte_in_the_base_image_raises_during_iteration(tmp_path):
    store = checkpointed_store(tmp_path)
    flip_in_base(store, VICTIM_KEY, len(VICTIM_KEY) - 1)
    with safepoint.open(store, **OPTIONS) as db:
        with pytest.raises(CorruptionError):
            list(db.items())
