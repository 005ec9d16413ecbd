"""Reopen time: recovery of an un-checkpointed log, and an open with nothing
to replay.

Two logs are written once, with sync="none" and no checkpoint, then closed:

* *small*: ``--reopen-small-mb`` (default 100 MB) of records that each put one
  100-byte value under a 16-byte key (~660,000 records);
* *large*: ``--reopen-large-mb`` (default 1 GB) of records that each put one
  1 MiB value.

Each is reopened every round, warm (files in the page cache, as after a
process crash) and cold (evicted with posix_fadvise DONTNEED, as after a
reboot).  RocksDB (rocksdict) and LevelDB (plyvel), loaded with the same puts
without sync, are reopened beside it: they replay their own logs.  Last, the
large store is checkpointed and opened with nothing to replay.
"""

from __future__ import annotations

import time

import safepoint

from . import peers
from .common import Context, Result, dir_bytes, drop_cache, interleave, keys_for, values_for

NAME = "reopen"
MIB = 1 << 20
_LSM = ("rocksdict", "plyvel")


def _write(ctx: Context, store: str, items: list[tuple[bytes, bytes]]) -> str:
    path = ctx.fresh_dir(f"reopen-{store}")
    db = peers.STORES[store](path, durable=False)
    try:
        for k, v in items:
            db.put(k, v)
    finally:
        db.close()
    return path


def _reopen(store: str, path: str, cold: bool) -> float:
    if cold:
        drop_cache(path)
    t0 = time.perf_counter()
    if store == "safepoint":
        db = safepoint.open(path, checkpoint_bytes=None)
        elapsed = time.perf_counter() - t0
        db.close()
    else:
        adapter = peers.STORES[store](path, durable=False)
        elapsed = time.perf_counter() - t0
        adapter.close()
    return elapsed


def _items(n: int, size: int, seed: int) -> list[tuple[bytes, bytes]]:
    return list(zip(keys_for(n, seed=seed), values_for(n, size, seed=seed), strict=True))


def run(ctx: Context) -> list[Result]:
    """Records/s and MB/s of log replay at reopen; ms of an open with no replay."""
    s = ctx.settings
    record = 32 + 4 + 7 + 16  # record header + op count + op header + key
    small_n = max(100, int(s.reopen_small_mb * s.scale * MIB / (record + 100)))
    large_n = max(4, int(s.reopen_large_mb * s.scale))
    stores = [n for n in peers.selected(s.peers) if n == "safepoint" or n in _LSM]
    out: list[Result] = []
    large_sp = ""
    for label, n, size in (("small", small_n, 100), ("large", large_n, MIB)):
        items = _items(n, size, seed=11 if label == "small" else 12)
        ctx.log(f"  reopen: writing the {label} log ({n:,} records of {size:,}-byte values)")
        paths = {name: _write(ctx, name, items) for name in stores}
        del items
        mb = n * (record + size) / 1e6  # bytes of records in the log
        if label == "large":
            large_sp = paths.get("safepoint", "")
        cases = {}
        for name, path in paths.items():
            for cold in (False, True):
                key = f"{name} ({'cold' if cold else 'warm'})"
                cases[key] = lambda name=name, path=path, cold=cold: _reopen(name, path, cold)
        what = f"{n:,} x {size:,} B values" if size < MIB else f"{n:,} x 1 MiB values"
        title = f"reopen after {mb:,.0f} MB of log ({what})"
        samples = interleave(ctx, title, cases)
        for key, secs in samples.items():
            if size < MIB:
                rates, unit = [n / t for t in secs], "records/s"
            else:
                rates, unit = [n * size / 1e9 / t for t in secs], "GB/s"
            note = f"{sorted(secs)[len(secs) // 2] * 1e3:,.0f} ms"
            out.append(Result(title, key, unit, rates, note=note))
        for path in paths.values():
            if path != large_sp:
                ctx.remove(path)
    if large_sp:
        out.extend(_open_no_replay(ctx, large_sp))
    return out


def _open_no_replay(ctx: Context, path: str) -> list[Result]:
    db = safepoint.open(path, checkpoint_bytes=None)
    try:
        db.checkpoint()
    finally:
        db.close()
    gb = dir_bytes(path) / 1e9
    title = f"open with nothing to replay ({gb:.2f} GB store)"
    samples = interleave(
        ctx,
        title,
        {
            "safepoint (warm)": lambda: _reopen("safepoint", path, False) * 1e3,
            "safepoint (cold)": lambda: _reopen("safepoint", path, True) * 1e3,
        },
    )
    ctx.remove(path)
    return [Result(title, k, "ms", v, higher_is_better=False) for k, v in samples.items()]
