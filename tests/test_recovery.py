"""Recovery at open, on real store files: torn tails, damage in the middle,
the three recovery modes, what lands in ``lost/``, crashes during recovery,
and logs that do not belong to the base image.

Every store here is written with sync="always", so each record was durable
before the next one was written: a damaged record followed by later records
is damage, never a torn tail (docs/design.md, "Telling a torn tail from
damage").
"""

from __future__ import annotations

import os
import shutil

import pytest

import safepoint
from helpers import (
    copy_store,
    flip_bit,
    last_segment,
    lost_files,
    read_bytes,
    read_state,
    record_at_lsn,
    segment_first_lsn,
    segment_records,
    segments,
    truncate_at,
    write_at,
    zero_range,
)
from safepoint.errors import CorruptionError
from safepoint.format import segment_name
from safepoint.fs import File, FileSystem

SEGMENT_BYTES = 64 << 10
OPTIONS = {"sync": "always", "checkpoint_bytes": None, "segment_bytes": SEGMENT_BYTES}
FIRST = os.path.join("wal", segment_name(1))


# --- the workload: transaction i, and the state after the first j ------------------------


def apply_txn(state: dict[bytes, bytes], i: int) -> None:
    """Transaction ``i``: a counter, a rotating key, and a delete."""
    state[b"counter"] = b"%d" % i
    state[b"k%d" % (i % 7)] = b"value-%d-" % i * 3
    state.pop(b"k%d" % ((i + 3) % 7), None)


def model(j: int) -> dict[bytes, bytes]:
    """The state after transactions 1..j."""
    state: dict[bytes, bytes] = {}
    for i in range(1, j + 1):
        apply_txn(state, i)
    return state


def commit_txn(db: safepoint.Store, i: int) -> None:
    """Commit transaction ``i`` as one record."""
    with db.transaction() as txn:
        txn.put(b"counter", b"%d" % i)
        txn.put(b"k%d" % (i % 7), b"value-%d-" % i * 3)
        txn.delete(b"k%d" % ((i + 3) % 7))


def build_store(path, count: int, **options) -> str:
    """A closed store holding transactions 1..count, one record each."""
    opts = {**OPTIONS, **options}
    with safepoint.open(path, **opts) as db:
        for i in range(1, count + 1):
            commit_txn(db, i)
    return str(path)


def wal_image(store) -> dict[str, bytes]:
    """The bytes of every file in wal/, by name."""
    d = os.path.join(store, "wal")
    return {n: read_bytes(os.path.join(d, n)) for n in sorted(os.listdir(d))}


# --- damaging the tail ---------------------------------------------------------------------


