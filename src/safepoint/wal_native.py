"""The native group-commit engine (native/sp_wal.c) behind ``WalWriter``.

Why it exists: with the waiting, the encoding and the pwrite + fdatasync in
Python, every committer woken after an fdatasync had to retake the GIL and a
Python lock one after another before the next leader could start; on two
cores that convoy cost more than the fdatasync itself (docs/design.md,
"Group commit in C").  Here the leader's whole loop runs in C without the
GIL, and followers wait on a pthread condition variable.

``WalWriter`` uses it for real files with the native codec; the Python
protocol in wal_group.py stays as its oracle and runs for every other file system
(the fault-injecting ones of ``safepoint.testing``) and for
``SAFEPOINT_BACKEND=python``.  tests/test_wal_native.py holds the two to the
same bytes and the same failure semantics.
"""

from __future__ import annotations

import os
from typing import Any, NamedTuple

from .format import (
    MAX_PAYLOAD_SIZE,
    MIN_PAYLOAD_SIZE,
    SP_BAD_LENGTH,
    SP_BAD_LSN,
    SP_BAD_PAYLOAD,
    SP_OK,
    STATUS_NAMES,
)

try:
    from ._sp_core import ffi, lib
except ImportError:  # pragma: no cover - a build without the native core
    ffi = lib = None

AVAILABLE = lib is not None and hasattr(lib, "sp_wal_new")

# Statuses of sp_wal.h beyond sp_core's.
SP_WAL_FAILED = 20
SP_WAL_CLOSED = 21
SP_WAL_NO_MEMORY = 22
SP_WAL_BUSY = 23
_OPS = {1: "write", 2: "fdatasync", 3: "an earlier failure"}


class EngineState(NamedTuple):
    """A consistent reading of the engine (see sp_wal_state in sp_wal.h)."""

    written_lsn: int
    synced_lsn: int
    offset: int
    pending: int
    fsyncs: int
    gathers: int
    gather_wait_s: float
    sync_s: float
    syncer_flushes: int
    spin_waits: int
    spin_backoffs: int
    error: int
    op: str


