"""Bulk load: 1,000,000 puts (16-byte keys, 100-byte values) in batches of
1,000, with no fsync per batch, keys in ascending order (an import of a
sorted dump; in shuffled order the B-trees, lmdb and sqlite, write every page
again at each batch and fall to a few tens of thousands of puts/s).

safepoint runs with sync="none" and one transaction per batch; each peer in
its cheapest mode with its batch API: lmdb one write transaction per batch
(sync=False), sqlite one transaction per batch (synchronous=OFF), rocksdict a
WriteBatch (sync=False), plyvel a write_batch (sync=False), dict.update.
Timed: the loading loop only (everything is in the OS's hands, nothing
forced to disk), so every store is measured at the same point.
"""

from __future__ import annotations

import time

from . import peers
from .common import Context, Result, interleave, keys_for, values_for

NAME = "bulk"
BATCH = 1000


def load_rate(ctx: Context, store: str, items: list[tuple[bytes, bytes]]) -> float:
    """Puts/s loading ``items`` in batches of BATCH into a fresh ``store``."""
    path = ctx.fresh_dir(f"bulk-{store}")
    db = peers.STORES[store](path, durable=False)
    try:
        put_batch = db.put_batch
        t0 = time.perf_counter()
        for i in range(0, len(items), BATCH):
            put_batch(items[i : i + BATCH])
        elapsed = time.perf_counter() - t0
    finally:
        db.close()
    return len(items) / elapsed


def run(ctx: Context) -> list[Result]:
    """Puts/s of a bulk load per store."""
    n = ctx.settings.n(1_000_000, minimum=BATCH)
    items = list(zip(sorted(keys_for(n)), values_for(n), strict=True))
    stores = peers.selected(ctx.settings.peers)
    title = f"bulk load {n:,} puts"
    samples = interleave(
        ctx, title, {name: (lambda name=name: load_rate(ctx, name, items)) for name in stores}
    )
    return [
        Result(title, name, "puts/s", v, note=f"batches of {BATCH}, sorted keys, no fsync")
        for name, v in samples.items()
    ]