def cut_last_record(store, how: str) -> int:
    """Damage the end of the log; return the offset where the damage starts.

    ``truncated``: the file ends half-way through the last record.
    ``zeroed``: the second half of the last record never reached the disk.
    ``garbage``: bytes that are no record follow the last record.
    """
    seg = last_segment(store)
    last = segment_records(seg)[-1]
    if how == "truncated":
        truncate_at(seg, last.offset + last.length // 2)
        return last.offset
    if how == "zeroed":
        zero_range(seg, last.offset + last.length // 2, last.offset + last.length)
        return last.offset
    end = last.offset + last.length
    write_at(seg, end, b"\xde\xad\xbe\xef garbage, not a record" * 3)
    return end


TAILS = ["truncated", "zeroed", "garbage"]


def expected_after_cut(how: str, count: int) -> int:
    return count if how == "garbage" else count - 1


@pytest.mark.parametrize("how", TAILS)
def test_torn_tail_is_cut_in_tolerate_tail(tmp_path, how):
    store = build_store(tmp_path / "s.sp", 12)
    offset = cut_last_record(store, how)
    with safepoint.open(store, **OPTIONS) as db:
        report = db.recovery
        assert dict(db.items()) == model(expected_after_cut(how, 12))
    assert not report.clean and report.torn_tail
    assert report.last_lsn == expected_after_cut(how, 12)
    assert f"at offset {offset}" in report.stop_reason
    assert report.bytes_dropped > 0


@pytest.mark.parametrize("how", TAILS)
def test_bytes_cut_from_a_torn_tail_are_kept_in_lost(tmp_path, how):
    store = build_store(tmp_path / "s.sp", 12)
    offset = cut_last_record(store, how)
    seg = last_segment(store)
    damaged = read_bytes(seg)
    with safepoint.open(store, **OPTIONS) as db:
        set_aside = db.recovery.set_aside
    [kept] = lost_files(store)
    assert set_aside == [os.path.join("lost", kept.name)]
    cut = read_bytes(kept)
    assert cut and damaged[offset : offset + len(cut)] == cut
    assert damaged[offset + len(cut) :].strip(b"\0") == b""  # only zeros left out
    assert read_bytes(seg, offset, offset + len(cut)) == bytes(len(cut))


@pytest.mark.parametrize("how", TAILS)
def test_second_open_after_a_cut_is_clean_and_equal(tmp_path, how):
    store = build_store(tmp_path / "s.sp", 12)
    cut_last_record(store, how)
    first = read_state(store, **OPTIONS)
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.clean
        assert dict(db.items()) == first
    assert len(lost_files(store)) == 1


def test_commits_after_a_cut_reuse_the_lsn_and_survive_reopen(tmp_path):
    store = build_store(tmp_path / "s.sp", 12)
    cut_last_record(store, "zeroed")
    with safepoint.open(store, **OPTIONS) as db:
        commit_txn(db, 12)
        commit_txn(db, 13)
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.clean and db.recovery.last_lsn == 13
        assert dict(db.items()) == model(13)


@pytest.mark.parametrize("how", TAILS)
def test_point_in_time_cuts_a_torn_tail_like_tolerate_tail(tmp_path, how):
    store = build_store(tmp_path / "s.sp", 12)
    cut_last_record(store, how)
    with safepoint.open(store, **OPTIONS, recovery="point_in_time") as db:
        assert db.recovery.torn_tail
        assert dict(db.items()) == model(expected_after_cut(how, 12))
    assert len(lost_files(store)) == 1


def test_clean_log_needs_no_cut_in_any_mode(tmp_path):
    store = build_store(tmp_path / "s.sp", 12)
    for mode in ("strict", "tolerate_tail", "point_in_time"):
        with safepoint.open(store, **OPTIONS, recovery=mode) as db:
            assert db.recovery.clean and db.recovery.records_replayed == 12
            assert dict(db.items()) == model(12)
    assert lost_files(store) == []


# --- damage in the middle ------------------------------------------------------------------------


def flip_in_record(store, lsn: int) -> tuple[str, int]:
    """Flip one payload bit of record ``lsn``; return (segment, record offset)."""
    seg, rec = record_at_lsn(store, lsn)
    flip_bit(seg, rec.offset + rec.length - 3, 2)
    return str(seg), rec.offset


def test_flipped_bit_in_a_middle_record_raises_in_tolerate_tail(tmp_path):
    store = build_store(tmp_path / "s.sp", 12)
    _, offset = flip_in_record(store, 5)
    image = wal_image(store)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS)
    assert (info.value.file, info.value.offset, info.value.lsn) == (FIRST, offset, 5)
    assert wal_image(store) == image
    assert lost_files(store) == []


def test_flipped_bit_in_a_middle_record_raises_in_strict(tmp_path):
    store = build_store(tmp_path / "s.sp", 12)
    _, offset = flip_in_record(store, 5)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS, recovery="strict")
    assert (info.value.file, info.value.offset, info.value.lsn) == (FIRST, offset, 5)


