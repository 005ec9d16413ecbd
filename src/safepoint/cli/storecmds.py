"""Commands that open the store through the API: ``checkpoint``, ``recover``
and the snapshot commands (``snapshots``, ``save``, ``restore``,
``delete-snapshot``).

Each opens an existing store (never creates one), does one thing, closes it
and says what happened.  Opening for writing takes the store's lock, so
these fail with exit code 2 while another process has the store open.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from .common import UsageError, human_bytes, open_existing, print_table


def run_checkpoint(args: argparse.Namespace) -> int:
    """Fold the log into the base image now."""
    with open_existing(args.path) as db:
        info = db.checkpoint()
    print(
        f"checkpoint at lsn {info.lsn}: {info.entries} entries folded into the base image, "
        f"{info.segments_retired} segment{'s' if info.segments_retired != 1 else ''} retired, "
        f"{info.duration_s * 1000:.1f} ms"
    )
    return 0


def run_recover(args: argparse.Namespace) -> int:
    """Open with a chosen recovery mode and report what recovery did."""
    with open_existing(args.path, recovery=args.mode) as db:
        rec = db.recovery
    cut = "nothing: the log ended cleanly"
    if not rec.clean:
        cut = f"{rec.bytes_dropped} bytes ({rec.stop_reason})"
    rows: list[tuple[str, object]] = [
        ("mode", rec.mode),
        ("base image", f"checkpoint at lsn {rec.base_lsn}"),
        ("replayed", f"{rec.records_replayed} records, up to lsn {rec.last_lsn}"),
        ("cut", cut),
        ("torn tail", "yes" if rec.torn_tail else "no"),
    ]
    if rec.records_dropped:
        n = rec.records_dropped
        rows.append(("set aside", f"{n} valid record{'s' if n != 1 else ''} after the damage"))
    for path in rec.set_aside:
        rows.append(("kept in", path))
    folded = getattr(rec, "folded_damage", None)
    if folded:
        rows.append(("skipped", f"{folded} (not needed: the base image holds it)"))
    rows.append(("took", f"{rec.duration_s * 1000:.1f} ms"))
    print(f"recovered {args.path}")
    print_table(rows, indent="  ")
    return 0


# --- snapshots ------------------------------------------------------------------------


def _key_value(text: str, flag: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise UsageError(f"{flag} takes NAME=VALUE, not {text!r}")
    return key, value


def _metric(text: str) -> tuple[str, float]:
    key, value = _key_value(text, "--metric")
    try:
        return key, float(value)
    except ValueError:
        raise UsageError(f"--metric {key}: {value!r} is not a number") from None


def _created(seconds: float) -> str:
    t = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _snapshot_dict(info: Any) -> dict[str, Any]:
    return {
        "name": info.name,
        "lsn": info.lsn,
        "step": info.step,
        "created": info.created,
        "metrics": info.metrics,
        "metadata": info.metadata,
        "size_bytes": info.size_bytes,
    }


def run_snapshots(args: argparse.Namespace) -> int:
    """List the store's snapshots, oldest first."""
    with open_existing(args.path, readonly=True) as db:
        snaps = db.snapshots()
    if args.json:
        print(json.dumps([_snapshot_dict(s) for s in snaps], indent=2, default=str))
        return 0
    if not snaps:
        print("no snapshots")
        return 0
    print(f"{'name':<24} {'lsn':>8} {'step':>8}  {'created (UTC)':<19}  {'size':>10}  metrics")
    for s in snaps:
        metrics = ", ".join(f"{k}={v}" for k, v in (s.metrics or {}).items())
        step = "-" if s.step is None else s.step
        print(
            f"{s.name:<24} {s.lsn:>8} {step:>8}  {_created(s.created):<19}  "
            f"{human_bytes(s.size_bytes):>10}  {metrics}"
        )
    return 0


def run_save(args: argparse.Namespace) -> int:
    """Save a named snapshot of the store's current state."""
    metrics = dict(_metric(m) for m in args.metric)
    metadata = dict(_key_value(m, "--meta") for m in args.meta)
    with open_existing(args.path) as db:
        info = db.save(
            args.name,
            step=args.step,
            metrics=metrics or None,
            metadata=metadata or None,
            overwrite=args.overwrite,
        )
        kept = {s.name for s in db.snapshots()}
    print(f"saved snapshot {info.name} at lsn {info.lsn} ({human_bytes(info.size_bytes)})")
    if info.name not in kept:
        print(f"(the store's retention policy has already deleted {info.name})")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """Roll the whole store back to a snapshot."""
    with open_existing(args.path) as db:
        try:
            info = db.restore(args.name)
        except KeyError:
            raise UsageError(f"no snapshot named {args.name!r}") from None
    print(
        f"restored {args.path} to snapshot {args.name} (lsn {info.snapshot.lsn}); "
        f"the state it replaced (up to lsn {info.replaced_lsn}) is kept in {info.set_aside}"
    )
    return 0


def run_delete_snapshot(args: argparse.Namespace) -> int:
    """Delete a named snapshot."""
    with open_existing(args.path) as db:
        try:
            db.delete_snapshot(args.name)
        except KeyError:
            raise UsageError(f"no snapshot named {args.name!r}") from None
    print(f"deleted snapshot {args.name}")
    return 0
