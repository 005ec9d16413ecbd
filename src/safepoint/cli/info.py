"""``safepoint info``: what is in a store directory, like ``mdb_stat``.

Reads the files directly and changes nothing, so it works beside a running
writer and on a damaged store.  Record CRCs are checked on the way (the log
has to be scanned to find its end), base-image entries are not: that is
``verify``'s job.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import lmdb

from .. import snapshot_files as snapshots
from ..format import PREPARED_SEGMENT_NAME
from ..fs import DEFAULT_FS
from ..segment import list_segments
from .baseread import open_base, read_facts
from .common import EXIT_DAMAGE, EXIT_OK, ByteProgress, human_bytes, print_table, store_path
from .logscan import Problem, Record, bare_message, find_store_id, scan_log, segment_name


def gather(root: Path) -> dict[str, Any]:
    """Everything ``info`` reports, as plain data."""
    out: dict[str, Any] = {"path": str(root)}
    problems: list[Problem] = []
    store_id = None
    checkpoint_lsn = 0
    try:
        with open_base(root) as (env, data_db, meta_db):
            facts = read_facts(env, data_db, meta_db)
        store_id = facts.store_id
        checkpoint_lsn = max(facts.checkpoint_lsn, 0)
        out["base"] = {
            "checkpoint_lsn": facts.checkpoint_lsn,
            "checkpoints": facts.checkpoints,
            "entries": facts.entries,
            "bytes": _size(root / "base" / "data.mdb"),
            "format_version": facts.format_version,
            "lmdb_engine": facts.engine,
        }
    except (FileNotFoundError, lmdb.Error) as exc:
        out["base"] = {"error": str(exc)}
        problems.append(Problem("base/data.mdb", None, None, f"cannot read it: {exc}"))
    if store_id is None:
        store_id = find_store_id(root)
    out["store_id"] = store_id.hex() if store_id else None
    wal_dir = root / "wal"
    segs = list_segments(DEFAULT_FS, str(wal_dir)) if wal_dir.is_dir() else []
    out["segments"] = [
        {"name": segment_name(s), "first_lsn": s.first_lsn, "bytes": _size(Path(s.path))}
        for s in segs
    ]
    out["prepared_segment"] = (wal_dir / PREPARED_SEGMENT_NAME).exists()
    records = after = 0
    last_lsn = checkpoint_lsn
    if store_id is not None:
        total = sum(x["bytes"] for x in out["segments"])
        with ByteProgress(total, "log") as bar:
            for item in scan_log(
                root, store_id, checkpoint_lsn=checkpoint_lsn, on_bytes=bar.update
            ):
                if isinstance(item, Record):
                    records += 1
                    after += item.lsn > checkpoint_lsn
                    last_lsn = max(last_lsn, item.lsn)
                else:
                    problems.append(item)
    out["log"] = {
        "records": records,
        "records_after_checkpoint": after,
        "last_lsn": last_lsn,
        "bytes": sum(x["bytes"] for x in out["segments"]),
    }
    out["lsn"] = last_lsn
    out["snapshots"] = _snapshots(root, problems)
    out["problems"] = [p.as_dict() for p in problems]
    out["lost"] = sorted(os.listdir(root / "lost")) if (root / "lost").is_dir() else []
    out["lock"] = _lock(root)
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _snapshots(root: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    """The snapshots whose manifests check out; damaged ones become problems."""
    infos, damaged = snapshots.scan(DEFAULT_FS, str(root))
    for name, exc in damaged.items():
        problems.append(
            Problem(exc.file or f"snapshots/{name}", exc.offset, None, bare_message(exc))
        )
    return [{"name": i.name, "lsn": i.lsn, "step": i.step, "bytes": i.size_bytes} for i in infos]


def _lock(root: Path) -> dict[str, Any]:
    """Who last opened the store for writing, and whether it still runs.

    Read from the pid the writer puts in LOCK; the flock itself is not
    tested, since taking it even briefly could make a real writer's open fail.
    """
    try:
        text = (root / "LOCK").read_text().strip()
    except OSError:
        return {"pid": None, "running": False}
    if not text.isdigit():
        return {"pid": None, "running": False}
    pid = int(text)
    try:
        os.kill(pid, 0)
        running = True
    except ProcessLookupError:
        running = False
    except PermissionError:
        running = True
    return {"pid": pid, "running": running}


def run(args: argparse.Namespace) -> int:
    """The ``info`` command."""
    root = store_path(args.path)
    facts = gather(root)
    damaged = any(not p["torn_tail"] for p in facts["problems"])
    if args.json:
        print(json.dumps(facts, indent=2))
        return EXIT_DAMAGE if damaged else EXIT_OK
    base = facts["base"]
    log = facts["log"]
    rows: list[tuple[str, object]] = [
        ("store", facts["path"]),
        ("store id", facts["store_id"] or "-"),
        ("lsn", f"{facts['lsn']} (the last committed record)"),
    ]
    if "error" in base:
        rows.append(("base image", f"unreadable: {base['error']}"))
    else:
        rows.append(
            (
                "checkpoint",
                f"lsn {base['checkpoint_lsn']} "
                f"({base['checkpoints']} checkpoint{'s' if base['checkpoints'] != 1 else ''} "
                "taken by this base image)",
            )
        )
        rows.append(
            (
                "base image",
                f"{base['entries']} entries, {human_bytes(base['bytes'])}, format "
                f"{base['format_version']}, LMDB {base['lmdb_engine']}",
            )
        )
    segs = facts["segments"]
    rows.append(
        (
            "log",
            f"{len(segs)} segment{'s' if len(segs) != 1 else ''}, "
            f"{human_bytes(log['bytes'])} on disk, {log['records']} records "
            f"({log['records_after_checkpoint']} after the checkpoint)",
        )
    )
    for s in segs:
        rows.append(("", f"{s['name']}  from lsn {s['first_lsn']}  {human_bytes(s['bytes'])}"))
    snaps = facts["snapshots"]
    rows.append(("snapshots", len(snaps) or "none"))
    for snap in snaps:
        extra = f"  lsn {snap['lsn']}" + (
            f"  step {snap['step']}" if snap["step"] is not None else ""
        )
        rows.append(("", f"{snap['name']}{extra}  {human_bytes(snap['bytes'])}"))
    if facts["lost"]:
        rows.append(("lost/", f"{len(facts['lost'])} files set aside by recovery"))
    lock = facts["lock"]
    if lock["pid"] is None:
        rows.append(("writer", "none recorded"))
    else:
        state = "running" if lock["running"] else "not running"
        rows.append(("writer", f"last opened by pid {lock['pid']} ({state})"))
    print_table(rows)
    for p in facts["problems"]:
        label = "torn tail" if p["torn_tail"] else "DAMAGE"
        print(f"{label}: {Problem(**p).describe()}")
    if damaged:
        print("damaged: run `safepoint verify` for every problem")
    return EXIT_DAMAGE if damaged else EXIT_OK
