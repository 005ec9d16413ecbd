"""The native group-commit engine (native/sp_wal.c) against its oracle, the
Python protocol in wal.py: the same records in the same segments for any
sequence of appends, flushes and rollovers; the same failure semantics; and
group commit that shares fdatasyncs between threads.

Everything runs on real files.  Failed I/O is made real by pointing the
log's descriptor at something that refuses it (``os.dup2`` of /dev/null,
whose fdatasync fails with EINVAL, or of a read-only file, whose pwrite fails
with EBADF): the engine's own system calls fail, nothing is mocked.
"""

from __future__ import annotations

import errno
import os
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from helpers import segment_records
from safepoint import records
from safepoint.errors import ClosedError, StoreFailedError
from safepoint.format import OP_PUT, SEGMENT_HEADER_SIZE
from safepoint.fs import File, FileSystem
from safepoint.testing import wal_contents
from safepoint.testing.wal_contents import Record
from safepoint.wal import WalWriter
from safepoint.wal_reader import LogReader

STORE_ID = bytes.fromhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")
SEGMENT_BYTES = 4096


def payload(i: int, size: int = 20) -> bytes:
    return records.encode_payload([(OP_PUT, b"k%d" % i, bytes([i % 251]) * size)])


def new_writer(path: Path, engine: str, **options: object) -> WalWriter:
    (path / "wal").mkdir(parents=True, exist_ok=True)
    options.setdefault("segment_bytes", SEGMENT_BYTES)
    return WalWriter(
        FileSystem(),
        str(path / "wal"),
        STORE_ID,
        next_lsn=1,
        segments=[],
        tail_offset=None,
        engine=engine,
        **options,
    )


def log_contents(path: Path) -> list[tuple[str, int, list[Record]]]:
    """Everything in the log but the wall-clock time (safepoint.testing)."""
    return wal_contents.log_contents(path / "wal", STORE_ID)


def read_lsns(path: Path) -> list[int]:
    reader = LogReader(FileSystem(), str(path / "wal"), STORE_ID)
    lsns = [rec.lsn for rec in reader.read(0)]
    assert reader.end.clean, reader.end
    return lsns


def test_auto_engine_is_native_for_real_files_with_the_native_codec(tmp_path):
    w = new_writer(tmp_path, "auto")
    try:
        assert w.engine == ("native" if records.BACKEND == "native" else "python")
    finally:
        w.close()


# --- the oracle ----------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 1500)),
        st.tuples(st.just("flush"), st.booleans()),
        st.tuples(st.just("sync"), st.just(True)),
    ),
    min_size=1,
    max_size=25,
)


@given(ops)
def test_native_and_python_engines_write_the_same_records(tmp_path_factory, script):
    logs = {}
    for engine in ("native", "python"):
        path = tmp_path_factory.mktemp(engine)
        w = new_writer(path, engine)
        assert w.engine == engine
        lsn = 0
        for op, arg in script:
            if op == "append":
                lsn = w.append(payload(lsn + 1, arg))
            elif op == "flush" and lsn:
                w.flush(lsn, durable=arg)
            elif op == "sync":
                w.sync()
        w.close()
        logs[engine] = log_contents(path)
    assert logs["native"] == logs["python"]


def test_records_cross_segments_in_order_with_the_native_engine(tmp_path):
    w = new_writer(tmp_path, "native")
    for i in range(1, 201):
        w.flush(w.append(payload(i, 90)))
    assert len(w.segments) > 5
    w.close()
    assert read_lsns(tmp_path) == list(range(1, 201))
    # The oracle's view of the log reads every segment, not just the first.
    contents = log_contents(tmp_path)
    assert [rec[2] for _, _, recs in contents for rec in recs] == list(range(1, 201))


def test_a_record_bigger_than_the_engines_buffer_is_written_whole(tmp_path):
    w = new_writer(tmp_path, "native", segment_bytes=1 << 20)
    big = payload(1, 3 << 20)  # the engine starts with 64 KiB and must grow
    w.flush(w.append(big))
    w.flush(w.append(payload(2)))
    w.close()
    got = log_contents(tmp_path)
    assert [r[4] for seg in got for r in seg[2]] == [big, payload(2)]


def test_durable_lsn_follows_synced_records_not_written_ones(tmp_path):
    w = new_writer(tmp_path, "native", sync="none")
    w.flush(w.append(payload(1)))
    assert w.durable_lsn == 0
    w.flush(w.append(payload(2)), durable=True)
    assert w.durable_lsn == 2
    w.close()


def test_abandon_drops_what_was_never_flushed(tmp_path):
    w = new_writer(tmp_path, "native")
    w.flush(w.append(payload(1)))
    w.append(payload(2))
    w.abandon()
    assert read_lsns(tmp_path) == [1]


