"""``safepoint verify``: check every CRC of the log and of the base image.

Reads the files directly (LMDB read-only), so it changes nothing and works
on a store that ``safepoint.open`` would refuse.  Every WAL record of every
segment is checked from the first one on disk, not only those after the
checkpoint, and every base-image entry's CRC32C.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import lmdb

from .. import snapshot_files as snapshots
from ..errors import CorruptionError
from ..format import FORMAT_VERSION, LMDB_ENGINE
from ..fs import DEFAULT_FS
from ..segment import list_segments
from .baseread import BASE_FILE, BaseFacts, check_entries, open_base, read_facts
from .common import EXIT_DAMAGE, EXIT_OK, ByteProgress, progress, store_path
from .logscan import Problem, Record, bare_message, find_store_id, scan_log


@dataclass
class VerifyResult:
    """What ``verify_store`` checked and found."""

    path: str
    base_entries: int = 0
    snapshots: int = 0
    checkpoint_lsn: int = 0
    segments: int = 0
    records: int = 0
    first_lsn: int | None = None
    last_lsn: int | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def damage(self) -> list[Problem]:
        """Problems that are damage (not a torn tail)."""
        return [p for p in self.problems if not p.torn_tail]

    def as_dict(self) -> dict[str, object]:
        """The --json form."""
        return {
            "path": self.path,
            "ok": not self.damage,
            "base_entries_checked": self.base_entries,
            "snapshots_checked": self.snapshots,
            "checkpoint_lsn": self.checkpoint_lsn,
            "segments_checked": self.segments,
            "records_checked": self.records,
            "first_lsn": self.first_lsn,
            "last_lsn": self.last_lsn,
            "problems": [p.as_dict() for p in self.problems],
        }


def verify_store(root: Path) -> VerifyResult:
    """Check every CRC of the store at ``root``; never writes."""
    result = VerifyResult(str(root))
    store_id = _verify_base(root, result)
    _verify_snapshots(root, result)
    if store_id is None:
        store_id = find_store_id(root)
    segs = list_segments(DEFAULT_FS, str(root / "wal")) if (root / "wal").is_dir() else []
    result.segments = len(segs)
    if store_id is None:
        if segs:
            result.problems.append(
                Problem("wal", None, None, "no valid segment header and no base image store id")
            )
        return result
    total = sum(DEFAULT_FS.file_size(s.path) for s in segs)
    with ByteProgress(total, "log") as bar:
        for item in scan_log(
            root, store_id, checkpoint_lsn=result.checkpoint_lsn, on_bytes=bar.update
        ):
            if isinstance(item, Record):
                result.records += 1
                if result.first_lsn is None:
                    result.first_lsn = item.lsn
                result.last_lsn = item.lsn
            else:
                result.problems.append(item)
    return result


def _verify_base(root: Path, result: VerifyResult) -> bytes | None:
    """Check the base image; returns its store id (None if it has none)."""
    try:
        with open_base(root) as (env, data_db, meta_db):
            facts = read_facts(env, data_db, meta_db)
            result.checkpoint_lsn = max(facts.checkpoint_lsn, 0)
            for p in _meta_problems(facts):
                result.problems.append(p)

            def count() -> None:
                result.base_entries += 1

            entries = check_entries(root, env, data_db, facts.checkpoint_lsn, on_entry=count)
            for problem in progress(entries, total=facts.entries, desc="base image"):
                result.problems.append(problem)
            return facts.store_id
    except FileNotFoundError:
        result.problems.append(Problem(BASE_FILE, None, None, "the base image is missing"))
    except lmdb.Error as exc:
        result.problems.append(Problem(BASE_FILE, None, None, f"LMDB cannot read it: {exc}"))
    return None


def _verify_snapshots(root: Path, result: VerifyResult) -> None:
    """Check each snapshot's manifest and the CRC32C of every file it lists."""
    d = root / snapshots.SNAPSHOT_DIR
    if not d.is_dir():
        return
    names = [n for n in sorted(os.listdir(d)) if not n.startswith(".") and (d / n).is_dir()]
    for name in progress(names, total=len(names), desc="snapshots"):
        result.snapshots += 1
        try:
            snapshots.verify_snapshot(DEFAULT_FS, str(d / name))
        except CorruptionError as exc:
            where = exc.file or f"{snapshots.SNAPSHOT_DIR}/{name}"
            result.problems.append(Problem(where, exc.offset, exc.lsn, bare_message(exc)))


def _meta_problems(facts: BaseFacts) -> list[Problem]:
    out = []
    if facts.store_id is None:
        out.append(Problem(BASE_FILE, None, None, "meta: no store id"))
    elif len(facts.store_id) != 16:
        out.append(Problem(BASE_FILE, None, None, "meta: the store id is not 16 bytes"))
    if facts.checkpoint_lsn < 0:
        out.append(Problem(BASE_FILE, None, None, "meta: the checkpoint lsn is not a number"))
    if facts.format_version is not None and facts.format_version != FORMAT_VERSION:
        out.append(
            Problem(
                BASE_FILE,
                None,
                None,
                f"meta: format version {facts.format_version}, this safepoint reads "
                f"{FORMAT_VERSION}",
            )
        )
    if facts.engine is not None and facts.engine != LMDB_ENGINE:
        out.append(Problem(BASE_FILE, None, None, f"meta: written by LMDB engine {facts.engine}"))
    return out


def run(args: argparse.Namespace) -> int:
    """The ``verify`` command."""
    root = store_path(args.path)
    result = verify_store(root)
    bad = result.damage if not args.strict else result.problems
    if args.json:
        out = result.as_dict()
        out["ok"] = not bad
        print(json.dumps(out, indent=2))
        return EXIT_DAMAGE if bad else EXIT_OK
    lsns = f" (lsn {result.first_lsn}..{result.last_lsn})" if result.first_lsn is not None else ""
    print(f"verify {root}")
    print(
        f"  base image  {result.base_entries} entries checked, "
        f"checkpoint at lsn {result.checkpoint_lsn}"
    )
    if result.snapshots:
        print(f"  snapshots   {result.snapshots} checked")
    plural = "" if result.segments == 1 else "s"
    print(
        f"  log         {result.segments} segment{plural}, {result.records} records checked{lsns}"
    )
    for p in result.problems:
        label = "torn tail" if p.torn_tail and not args.strict else "DAMAGE"
        print(f"{label}: {p.describe()}")
    if bad:
        found = f"damaged: {len(bad)} problem{'s' if len(bad) != 1 else ''} found."
        if any(p.file.startswith("wal/") and not p.folded for p in bad):
            found += (
                f" `safepoint recover {args.path} --mode point_in_time` keeps the valid "
                "prefix of the log and sets the rest aside"
            )
        elif all(p.folded for p in bad):
            found += (
                " The damaged records are already in the base image: the store opens without them"
            )
        print(found)
        return EXIT_DAMAGE
    if result.problems:
        print(
            "ok: no damage; the torn tail is what a crash mid-write leaves (the next open cuts it)"
        )
    else:
        print("ok: every checksum matches")
    return EXIT_OK