def test_point_in_time_keeps_the_prefix_before_a_flipped_bit(tmp_path):
    store = build_store(tmp_path / "s.sp", 12)
    flip_in_record(store, 5)
    with safepoint.open(store, **OPTIONS, recovery="point_in_time") as db:
        report = db.recovery
        assert dict(db.items()) == model(4)
    assert not report.torn_tail and report.last_lsn == 4
    assert report.records_dropped == 7  # records 6..12 were valid, and are set aside
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.clean
        assert dict(db.items()) == model(4)


def test_point_in_time_keeps_the_damaged_bytes_in_lost(tmp_path):
    store = build_store(tmp_path / "s.sp", 12)
    seg, offset = flip_in_record(store, 5)
    damaged = read_bytes(seg, offset)
    end = offset + len(damaged.rstrip(b"\0"))
    with safepoint.open(store, **OPTIONS, recovery="point_in_time"):
        pass
    [kept] = lost_files(store)
    assert kept.name.endswith(".damaged")
    assert read_bytes(kept) == damaged[: end - offset]
    assert read_bytes(seg, offset, end) == bytes(end - offset)


def test_point_in_time_moves_later_segments_to_lost_without_deleting_them(tmp_path):
    store = build_store(tmp_path / "s.sp", 150, segment_bytes=4096)
    segs = segments(store)
    assert len(segs) >= 3
    later = {s.name: read_bytes(s) for s in segs[1:]}
    flip_in_record(store, 3)
    with safepoint.open(store, **OPTIONS, recovery="point_in_time") as db:
        assert dict(db.items()) == model(2)
        assert len(db.recovery.set_aside) == len(later) + 1
    kept = {p.name: read_bytes(p) for p in lost_files(store)}
    for name, data in later.items():
        assert kept[name] == data
    assert [s.name for s in segments(store)] == [segs[0].name]


def test_damage_followed_only_by_records_written_before_it_was_durable_is_a_torn_tail(tmp_path):
    # sync="none": no record ever saw an earlier one durable (durable_lsn 0),
    # so nothing proves record 5 was on disk before 6..12 were written.  A
    # crash can leave exactly this (the pages of one write land in any order):
    # recovery cuts from 5 on and keeps the bytes.
    store = build_store(tmp_path / "s.sp", 12, sync="none")
    seg, offset = flip_in_record(store, 5)
    damaged = read_bytes(seg, offset).rstrip(b"\0")
    with safepoint.open(store, **OPTIONS) as db:
        report = db.recovery
        assert dict(db.items()) == model(4)
    assert report.torn_tail and report.records_dropped == 7
    assert [read_bytes(p) for p in lost_files(store)] == [damaged]


def test_corruption_error_message_names_file_offset_and_lsn(tmp_path):
    store = build_store(tmp_path / "s.sp", 12)
    _, offset = flip_in_record(store, 5)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS)
    message = str(info.value)
    assert f"in {FIRST}" in message
    assert f"at offset {offset}" in message
    assert "(lsn 5)" in message
    assert "point_in_time" in message  # the way out


@pytest.mark.parametrize("how", TAILS)
def test_strict_refuses_a_torn_tail_and_changes_no_file(tmp_path, how):
    store = build_store(tmp_path / "s.sp", 12)
    offset = cut_last_record(store, how)
    image = wal_image(store)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS, recovery="strict")
    lsn = expected_after_cut(how, 12) + 1
    assert (info.value.file, info.value.offset, info.value.lsn) == (FIRST, offset, lsn)
    assert wal_image(store) == image
    assert lost_files(store) == []


# --- crashes during recovery ---------------------------------------------------------------


class Crash(Exception):
    """The process 'dies' here: the operation and everything after it never run."""


class CrashFile(File):
    __slots__ = ("fs",)

    def __init__(self, fd: int, path: str, fs: CrashFS) -> None:
        super().__init__(fd, path)
        self.fs = fs

    def zero_fill(self, start: int, end: int) -> None:
        self.fs.step("zero_fill", self.path)
        super().zero_fill(start, end)

    def sync_data(self) -> None:
        self.fs.step("sync_data", self.path)
        super().sync_data()

    def sync(self) -> None:
        self.fs.step("sync", self.path)
        super().sync()


