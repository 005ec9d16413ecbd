"""Reopen after a crash: replay of an un-checkpointed log, and an open with
nothing to replay.

Two logs are written once by a child process that then kills itself with
SIGKILL (no close, no flush: what a crash leaves, every byte in the OS's
hands), with sync="none" and no checkpoint:

* *small*: ``--reopen-small-mb`` (default 100 MB) of records that each put one
  100-byte value under a 16-byte key (~660,000 records);
* *large*: ``--reopen-large-mb`` (default 1 GB) of records that each put one
  1 MiB value.

RocksDB (rocksdict) and LevelDB (plyvel) get the same puts, without sync, and
the same SIGKILL, so they too must replay their logs.  Every round reopens a
fresh copy of each crashed directory (a replay may rewrite files), warm (in
the page cache, as after a process crash); the large one also cold (evicted
with posix_fadvise DONTNEED, as after a reboot).  Last, the large safepoint
store is checkpointed, grown to ``--open-store-gb`` (default 10 GB, the
issue's size: an open maps the base image, so its size should not matter,
and this shows it) and opened with nothing to replay.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time

import safepoint

from . import peers
from .common import Context, Result, dir_bytes, drop_cache, interleave, keys_for, values_for

NAME = "reopen"
MIB = 1 << 20
RECORD_OVERHEAD = 32 + 4 + 7 + 16  # record header, op count, op header, key
_LSM = ("rocksdict", "plyvel")


def _crash_after_writing(store: str, path: str, n: int, size: int, seed: int) -> None:
    """In a child process: put ``n`` values one commit each, then SIGKILL self."""
    db = peers.STORES[store](path, durable=False)
    for k, v in zip(keys_for(n, seed=seed), values_for(n, size, seed=seed), strict=True):
        db.put(k, v)
    os.kill(os.getpid(), signal.SIGKILL)


def write_crashed(ctx: Context, store: str, n: int, size: int, seed: int) -> str:
    """A directory holding what ``store`` left when killed after ``n`` puts."""
    path = ctx.fresh_dir(f"crashed-{store}")
    child = multiprocessing.get_context("spawn").Process(
        target=_crash_after_writing, args=(store, path, n, size, seed)
    )
    child.start()
    child.join()
    if child.exitcode != -signal.SIGKILL:
        raise RuntimeError(f"{store} writer exited with {child.exitcode}, not SIGKILL")
    return path


def reopen_copy(ctx: Context, store: str, crashed: str, cold: bool, probe: bytes) -> float:
    """Seconds to open a fresh copy of ``crashed`` (recovery included)."""
    path = ctx.fresh_dir(f"reopen-{store}")
    shutil.rmtree(path)
    shutil.copytree(crashed, path)
    if cold:
        drop_cache(path)
    else:
        os.sync()
    try:
        return timed_open(store, path, probe)
    finally:
        ctx.remove(path)


def timed_open(store: str, path: str, probe: bytes | None = None) -> float:
    """Seconds from open to a usable store; then, untimed, check that the
    store holds ``probe`` (the last key the crashed writer put)."""
    t0 = time.perf_counter()
    db = peers.STORES[store](path, durable=False)  # the sync mode plays no part in recovery
    elapsed = time.perf_counter() - t0
    try:
        if probe is not None and db.get(probe) is None:
            raise RuntimeError(f"{store} lost the last put before the crash ({probe!r})")
    finally:
        db.close()
    return elapsed


def run(ctx: Context) -> list[Result]:
    """Records/s and GB/s of log replay at reopen; ms of an open with no replay."""
    s = ctx.settings
    small_n = max(100, int(s.reopen_small_mb * s.scale * MIB / (RECORD_OVERHEAD + 100)))
    large_n = max(4, int(s.reopen_large_mb * s.scale))
    stores = [n for n in peers.selected(s.peers) if n == "safepoint" or n in _LSM]
    out: list[Result] = []
    for label, n, size, seed in (("small", small_n, 100, 11), ("large", large_n, MIB, 12)):
        ctx.log(f"  reopen: {n:,} puts of {size:,}-byte values, then SIGKILL, for {stores}")
        crashed = {name: write_crashed(ctx, name, n, size, seed) for name in stores}
        last = keys_for(n, seed=seed)[-1]
        # Replaying small records is CPU-bound (cold adds one sequential read
        # of the log); only the large-value case is also run cold.
        temps = (False,) if size < MIB else (False, True)
        cases = {
            f"{name} ({'cold' if cold else 'warm'})": (
                lambda name=name, cold=cold, src=crashed[name], last=last: reopen_copy(
                    ctx, name, src, cold, last
                )
            )
            for name in stores
            for cold in temps
        }
        mb = n * (RECORD_OVERHEAD + size) / 1e6  # bytes of records in the log
        size_text = f"{mb:,.1f}" if mb < 10 else f"{mb:,.0f}"
        what = f"{n:,} x {size} B values" if size < MIB else f"{n:,} x 1 MiB values"
        title = f"reopen after a crash, {size_text} MB of log ({what})"
        samples = interleave(ctx, title, cases)
        for key, secs in samples.items():
            if size < MIB:
                rates, unit = [n / t for t in secs], "records/s"
            else:
                rates, unit = [n * size / 1e9 / t for t in secs], "GB/s"
            note = f"{sorted(secs)[len(secs) // 2] * 1e3:,.0f} ms"
            out.append(Result(title, key, unit, rates, note=note))
        if label == "large" and "safepoint" in crashed:
            target = int(s.open_store_gb * s.scale * 1e9)
            out.extend(_open_no_replay(ctx, crashed["safepoint"], target))
        for path in crashed.values():
            ctx.remove(path)
    return out


GROW_BATCH = 64  # 1 MiB values per commit while growing the store
GROW_CHECKPOINT = 1024  # values between checkpoints: the memtable stays ~1 GiB
GROW_SPARE = 4 * 10**9  # bytes left free on the disk while growing


def grow(ctx: Context, path: str, target: int) -> None:
    """Put 1 MiB values into the store at ``path`` through its own API,
    checkpointing as it goes, until the directory holds ``target`` bytes (or
    as near as the disk's free space allows), then checkpoint, so that an
    open has nothing to replay."""
    have = dir_bytes(path)
    # Each MiB passes through the log before the base image holds it, and a
    # checkpoint's segments are deleted only after it: keep GROW_SPARE free.
    free = shutil.disk_usage(path).free - GROW_SPARE
    if target - have > free:
        ctx.log(f"  only {free / 1e9:.1f} GB free: the store grows to less than asked")
    need = max(0, min(target - have, free)) // MIB
    # Distinct random values (LMDB keeps every copy: the size is real).
    pool = [os.urandom(MIB) for _ in range(min(need, 16))]
    db = safepoint.open(path, sync="none", checkpoint_bytes=None)
    try:
        i, since, t0 = 0, 0, time.perf_counter()
        while i < need:
            batch = min(GROW_BATCH, need - i)
            db.update([(b"grow-%012d" % (i + j), pool[(i + j) % len(pool)]) for j in range(batch)])
            i += batch
            since += batch
            if since >= GROW_CHECKPOINT:
                db.checkpoint()
                since = 0
        db.checkpoint()
    finally:
        db.close()
    if need:
        ctx.log(f"  grew the store by {need:,} MiB in {time.perf_counter() - t0:.0f} s")


def _open_no_replay(ctx: Context, path: str, target: int) -> list[Result]:
    grow(ctx, path, target)
    gb = dir_bytes(path) / 1e9
    title = f"open with nothing to replay ({gb:.2f} GB store)"

    def once(cold: bool) -> float:
        if cold:
            drop_cache(path)
        return timed_open("safepoint", path) * 1e3

    samples = interleave(
        ctx,
        title,
        {"safepoint (warm)": lambda: once(False), "safepoint (cold)": lambda: once(True)},
    )
    return [Result(title, k, "ms", v, higher_is_better=False) for k, v in samples.items()]
