"""Checkpoints: fold the memtable into the base image, then retire segments.

Protocol (each step's crash outcome in docs/design.md):

1. Swap, under the store's write lock: the memtable becomes *frozen* and a
   new one takes writes.  Its LSN is the last committed record.  This swap is
   the only moment writers wait for.
2. Make the log durable up to that LSN, so the base image never runs ahead
   of the log (a later append must follow its predecessor without a gap).
3. Write the frozen entries and the LSN in one LMDB write transaction,
   durable at commit.  Readers still see the frozen memtable meanwhile.
4. Drop the frozen memtable (readers now find the same values in the base).
5. Delete segments whose records are all at or below the LSN; sync the dir.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .memtable import new_memtable

if TYPE_CHECKING:
    from .store import Store
    from .wal import WalWriter

log = logging.getLogger("safepoint")
_STEP = 512  # values gathered per step of a checkpoint, between pacer calls
# The pacer's duty cycle while commits arrive (see _Pacer).
_WORK_S = 0.0005
_PAUSE_S = 0.00005
_ACTIVE_S = 0.02
# With the native engine (see _EnginePacer): steps of ~120 us; a flush in
# flight makes the fold wait only once it is due within a quarter of a step
# (a committer then waits ~30 us at most for the GIL, and the fold does not
# idle through the end of every fdatasync); the cap on one wait.
_ENGINE_STEP = 128
_DUE_FRACTION = 0.25
_MAX_YIELD_S = 0.002


@dataclass(frozen=True)
class CheckpointInfo:
    """What one checkpoint did."""

    lsn: int  # everything at or below is in the base image
    entries: int  # memtable entries written (puts and deletes)
    segments_retired: int
    duration_s: float
    swap_s: float  # how long writers were blocked
    yielded_s: float = 0.0  # how long the fold left the GIL to committers


class Checkpointer:
    """Runs checkpoints on request and in the background, one at a time."""

    def __init__(self, store: Store, *, interval: float | None) -> None:
        self._store = store
        self._lock = threading.Lock()  # one checkpoint at a time
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._interval = interval
        self.error: BaseException | None = None
        self.count = 0
        self.last: CheckpointInfo | None = None
        self._thread = threading.Thread(target=self._loop, name="safepoint-checkpoint", daemon=True)
        self._thread.start()

    def request(self) -> None:
        """Ask the background thread for a checkpoint soon."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            woke = self._wake.wait(self._interval)
            if self._stop.is_set():
                return
            self._wake.clear()
            if not woke and self._store._lsn_since_checkpoint() == 0:
                continue
            try:
                self.run()
            except Exception as exc:  # noqa: BLE001 - reported via stats and log
                self.error = exc
                log.error("safepoint: background checkpoint failed: %s", exc)

    def run(self) -> CheckpointInfo:
        """Checkpoint now, in the calling thread."""
        with self._lock:
            info = run_checkpoint(self._store)
            self.count += 1
            self.last = info
            self.error = None
            return info

    def stop(self) -> None:
        """Stop the background thread; waits for a checkpoint in progress."""
        self._stop.set()
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class _Pacer:
    """Called between chunks of a checkpoint's work; lets committers run.

    The fold holds the GIL in C for most of its time, and a committer whose
    fsync returned waits for it.  A plain release (sleep(0)) rarely hands
    it over: this thread takes it back before the woken one runs, so the
    committer waits out the interpreter's switch interval (5 ms) for every
    commit.  While commits arrive (one seen within ``_ACTIVE_S``), every
    ``_WORK_S`` of work is followed by a real sleep of ``_PAUSE_S``, in which
    a waiting committer runs its few tens of microseconds of Python and
    goes back to its fsync, which needs no GIL.  ``_ACTIVE_S`` starts
    running at the swap: a committer starved of the GIL cannot show that it
    is there by committing.  With no commits arriving, the fold never sleeps.
    """

    __slots__ = ("_store", "_lsn", "_next", "_active_until", "yielded_s")

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lsn = store._last_lsn
        now = time.perf_counter()
        self._next = now + _WORK_S
        self._active_until = now + _ACTIVE_S
        self.yielded_s = 0.0

    def __call__(self) -> None:
        now = time.perf_counter()
        if now < self._next:
            return
        lsn = self._store._last_lsn
        if lsn != self._lsn:
            self._lsn = lsn
            self._active_until = now + _ACTIVE_S
        if now < self._active_until:
            time.sleep(_PAUSE_S)
            later = time.perf_counter()
            self.yielded_s += later - now
            now = later
        self._next = now + _WORK_S