class CrashFS(FileSystem):
    """Real files; raises ``Crash`` at the first operation named ``at`` whose
    path ends with ``suffix``.  Nothing after it runs, as after a kill."""

    def __init__(self, at: str, suffix: str = "") -> None:
        self.at, self.suffix = at, suffix
        self.crashed = False

    def step(self, op: str, path: str) -> None:
        if not self.crashed and op == self.at and path.endswith(self.suffix):
            self.crashed = True
            raise Crash(f"{op} {path}")

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        f = super().open(path, write=write, create=create)
        return CrashFile(f.fd, f.path, self)

    def rename(self, src: str, dst: str) -> None:
        self.step("rename", dst)
        super().rename(src, dst)

    def sync_dir(self, path: str) -> None:
        self.step("sync_dir", path)
        super().sync_dir(path)

    def makedirs(self, path: str) -> None:
        self.step("makedirs", path)
        super().makedirs(path)


# Each step of a cut (docs/design.md, Recovery step 5), in order.
CUT_STEPS = [
    ("makedirs", "lost"),  # nothing done yet
    ("sync", ".tmp"),  # side file written, not synced
    ("rename", ".torn"),  # side file synced, still under its temporary name
    ("sync_dir", "lost"),  # side file renamed, directory not synced
    ("zero_fill", ".wal"),  # side file durable, segment not zeroed
    ("sync_data", ".wal"),  # segment zeroed, not synced
]


@pytest.mark.parametrize("at,suffix", CUT_STEPS, ids=[f"{a}-{s}" for a, s in CUT_STEPS])
def test_crash_during_a_cut_gives_the_same_final_state(tmp_path, at, suffix):
    store = build_store(tmp_path / "s.sp", 12)
    cut_last_record(store, "zeroed")
    reference = copy_store(store, tmp_path / "reference.sp")
    expected = read_state(reference, **OPTIONS)
    fs = CrashFS(at, suffix)
    with pytest.raises(Crash):
        safepoint.open(store, **OPTIONS, fs=fs)
    assert fs.crashed
    with safepoint.open(store, **OPTIONS) as db:
        assert dict(db.items()) == expected == model(11)
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.clean
        assert dict(db.items()) == expected
    assert wal_image(store)[segment_name(1)] == wal_image(reference)[segment_name(1)]
    # The cut bytes are in lost/ under some name, whatever step the crash hit.
    want = read_bytes(lost_files(reference)[0])
    assert want in [read_bytes(p) for p in lost_files(store)]


@pytest.mark.parametrize("at", ["rename", "sync_dir"])
def test_crash_while_setting_later_segments_aside_gives_the_same_final_state(tmp_path, at):
    store = build_store(tmp_path / "s.sp", 150, segment_bytes=4096)
    assert len(segments(store)) >= 3
    flip_in_record(store, 3)
    reference = copy_store(store, tmp_path / "reference.sp")
    expected = read_state(reference, **OPTIONS, recovery="point_in_time")
    fs = CrashFS(at, ".wal" if at == "rename" else "wal")
    with pytest.raises(Crash):
        safepoint.open(store, **OPTIONS, recovery="point_in_time", fs=fs)
    with safepoint.open(store, **OPTIONS, recovery="point_in_time") as db:
        assert dict(db.items()) == expected == model(2)
        commit_txn(db, 3)
    assert all(segment_first_lsn(s) <= 3 for s in segments(store))
    with safepoint.open(store, **OPTIONS) as db:
        assert db.recovery.clean
        assert dict(db.items()) == model(3)


# --- records a killed process left unsynced ------------------------------------------------


