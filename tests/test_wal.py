"""The WAL writer and reader on real files: appends, rollover, sync modes,
group commit, segment headers, continuity across segments, and failed I/O.

Faults are injected in the project's own file layer: ``FaultyFS`` below
subclasses ``safepoint.fs.FileSystem`` and is handed to the writer (or to
``safepoint.open``), so every byte still goes to a real file.
"""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
import uuid

import pytest

import safepoint
from helpers import (
    flip_bit,
    prepared_path,
    read_bytes,
    segment_first_lsn,
    segment_records,
    segments,
    write_at,
)
from safepoint import records
from safepoint.errors import CorruptionError, StoreFailedError
from safepoint.format import OP_PUT, SEGMENT_HEADER_SIZE, SP_BAD_LSN, segment_name
from safepoint.fs import File, FileSystem
from safepoint.segment import encode_header
from safepoint.wal import WalWriter
from safepoint.wal_reader import LogReader

STORE_ID = bytes.fromhex("00112233445566778899aabbccddeeff")
SEGMENT_BYTES = 4096


# --- a file layer that counts and fails ----------------------------------------------


class FaultyFile(File):
    """A real file whose syncs are counted and whose I/O fails when armed."""

    __slots__ = ("fs",)

    def __init__(self, fd: int, path: str, fs: FaultyFS) -> None:
        super().__init__(fd, path)
        self.fs = fs

    def sync_data(self) -> None:
        fs = self.fs
        with fs.lock:
            fs.sync_data_calls += 1
            n = fs.sync_data_calls
        if fs.fail_sync_data_on is not None and n >= fs.fail_sync_data_on:
            raise OSError(errno.EIO, "injected fdatasync failure", self.path)
        if fs.sync_delay_s:
            time.sleep(fs.sync_delay_s)  # a slow disk, so that committers pile up
        super().sync_data()

    def write_at(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        view = memoryview(data)
        is_record_write = offset >= SEGMENT_HEADER_SIZE and view.tobytes().strip(b"\0")
        if is_record_write and self.fs.short_write_enospc:
            # The kernel took half of the write, then reported the disk full.
            super().write_at(view[: len(view) // 2], offset)
            raise OSError(errno.ENOSPC, "injected: no space left on device", self.path)
        super().write_at(view, offset)

    def zero_fill(self, start: int, end: int) -> None:
        fs = self.fs
        with fs.lock:
            if fs.zero_fill_budget is not None:
                if fs.zero_fill_budget <= 0:
                    raise OSError(errno.ENOSPC, "injected: no space left on device", self.path)
                fs.zero_fill_budget -= 1
        super().zero_fill(start, end)


class FaultyFS(FileSystem):
    """Real files; counts fdatasyncs and directory syncs; fails when armed.

    ``fail_sync_data_on``: the Nth and every later fdatasync raise EIO.
    ``short_write_enospc``: record writes write half, then raise ENOSPC.
    ``zero_fill_budget``: that many more zero-fills succeed, then ENOSPC.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sync_data_calls = 0
        self.dir_syncs: list[str] = []
        self.fail_sync_data_on: int | None = None
        self.sync_delay_s = 0.0
        self.short_write_enospc = False
        self.zero_fill_budget: int | None = None

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        f = super().open(path, write=write, create=create)
        return FaultyFile(f.fd, f.path, self)

    def sync_dir(self, path: str) -> None:
        with self.lock:
            self.dir_syncs.append(os.path.abspath(path))
        super().sync_dir(path)


# --- helpers ------------------------------------------------------------------------------


def payload(i: int, size: int = 100) -> bytes:
    """The payload of test record ``i``: one put of a recognisable value."""
    value = (b"%d:" % i) * (size // 4 + 1)
    return records.encode_payload([(OP_PUT, b"key-%d" % i, value[:size])])


def new_writer(tmp_path, fs: FileSystem | None = None, **options) -> WalWriter:
    """A writer on a fresh ``wal/`` directory under ``tmp_path``."""
    d = tmp_path / "wal"
    d.mkdir(exist_ok=True)
    options.setdefault("segment_bytes", SEGMENT_BYTES)
    return WalWriter(
        fs or FileSystem(),
        str(d),
        STORE_ID,
        next_lsn=1,
        segments=[],
        tail_offset=None,
        **options,
    )


def commit(writer: WalWriter, data: bytes) -> int:
    """Append and flush one record, as a committer does; return its LSN."""
    lsn = writer.append(data)
    writer.flush(lsn)
    return lsn


def read_log(tmp_path, store_id: bytes = STORE_ID):
    """(every valid record as (lsn, payload bytes), the reader's LogEnd)."""
    reader = LogReader(FileSystem(), str(tmp_path / "wal"), store_id)
    got = [(r.lsn, bytes(r.payload)) for r in reader.read(0)]
    return got, reader.end


def written_log(tmp_path, count: int, size: int = 100, **options) -> list[str]:
    """Write ``count`` records and close; return the segment paths."""
    w = new_writer(tmp_path, **options)
    for i in range(1, count + 1):
        commit(w, payload(i, size))
    w.close()
    return [str(p) for p in segments(tmp_path)]


# --- appending and reading back -------------------------------------------------------------


def test_appended_records_read_back_in_order_with_consecutive_lsns(tmp_path):
    written_log(tmp_path, 10, segment_bytes=1 << 20)
    got, end = read_log(tmp_path)
    assert got == [(i, payload(i)) for i in range(1, 11)]
    assert end.clean and end.next_lsn == 11


def test_reader_skips_records_at_or_below_the_given_lsn(tmp_path):
    written_log(tmp_path, 10)
    reader = LogReader(FileSystem(), str(tmp_path / "wal"), STORE_ID)
    assert [r.lsn for r in reader.read(6)] == [7, 8, 9, 10]


def test_appending_continues_after_the_tail_offset_of_a_reopened_log(tmp_path):
    written_log(tmp_path, 3, segment_bytes=1 << 20)
    _, end = read_log(tmp_path)
    seg_refs = LogReader(FileSystem(), str(tmp_path / "wal"), STORE_ID).segments
    w = WalWriter(
        FileSystem(),
        str(tmp_path / "wal"),
        STORE_ID,
        next_lsn=end.next_lsn,
        segments=seg_refs,
        tail_offset=end.offset,
        segment_bytes=1 << 20,
    )
    assert commit(w, payload(4)) == 4
    w.close()
    got, end = read_log(tmp_path)
    assert got == [(i, payload(i)) for i in range(1, 5)]
    assert len(segments(tmp_path)) == 1


def test_flush_of_an_already_durable_lsn_returns_at_once(tmp_path):
    fs = FaultyFS()
    w = new_writer(tmp_path, fs)
    lsn = commit(w, payload(1))
    calls = fs.sync_data_calls
    w.flush(lsn)
    assert fs.sync_data_calls == calls
    w.close()


# --- segments and rollover ---------------------------------------------------------------------


def test_rollover_starts_segments_named_by_their_first_lsn(tmp_path):
    written_log(tmp_path, 60, size=200)
    segs = segments(tmp_path)
    assert len(segs) >= 3
    for seg in segs:
        first = segment_first_lsn(seg)
        assert seg.name == segment_name(first)
        assert segment_records(seg)[0].lsn == first
        assert os.path.getsize(seg) >= SEGMENT_BYTES
    got, end = read_log(tmp_path)
    assert [lsn for lsn, _ in got] == list(range(1, 61))
    assert end.clean


def test_next_segment_is_not_prepared_while_the_first_is_mostly_empty(tmp_path):
    written_log(tmp_path, 2)
    assert not os.path.exists(prepared_path(tmp_path))


def test_next_segment_is_prepared_zero_filled_once_the_current_is_half_full(tmp_path):
    segs = written_log(tmp_path, 22)  # 22 records of ~112 bytes: over half of 4 KiB
    assert len(segs) == 1
    prepared = prepared_path(tmp_path)
    assert os.path.getsize(prepared) == SEGMENT_BYTES
    assert read_bytes(prepared) == bytes(SEGMENT_BYTES)


def test_after_a_rollover_the_next_segment_is_prepared_at_once(tmp_path):
    # A log that filled a segment prepares the next without waiting for the
    # new one to be half full (a bulk load would wait for it at the rollover).
    w = new_writer(tmp_path)
    i = 0
    while len(segments(tmp_path)) < 2:
        i += 1
        commit(w, payload(i))
    w.close()
    assert len(segment_records(segments(tmp_path)[1])) == 1  # far from half full
    prepared = prepared_path(tmp_path)
    assert os.path.getsize(prepared) == SEGMENT_BYTES
    assert read_bytes(prepared) == bytes(SEGMENT_BYTES)


def test_every_segment_creation_syncs_the_wal_directory(tmp_path):
    fs = FaultyFS()
    w = new_writer(tmp_path, fs)
    wal = os.path.abspath(tmp_path / "wal")
    assert fs.dir_syncs.count(wal) == 1
    for i in range(1, 61):
        commit(w, payload(i, 200))
    w.close()
    assert fs.dir_syncs.count(wal) == len(segments(tmp_path)) >= 3


def test_record_bigger_than_a_segment_gets_a_segment_of_its_own(tmp_path):
    big = payload(2, 3 * SEGMENT_BYTES)
    w = new_writer(tmp_path)
    commit(w, payload(1))
    commit(w, big)
    commit(w, payload(3))
    w.close()
    assert [s.name for s in segments(tmp_path)] == [segment_name(n) for n in (1, 2, 3)]
    assert [r.lsn for r in segment_records(segments(tmp_path)[1])] == [2]
    got, _ = read_log(tmp_path)
    assert got == [(1, payload(1)), (2, big), (3, payload(3))]


# --- sync modes -----------------------------------------------------------------------------


def test_sync_always_makes_each_record_durable_before_flush_returns(tmp_path):
    fs = FaultyFS()
    w = new_writer(tmp_path, fs, sync="always", segment_bytes=1 << 20)
    for i in range(1, 11):
        lsn = commit(w, payload(i))
        assert w.durable_lsn >= lsn
        assert fs.sync_data_calls == i
    w.close()


def test_sync_none_never_syncs_on_commit(tmp_path):
    fs = FaultyFS()
    w = new_writer(tmp_path, fs, sync="none")
    for i in range(1, 21):
        commit(w, payload(i))
    assert fs.sync_data_calls == 0
    assert w.durable_lsn == 0
    # Written to the OS all the same: another reader of the files sees them.
    got, _ = read_log(tmp_path)
    assert [lsn for lsn, _ in got] == list(range(1, 21))
    w.close()


def test_sync_interval_commit_returns_without_syncing(tmp_path):
    fs = FaultyFS()
    w = new_writer(tmp_path, fs, sync="interval", sync_interval=3600.0)
    commit(w, payload(1))
    assert fs.sync_data_calls == 0
    assert w.durable_lsn == 0
    w.close()


def test_sync_interval_syncs_in_the_background(tmp_path):
    fs = FaultyFS()
    interval = 0.05
    w = new_writer(tmp_path, fs, sync="interval", sync_interval=interval)
    lsn = commit(w, payload(1))
    # ~2 intervals on an idle machine; the bound is loose because speed is
    # never asserted on a shared one.
    deadline = time.monotonic() + 200 * interval
    while w.durable_lsn < lsn and time.monotonic() < deadline:
        time.sleep(interval / 5)
    assert w.durable_lsn >= lsn
    assert fs.sync_data_calls >= 1
    w.close()


def test_concurrent_committers_share_fdatasyncs(tmp_path):
    fs = FaultyFS()
    fs.sync_delay_s = 0.002
    w = new_writer(tmp_path, fs, segment_bytes=1 << 20)
    append_lock = threading.Lock()  # the store's write lock: appends in LSN order
    threads, per_thread = 8, 25
    late: list[int] = []

    def committer(t: int) -> None:
        for n in range(per_thread):
            with append_lock:
                lsn = w.append(payload(t * 1000 + n))
            w.flush(lsn)
            if w.durable_lsn < lsn:
                late.append(lsn)

    workers = [threading.Thread(target=committer, args=(t,)) for t in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    w.close()
    assert late == []
    got, end = read_log(tmp_path)
    assert [lsn for lsn, _ in got] == list(range(1, threads * per_thread + 1))
    assert fs.sync_data_calls < threads * per_thread


# Error paths -------------------------------------------------------------------------------


def read_error(tmp_path) -> CorruptionError:
    with pytest.raises(CorruptionError) as info:
        read_log(tmp_path)
    return info.value


def assert_names_first_segment(err: CorruptionError) -> None:
    name = os.path.join("wal", segment_name(1))
    assert err.file == name
    assert name in str(err)


def test_segment_with_bad_magic_is_refused(tmp_path):
    seg = written_log(tmp_path, 3)[0]
    flip_bit(seg, 0)
    err = read_error(tmp_path)
    assert "magic" in str(err)
    assert_names_first_segment(err)


def test_segment_of_an_unknown_version_is_refused_naming_the_version(tmp_path):
    seg = written_log(tmp_path, 3)[0]
    head = bytearray(encode_header(STORE_ID, 1))
    head[8:12] = (7).to_bytes(4, "little")
    head[12:16] = records.crc32c(bytes(head[:12] + head[16:])).to_bytes(4, "little")
    write_at(seg, 0, bytes(head))
    err = read_error(tmp_path)
    assert "version 7" in str(err)
    assert "reads 1" in str(err)
    assert_names_first_segment(err)


def test_segment_with_a_header_checksum_mismatch_is_refused(tmp_path):
    seg = written_log(tmp_path, 3)[0]
    flip_bit(seg, 33)  # inside first_lsn: magic and version stay valid
    err = read_error(tmp_path)
    assert "checksum" in str(err)
    assert_names_first_segment(err)


def test_segment_of_another_store_is_refused(tmp_path):
    seg = written_log(tmp_path, 3)[0]
    other = tmp_path / "other"
    other.mkdir()
    w = WalWriter(
        FileSystem(),
        str(other),
        uuid.uuid4().bytes,
        next_lsn=1,
        segments=[],
        tail_offset=None,
        segment_bytes=SEGMENT_BYTES,
    )
    commit(w, payload(1))
    w.close()
    shutil.copyfile(other / segment_name(1), seg)
    err = read_error(tmp_path)
    assert "another store" in str(err)
    assert_names_first_segment(err)


def test_segment_whose_header_lsn_differs_from_its_name_is_refused(tmp_path):
    seg = written_log(tmp_path, 3)[0]
    write_at(seg, 0, encode_header(STORE_ID, 7))
    err = read_error(tmp_path)
    assert "first lsn 7" in str(err)
    assert_names_first_segment(err)


def test_missing_middle_segment_is_reported_as_damage(tmp_path):
    segs = written_log(tmp_path, 60, size=200)
    assert len(segs) >= 3
    gap = segment_first_lsn(segs[1])
    os.remove(segs[1])
    got, end = read_log(tmp_path)
    assert [lsn for lsn, _ in got] == list(range(1, gap))
    assert not end.clean and not end.torn_tail
    assert end.status == SP_BAD_LSN
    assert end.next_lsn == gap
    assert "missing" in end.reason
    assert end.path == segs[2]


def test_repeated_segment_is_reported_as_damage(tmp_path):
    written_log(tmp_path, 10, segment_bytes=1 << 20)
    # A second writer of the same store starting at LSN 5: its segment repeats 5..7.
    other = tmp_path / "other"
    other.mkdir()
    w = WalWriter(
        FileSystem(),
        str(other),
        STORE_ID,
        next_lsn=5,
        segments=[],
        tail_offset=None,
        segment_bytes=SEGMENT_BYTES,
    )
    for i in (5, 6, 7):
        commit(w, payload(i))
    w.close()
    shutil.copyfile(other / segment_name(5), tmp_path / "wal" / segment_name(5))
    got, end = read_log(tmp_path)
    assert [lsn for lsn, _ in got] == list(range(1, 11))
    assert not end.clean and not end.torn_tail
    assert "repeated" in end.reason
    assert end.next_lsn == 11


def test_failed_fdatasync_fails_that_flush_and_every_later_write(tmp_path):
    fs = FaultyFS()
    fs.fail_sync_data_on = 3
    w = new_writer(tmp_path, fs, segment_bytes=1 << 20)
    commit(w, payload(1))
    commit(w, payload(2))
    lsn = w.append(payload(3))
    with pytest.raises(StoreFailedError):
        w.flush(lsn)
    assert isinstance(w.failed, OSError) and w.failed.errno == errno.EIO
    with pytest.raises(StoreFailedError):
        w.append(payload(4))
    with pytest.raises(StoreFailedError):
        w.flush(lsn)
    with pytest.raises(StoreFailedError):
        w.sync()
    assert w.durable_lsn == 2
    w.close()


def test_failed_fdatasync_is_never_retried(tmp_path):
    fs = FaultyFS()
    fs.fail_sync_data_on = 2
    w = new_writer(tmp_path, fs, segment_bytes=1 << 20)
    commit(w, payload(1))
    lsn = w.append(payload(2))
    with pytest.raises(StoreFailedError):
        w.flush(lsn)
    calls = fs.sync_data_calls
    fs.fail_sync_data_on = None  # the disk "recovers": a retry would now succeed
    for _ in range(3):
        with pytest.raises(StoreFailedError):
            w.flush(lsn)
    w.close()
    assert fs.sync_data_calls == calls
    assert w.durable_lsn == 1


def test_short_write_then_enospc_leaves_an_exact_prefix_after_recovery(tmp_path):
    fs = FaultyFS()
    store = tmp_path / "s.sp"
    options = {"checkpoint_bytes": None, "segment_bytes": 64 << 10}
    db = safepoint.open(store, fs=fs, **options)
    for i in range(5):
        db.put(b"k%d" % i, b"v%d" % i)
    fs.short_write_enospc = True
    with pytest.raises(StoreFailedError):
        db.put(b"k5", b"v5" * 50)
    fs.short_write_enospc = False
    with pytest.raises(StoreFailedError):
        db.put(b"k6", b"v6")
    db.close()
    expected = {b"k%d" % i: b"v%d" % i for i in range(5)}
    with safepoint.open(store, **options) as db:
        assert db.recovery.torn_tail
        assert dict(db.items()) == expected
        db.put(b"after", b"reopen")  # takes the LSN of the torn record
    expected[b"after"] = b"reopen"
    with safepoint.open(store, **options) as db:
        assert db.recovery.clean
        assert dict(db.items()) == expected


def test_enospc_creating_a_segment_fails_the_append_and_leaves_the_log_usable(tmp_path):
    fs = FaultyFS()
    fs.zero_fill_budget = 1  # the first segment; then the disk is full
    w = new_writer(tmp_path, fs)
    lsn = 0
    while len(segments(tmp_path)) == 1:
        try:
            lsn = commit(w, payload(lsn + 1, 200))
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            break
    else:
        pytest.fail("a new segment was created on a full disk")
    assert w.failed is None
    assert w.next_lsn == lsn + 1
    with pytest.raises(OSError) as again:
        w.append(payload(lsn + 1, 200))
    assert again.value.errno == errno.ENOSPC
    fs.zero_fill_budget = None  # space is freed
    assert commit(w, payload(lsn + 1, 200)) == lsn + 1
    commit(w, payload(lsn + 2, 200))
    w.close()
    got, end = read_log(tmp_path)
    assert got == [(i, payload(i, 200)) for i in range(1, lsn + 3)]
    assert end.clean
    assert len(segments(tmp_path)) == 2