def test_group_commit_shares_fdatasyncs_between_threads(tmp_path):
    w = new_writer(tmp_path, "native", segment_bytes=1 << 20)
    per_thread, threads = 100, 8
    acked: list[int] = []
    lock = threading.Lock()

    def committer() -> None:
        for i in range(per_thread):
            lsn = w.append(payload(i))
            w.flush(lsn)
            assert w.durable_lsn >= lsn
            with lock:
                acked.append(lsn)

    workers = [threading.Thread(target=committer) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    fsyncs = w._native.state().fsyncs
    w.close()
    assert sorted(acked) == list(range(1, per_thread * threads + 1))
    assert fsyncs < per_thread * threads
    assert read_lsns(tmp_path) == list(range(1, per_thread * threads + 1))


# Error paths


def refuse_fdatasync(w: WalWriter) -> None:
    """Point the log's descriptor at /dev/null: pwrite works, fdatasync fails."""
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, w._file.fd)
    finally:
        os.close(null)


def refuse_pwrite(w: WalWriter, path: Path) -> None:
    """Point the log's descriptor at a read-only file: pwrite fails (EBADF)."""
    ro = path / "read-only"
    ro.write_bytes(b"")
    fd = os.open(ro, os.O_RDONLY)
    try:
        os.dup2(fd, w._file.fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("engine", ["native", "python"])
def test_failed_fdatasync_fails_the_flush_and_every_later_call(tmp_path, engine):
    seen: list[BaseException] = []
    w = new_writer(tmp_path, engine, segment_bytes=1 << 20, on_failure=seen.append)
    w.flush(w.append(payload(1)))
    refuse_fdatasync(w)
    lsn = w.append(payload(2))
    with pytest.raises(StoreFailedError, match="reopen the store"):
        w.flush(lsn)
    assert isinstance(w.failed, OSError) and w.failed.errno == errno.EINVAL
    assert len(seen) == 1 and seen[0] is w.failed
    with pytest.raises(StoreFailedError):
        w.append(payload(3))
    with pytest.raises(StoreFailedError):
        w.sync()
    assert w.durable_lsn == 1
    assert len(seen) == 1
    w.close()


@pytest.mark.parametrize("engine", ["native", "python"])
def test_failed_pwrite_fails_the_log_and_names_the_errno(tmp_path, engine):
    w = new_writer(tmp_path, engine, segment_bytes=1 << 20)
    w.flush(w.append(payload(1)))
    refuse_pwrite(w, tmp_path)
    lsn = w.append(payload(2))
    with pytest.raises(StoreFailedError):
        w.flush(lsn)
    assert isinstance(w.failed, OSError) and w.failed.errno == errno.EBADF
    assert w.durable_lsn == 1
    w.close()


def test_a_failure_from_outside_the_engine_refuses_later_appends(tmp_path):
    w = new_writer(tmp_path, "native")
    w.flush(w.append(payload(1)))
    w._fail(OSError(errno.EIO, "directory fsync failed"))
    with pytest.raises(StoreFailedError):
        w.append(payload(2))
    assert w._native.state().error == errno.EIO
    w.close()


@pytest.mark.parametrize("engine", ["native", "python"])
def test_a_payload_that_does_not_parse_is_refused_and_the_log_goes_on(tmp_path, engine):
    w = new_writer(tmp_path, engine)
    with pytest.raises(ValueError, match="payload|op 0"):
        w.append(b"\x05\x00\x00\x00junk")
    w.flush(w.append(payload(1)))
    w.close()
    assert read_lsns(tmp_path) == [1]


def test_appending_after_close_raises_closed_error(tmp_path):
    w = new_writer(tmp_path, "native")
    w.flush(w.append(payload(1)))
    w.close()
    with pytest.raises(ClosedError):
        w.append(payload(2))


def test_native_engine_on_a_fault_injecting_file_system_is_refused(tmp_path):
    class WrappedFile(File):
        __slots__ = ()

    class WrappingFS(FileSystem):
        def open(self, path, *, write=False, create=False):  # type: ignore[override]
            f = super().open(path, write=write, create=create)
            return WrappedFile(f.fd, f.path)

    (tmp_path / "wal").mkdir()
    with pytest.raises(ValueError, match="real file system"):
        WalWriter(
            WrappingFS(),
            str(tmp_path / "wal"),
            uuid.uuid4().bytes,
            next_lsn=1,
            segments=[],
            tail_offset=None,
            engine="native",
        )


def test_unknown_engine_is_refused(tmp_path):
    with pytest.raises(ValueError, match="engine must be"):
        new_writer(tmp_path, "turbo")


def test_segment_header_is_untouched_by_the_engine(tmp_path):
    w = new_writer(tmp_path, "native")
    w.flush(w.append(payload(1)))
    w.close()
    seg = sorted((tmp_path / "wal").glob("*.wal"))[0]
    assert segment_records(seg)[0].offset == SEGMENT_HEADER_SIZE


def test_gathering_off_means_no_leader_ever_waits(tmp_path):
    w = new_writer(tmp_path, "native", segment_bytes=1 << 20)
    w._native.set_gather(0.0)

    def committer() -> None:
        for i in range(50):
            w.flush(w.append(payload(i)))

    workers = [threading.Thread(target=committer) for _ in range(4)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    state = w._native.state()
    w.close()
    assert state.gathers == 0 and state.gather_wait_s == 0.0
    assert state.synced_lsn == 200