class _EnginePacer:
    """The pacer when the log runs on the native engine with sync="always":
    the engine knows when a committer needs the GIL, since its durable flush
    is about to end, or it ended and the committer has not yet gone back
    into a flush (sp_wal_yield in native/sp_wal_yield.c).  Between steps,
    the fold waits exactly then, with the GIL released, so the committer
    runs its Python at once instead of waiting out a step, and resumes as
    soon as the committer is back in its flush (spinning briefly, since
    waking a sleeping thread costs as much as the committer's turn).  With
    no commits, it never waits.  A durable writer beside a 300k-entry
    checkpoint kept 84-98% of its rate in focused runs against 59-64% with
    ``_Pacer``'s duty cycle, the checkpoint about as fast; docs/benchmarks.md
    has the full runs, where the two trade against each other.
    """

    __slots__ = ("_wal", "_last", "_step_s", "yielded_s")

    def __init__(self, wal: WalWriter) -> None:
        self._wal = wal
        self._last = time.perf_counter()
        self._step_s = 0.0  # a moving average of one step's work
        self.yielded_s = 0.0

    def __call__(self) -> None:
        now = time.perf_counter()
        step = now - self._last
        self._step_s = step if self._step_s == 0.0 else 0.8 * self._step_s + 0.2 * step
        due = self._step_s * _DUE_FRACTION
        self.yielded_s += self._wal.yield_to_committers(due, _MAX_YIELD_S) or 0.0
        self._last = time.perf_counter()


def run_checkpoint(store: Store) -> CheckpointInfo:
    """One checkpoint of ``store`` in the calling thread, by the protocol above.

    Called with the Checkpointer's lock held (one checkpoint at a time).
    """
    t0 = time.perf_counter()
    wal = store._wal
    assert wal is not None
    store._begin_write()
    try:
        with store._mem_lock:
            frozen = store._mem
            lsn = store._last_lsn
            # Appends happen under the write lock: these are the bytes of
            # the records at or below lsn.
            appended = wal.bytes_appended
            store._frozen = frozen
            store._mem = new_memtable()
            store._mem.last_lsn = lsn
    finally:
        store._end_write()
    swap_s = time.perf_counter() - t0
    # Nothing writes the frozen memtable now; frozen, its fold sorts without
    # the GIL, so committers keep running (sp_memtable_order.c).
    frozen.freeze()
    try:
        wal.flush(lsn, durable=True)
        pacer: _Pacer | _EnginePacer
        # The engine knows when a committer needs the GIL only by its
        # durable flushes: other sync modes keep the duty cycle.
        if wal.engine == "native" and wal.sync_mode == "always":
            pacer, step = _EnginePacer(wal), _ENGINE_STEP
        else:
            pacer, step = _Pacer(store), _STEP
        entries = store._base.write_fold(lambda: frozen.fold_batches(step), lsn, pacer)
    except BaseException:
        # Put the frozen entries back under the newer ones: nothing is lost.
        frozen.thaw()
        with store._mem_lock:
            newer = store._mem
            for k, v in newer.items():
                frozen.put(k, v)
            frozen.last_lsn = newer.last_lsn
            store._mem = frozen
            # _frozen stays (it is now the memtable itself) until the next
            # swap: a lock-free reader that already missed in ``newer``
            # must still find these entries there, not the older base.
        raise
    with store._mem_lock:
        store._frozen = None
    store._ckpt_lsn_mark = lsn
    store._ckpt_bytes_mark = max(store._ckpt_bytes_mark, appended)
    retired = wal.retire_through(lsn)
    info = CheckpointInfo(
        lsn, entries, len(retired), time.perf_counter() - t0, swap_s, pacer.yielded_s
    )
    log.debug("safepoint: checkpoint %s", info)
    return info
