"""What a log holds, minus the wall clock: for comparing two logs.

Two writers given the same appends, flushes and rollovers must leave the
same segments with the same records; only each record's ``time_ns`` may
differ.  ``log_contents`` reads a ``wal/`` directory into a value that
compares equal exactly then (used by tests/test_wal_native.py and the
``wal_engine`` fuzz target to hold the native group-commit engine to its
Python oracle).
"""

from __future__ import annotations

import os

from .. import records
from ..format import RECORD_HEADER_SIZE, SEGMENT_HEADER, SEGMENT_HEADER_SIZE

# (offset, length, lsn, durable_lsn, payload) of one record.
Record = tuple[int, int, int, int, bytes]


def log_contents(
    wal_dir: str | os.PathLike[str], store_id: bytes
) -> list[tuple[str, int, list[Record]]]:
    """Per segment, in name order: its file name, its size, and its valid
    records (scanned as the reader does, stopping at the first invalid one)."""
    seed = records.store_seed(store_id)
    out: list[tuple[str, int, list[Record]]] = []
    for name in sorted(os.listdir(wal_dir)):
        if not name.endswith(".wal"):
            continue
        with open(os.path.join(wal_dir, name), "rb") as f:
            data = f.read()
        if len(data) < SEGMENT_HEADER_SIZE:
            out.append((name, len(data), []))
            continue
        first_lsn = int(SEGMENT_HEADER.unpack_from(data)[4])  # as the header says
        res = records.scan(data, seed, first_lsn, start=SEGMENT_HEADER_SIZE)
        recs = [
            (
                r.offset,
                r.length,
                r.lsn,
                r.durable_lsn,
                data[r.offset + RECORD_HEADER_SIZE : r.offset + r.length],
            )
            for r in res.records
        ]
        out.append((name, len(data), recs))
    return out