class PowerLossFS(FileSystem):
    """Real files; remembers which written byte ranges are not yet synced (by
    inode: segments are renamed after opening), and "kills" the process at
    an fdatasync once ``armed``."""

    def __init__(self) -> None:
        self.unsynced: dict[int, list[tuple[int, int]]] = {}
        self.armed = False

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        f = super().open(path, write=write, create=create)
        return TrackedFile(f.fd, f.path, self)

    def is_unsynced(self, path, start: int, end: int) -> bool:
        ranges = self.unsynced.get(os.stat(path).st_ino, [])
        return any(o < end and start < o + n for o, n in ranges)


class TrackedFile(File):
    __slots__ = ("fs",)

    def __init__(self, fd: int, path: str, fs: PowerLossFS) -> None:
        super().__init__(fd, path)
        self.fs = fs

    def _inode(self) -> int:
        return os.fstat(self.fd).st_ino

    def write_at(self, data, offset: int) -> None:  # type: ignore[no-untyped-def]
        super().write_at(data, offset)
        self.fs.unsynced.setdefault(self._inode(), []).append((offset, len(data)))

    def sync_data(self) -> None:
        if self.fs.armed:
            raise Crash("killed before this fdatasync")
        super().sync_data()
        self.fs.unsynced.pop(self._inode(), None)

    def sync(self) -> None:
        super().sync()
        self.fs.unsynced.pop(self._inode(), None)


def test_records_read_from_the_page_cache_are_synced_before_new_records_vouch_for_them(
    tmp_path,
):
    # Process A writes record 12 and is killed before its fdatasync; process
    # B recovers 12 from the page cache, writes 13 (durable_lsn says 12 is on
    # disk) and loses power before its own fdatasync.  The disk may then hold
    # 13 but not 12: a legitimate crash state, which must read as a torn
    # tail, not as damage -- unless B made 12 durable before vouching for it.
    store = tmp_path / "s.sp"
    fs = PowerLossFS()
    a = safepoint.open(store, **OPTIONS, fs=fs)
    for i in range(1, 12):
        commit_txn(a, i)
    fs.armed = True
    with pytest.raises(safepoint.StoreFailedError):
        commit_txn(a, 12)
    a._simulate_kill()
    fs.armed = False
    b = safepoint.open(store, **OPTIONS, fs=fs)
    assert b.recovery.last_lsn == 12
    fs.armed = True
    with pytest.raises(safepoint.StoreFailedError):
        commit_txn(b, 13)
    b._simulate_kill()
    seg, rec = record_at_lsn(store, 12)
    if fs.is_unsynced(seg, rec.offset, rec.offset + rec.length):
        zero_range(seg, rec.offset, rec.offset + rec.length)  # the power loss
    with safepoint.open(store, **OPTIONS) as db:
        state = dict(db.items())
    j = int(state[b"counter"])
    assert j >= 11 and state == model(j)


# Error paths -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["tolerate_tail", "strict", "point_in_time"])
def test_segment_of_another_store_in_wal_is_refused(tmp_path, mode):
    store = build_store(tmp_path / "s.sp", 5)
    other = build_store(tmp_path / "other.sp", 5)
    shutil.copyfile(segments(other)[0], segments(store)[0])
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS, recovery=mode)
    assert "another store" in str(info.value)
    assert info.value.file == FIRST


def test_removed_base_image_with_segments_left_is_refused(tmp_path):
    store = build_store(tmp_path / "s.sp", 5)
    shutil.rmtree(os.path.join(store, "base"))
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS)
    assert "base" in str(info.value)


def test_missing_first_segment_after_the_base_image_is_refused(tmp_path):
    store = build_store(tmp_path / "s.sp", 150, segment_bytes=4096)
    first = segments(store)[0]
    assert segment_first_lsn(segments(store)[1]) > 1
    os.remove(first)
    with pytest.raises(CorruptionError) as info:
        safepoint.open(store, **OPTIONS, recovery="point_in_time")
    assert info.value.lsn == 1
    assert "missing" in str(info.value)
