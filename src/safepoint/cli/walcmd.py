"""``safepoint wal``: list the log's records, like ``pg_waldump``.

One line per record: LSN, segment, offset, length, wall-clock time (UTC),
the ``durable_lsn`` the writer knew, and a summary of the ops.  ``--json``
prints one JSON object per record instead.  Records go to stdout; problems
met on the way go to stderr, so that a listing can be piped.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .. import records
from ..format import OP_PUT
from ..fs import DEFAULT_FS
from ..segment import list_segments
from .baseread import open_base, read_facts
from .common import EXIT_DAMAGE, EXIT_OK, UsageError, format_time_ns, show_key, store_path
from .dumpformat import encode_bytes
from .logscan import Record, find_store_id, scan_log

_SHOWN_OPS = 3


def summarize_ops(payload: memoryview) -> str:
    """``2 ops: put sim/step (4 B), del tmp``."""
    try:
        ops = records.decode_payload(payload)
    except ValueError as exc:
        return f"undecodable payload ({exc})"
    parts = []
    for kind, key, value in ops[:_SHOWN_OPS]:
        if kind == OP_PUT:
            assert value is not None
            parts.append(f"put {show_key(key)} ({len(value)} B)")
        else:
            parts.append(f"del {show_key(key)}")
    if len(ops) > _SHOWN_OPS:
        parts.append(f"… +{len(ops) - _SHOWN_OPS} more")
    return f"{len(ops)} op{'s' if len(ops) != 1 else ''}: " + ", ".join(parts)


def record_json(rec: Record) -> dict[str, Any]:
    """A record for --json: keys in the dump encoding, value sizes only."""
    ops = []
    for kind, key, value in records.decode_payload(rec.payload):
        op: dict[str, Any] = {"op": "put" if kind == OP_PUT else "delete", "key": encode_bytes(key)}
        if value is not None:
            op["value_bytes"] = len(value)
        ops.append(op)
    return {
        "lsn": rec.lsn,
        "segment": rec.file,
        "offset": rec.offset,
        "length": rec.length,
        "time_ns": rec.time_ns,
        "time": format_time_ns(rec.time_ns),
        "durable_lsn": rec.durable_lsn,
        "ops": ops,
    }


def run(args: argparse.Namespace) -> int:
    """The ``wal`` command."""
    root = store_path(args.path)
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 or more")
    store_id = None
    checkpoint_lsn = 0
    try:
        with open_base(root) as (env, data_db, meta_db):
            facts = read_facts(env, data_db, meta_db)
        store_id, checkpoint_lsn = facts.store_id, max(facts.checkpoint_lsn, 0)
    except Exception:  # noqa: BLE001 - a damaged base must not hide the log
        pass
    if store_id is None:
        store_id = find_store_id(root)
    if store_id is None:
        if list_segments(DEFAULT_FS, str(root / "wal")):
            print("safepoint wal: no readable segment header in wal/", file=sys.stderr)
            return EXIT_DAMAGE
        return EXIT_OK
    shown = 0
    damaged = False
    if not args.json:
        print(
            f"{'lsn':>8}  {'segment':<28} {'offset':>10} {'length':>8}  "
            f"{'time (UTC)':<26} {'durable':>8}  ops"
        )
    for item in scan_log(root, store_id, checkpoint_lsn=checkpoint_lsn):
        if not isinstance(item, Record):
            damaged = damaged or not item.torn_tail
            label = "torn tail" if item.torn_tail else "DAMAGE"
            print(f"{label}: {item.describe()}", file=sys.stderr)
            continue
        if item.lsn < args.from_lsn:
            continue
        if args.limit is not None and shown >= args.limit:
            break  # like pg_waldump: what lies past the limit is not read
        shown += 1
        if args.json:
            print(json.dumps(record_json(item)))
        else:
            print(
                f"{item.lsn:>8}  {item.file:<28} {item.offset:>10} {item.length:>8}  "
                f"{format_time_ns(item.time_ns):<26} {item.durable_lsn:>8}  "
                f"{summarize_ops(item.payload)}"
            )
    return EXIT_DAMAGE if damaged else EXIT_OK