class NativeGroupCommit:
    """One log's pending records, leader election, pwrite and fdatasync.

    The caller (``WalWriter``) keeps segments, rollover and ordering: it
    calls ``append`` in LSN order under its own lock and lends a descriptor
    with ``switch`` only once everything written to the old one is synced.
    """

    __slots__ = ("handle", "address")

    # The engine's two per-commit calls, for WalWriter's hot path, which
    # makes them with ``handle`` itself: a Python frame per call is a
    # measurable part of a commit's time with the GIL (docs/design.md).
    append_call: Any = lib.sp_wal_append if lib is not None else None
    flush_call: Any = lib.sp_wal_flush if lib is not None else None

    def __init__(self, seed: int, fd: int, offset: int, next_lsn: int) -> None:
        """An engine writing to ``fd`` from ``offset``; the next append must
        carry ``next_lsn``."""
        w = lib.sp_wal_new(seed, fd, offset, next_lsn)
        if w == ffi.NULL:
            raise MemoryError("wal: cannot allocate the group-commit engine")
        # Freed when the last reference goes: a thread inside a call holds one.
        # The engine pointer (also for ``append_call`` and ``flush_call``).
        self.handle = ffi.gc(w, lib.sp_wal_free)
        # The same pointer as an int, for the C put (native/sp_put.c), which
        # cannot read a cdata; it holds ``handle`` while it uses this.
        self.address = int(ffi.cast("uintptr_t", w))

    def append(self, lsn: int, time_ns: int, payload: bytes) -> int:
        """Encode one record into the pending batch; SP_OK or a status.

        ValueError for a payload that does not parse or is out of range (the
        log stays usable); other statuses are returned for the caller to
        turn into its errors."""
        if type(payload) is bytes:
            rc = lib.sp_wal_append(self.handle, lsn, time_ns, payload, len(payload))
        else:
            with ffi.from_buffer("uint8_t[]", payload) as ptr:
                rc = lib.sp_wal_append(self.handle, lsn, time_ns, ptr, len(ptr))
        return self.check_append(rc, lsn, payload)

    def check_append(self, rc: int, lsn: int, payload: bytes) -> int:
        """``append``'s answer for the status ``rc`` of appending ``payload``
        as ``lsn``: raises for a refused payload, else returns the status."""
        if rc == SP_BAD_LENGTH:
            raise ValueError(payload_size_error(len(payload)))
        if rc == SP_BAD_PAYLOAD:
            raise ValueError(f"payload: {STATUS_NAMES[rc]}")
        if rc == SP_BAD_LSN:
            raise RuntimeError(f"wal: record {lsn} appended out of order")
        if rc == SP_WAL_NO_MEMORY:
            raise MemoryError(f"wal: no memory to queue a record of {len(payload)} bytes")
        return int(rc)

    def flush(self, lsn: int, durable: bool) -> int:
        """Block until record ``lsn`` is written (and synced if ``durable``);
        SP_OK, SP_WAL_FAILED or SP_WAL_CLOSED."""
        return int(lib.sp_wal_flush(self.handle, lsn, 1 if durable else 0))

    def switch(self, fd: int, offset: int) -> int:
        """Write to ``fd`` from ``offset`` from now on; SP_OK or a status."""
        return int(lib.sp_wal_switch(self.handle, fd, offset))

    def set_gather(self, max_seconds: float) -> None:
        """Cap a leader's wait for committers about to queue (0: never wait)."""
        lib.sp_wal_set_gather(self.handle, max_seconds * 1e9)

    def set_spin(self, max_sync_s: float) -> None:
        """Let the engine's syncer thread lead durable flushes, with one
        committer spin-waiting, only while an fdatasync takes at most
        ``max_sync_s`` on average (default 1 ms; 0: never)."""
        lib.sp_wal_set_spin(self.handle, max_sync_s * 1e9)

    def fail(self, error: int) -> None:
        """Refuse all further appends and flushes (an errno from outside)."""
        lib.sp_wal_fail(self.handle, error)

    def abandon(self) -> None:
        """Drop pending records, wait for a flush in flight, refuse the rest."""
        lib.sp_wal_abandon(self.handle)

    def yield_to_committers(self, step_s: float, max_s: float) -> float:
        """For a job holding the GIL between steps of ``step_s`` (a
        checkpoint's fold): wait, at most ``max_s``, while a committer needs
        the GIL now or before another step would end; the seconds waited."""
        return float(lib.sp_wal_yield(self.handle, step_s * 1e9, max_s * 1e9)) / 1e9

    def state(self) -> EngineState:
        """LSNs, offset, counters and the error, read together."""
        # A struct per call: the engine's calls release the GIL, so two
        # threads reading at once would fill one shared struct together.
        st = ffi.new("sp_wal_state *")
        lib.sp_wal_get_state(self.handle, st)
        return EngineState(
            int(st.written_lsn),
            int(st.synced_lsn),
            int(st.offset),
            int(st.pending),
            int(st.fsyncs),
            int(st.gathers),
            float(st.gather_wait_ns) / 1e9,
            float(st.sync_ns) / 1e9,
            int(st.syncer_flushes),
            int(st.spin_waits),
            int(st.spin_backoffs),
            int(st.error),
            _OPS.get(int(st.op), ""),
        )

    def synced_lsn(self) -> int:
        """Every record at or below this LSN is on disk."""
        return self.state().synced_lsn

    def error(self, path: str) -> OSError | None:
        """The failure as the OSError the Python writer would have raised."""
        st = self.state()
        if st.error == 0:
            return None
        return OSError(st.error, f"{os.strerror(st.error)} (during {st.op})", path)


def payload_size_error(size: int) -> str:
    """The message for a payload whose size no record can carry."""
    return f"payload of {size} bytes is outside [{MIN_PAYLOAD_SIZE}, {MAX_PAYLOAD_SIZE}]"


def status_name(rc: int) -> str:
    """A readable name for any status an engine call returns."""
    names = {
        SP_OK: "ok",
        SP_WAL_FAILED: "failed",
        SP_WAL_CLOSED: "closed",
        SP_WAL_NO_MEMORY: "no memory",
        SP_WAL_BUSY: "busy",
    }
    return names.get(rc, STATUS_NAMES.get(rc, f"status {rc}"))
