"""Crash models: what a power loss leaves of the writes not yet synced.

Each model is chosen by name and seed and turns a ``Replay`` (durable state
plus pending operations at one moment) into a ``CrashState``: the files and
directories found on disk after the power comes back.  What a model may
keep is only ever pending work; synced data and directory entries covered by
a directory fsync always survive.

=================  ============================================================
``drop_unsynced``  nothing pending survives (LevelDB's fault-injection env)
``keep_prefix``    a random prefix of the pending operations, in issue order
``keep_subset``    a random subset, at 512-byte sector granularity for writes:
                   the page cache writes back in any order
``torn_write``     a random prefix ending in one write torn sector by sector
                   into new / old / zero / garbage bytes (etcd's torn sectors)
``undo_dir_ops``   every pending write lands, but creates, renames, removes
                   and mkdirs not covered by a directory fsync are undone
=================  ============================================================

A torn sector only ever changes bytes inside the write's own range: disks
write a sector atomically or not at all, so bytes that were durable before
the write, in the same sector, are never damaged by it.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .trace import (
    DIR,
    DataOp,
    MetaOp,
    Replay,
    Truncate,
    Write,
    apply_data,
    apply_meta,
    parent,
)

SECTOR_BYTES = 512
MODELS = ("drop_unsynced", "keep_prefix", "keep_subset", "torn_write", "undo_dir_ops")
RANDOM_MODELS = frozenset({"keep_prefix", "keep_subset", "torn_write"})
_TEAR_KINDS = ("new", "old", "zero", "garbage")


@dataclass
class CrashState:
    """The files on disk after a simulated power loss, ready to materialise."""

    model: str
    seed: int
    point: int  # how many trace events happened before the power went
    files: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes
    dirs: list[str] = field(default_factory=list)  # relative paths, parents first
    note: str = ""  # what the model did, for a violation report

    def fingerprint(self) -> str:
        """A digest of the disk contents: equal states have equal digests."""
        h = hashlib.sha256()
        for d in sorted(self.dirs):
            h.update(b"d\0" + d.encode() + b"\0")
        for path in sorted(self.files):
            h.update(b"f\0" + path.encode() + b"\0")
            h.update(hashlib.sha256(self.files[path]).digest())
        return h.hexdigest()

    def materialise(self, dest: str | os.PathLike[str]) -> Path:
        """Write this state as a real directory tree at ``dest`` (replacing
        whatever is there) and return its path.  LMDB environments get their
        last committed ``data.mdb`` and no lock file (LMDB makes a new one)."""
        root = Path(dest)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        for d in self.dirs:
            (root / d).mkdir()
        for path, data in self.files.items():
            (root / path).write_bytes(data)
        return root


def crash_state(replay: Replay, model: str, seed: int = 0) -> CrashState | None:
    """The disk after a power loss at ``replay``'s moment under ``model``.

    Returns None when the model cannot apply there (``torn_write`` with no
    pending write).  Deterministic in (model, seed, replay).
    """
    if model not in MODELS:
        raise ValueError(f"unknown crash model {model!r}; the models are {', '.join(MODELS)}")
    rng = random.Random(f"{model}/{seed}/{replay.index}")
    pending = replay.pending()
    note = ""
    kept: list[tuple[int | None, DataOp | MetaOp | _Torn]]
    if model == "drop_unsynced":
        kept = []
    elif model == "keep_prefix":
        cut = rng.randint(0, len(pending))
        kept = [(n, op) for _, n, op in pending[:cut]]
        note = f"kept {cut} of {len(pending)} pending operations"
    elif model == "keep_subset":
        kept = []
        for _, n, op in pending:
            if isinstance(op, Write):
                kept.extend((n, piece) for piece in _sectors(op) if rng.random() < 0.5)
            elif rng.random() < 0.5:
                kept.append((n, op))
        note = f"kept a random subset of {len(pending)} pending operations"
    elif model == "torn_write":
        writes = [i for i, (_, _, op) in enumerate(pending) if isinstance(op, Write)]
        if not writes:
            return None
        w = rng.choice(writes)
        kept = [(n, op) for _, n, op in pending[:w]]
        node, op = pending[w][1], pending[w][2]
        assert isinstance(op, Write) and node is not None
        torn = _tear(op, rng)
        kept.append((node, torn))
        note = f"kept {w} of {len(pending)} pending operations, then tore {torn.describe()}"
    else:  # undo_dir_ops
        kept = [(n, op) for _, n, op in pending if n is not None]
        note = f"all writes kept, {len(replay.pending_meta)} directory operations undone"
    return _build(replay, model, seed, kept, note)


@dataclass(frozen=True)
class _Torn:
    """A write torn sector by sector; ``pieces`` are (offset, kind, bytes)."""

    write: Write
    pieces: tuple[tuple[int, str, bytes], ...]

    def describe(self) -> str:
        kinds = ",".join(kind for _, kind, _ in self.pieces)
        return f"the write of {self.write.length} bytes at offset {self.write.offset} [{kinds}]"


def _sectors(op: Write) -> list[Write]:
    """``op`` split at sector boundaries of the file."""
    out = []
    pos, end = op.offset, op.offset + op.length
    while pos < end:
        stop = min(end, (pos // SECTOR_BYTES + 1) * SECTOR_BYTES)
        rel = pos - op.offset
        data = None if op.data is None else op.data[rel : rel + stop - pos]
        out.append(Write(op.node, pos, stop - pos, data))
        pos = stop
    return out


def _tear(op: Write, rng: random.Random) -> _Torn:
    pieces = []
    for s in _sectors(op):
        kind = rng.choice(_TEAR_KINDS)
        if kind == "new":
            data = s.data if s.data is not None else bytes(s.length)
        elif kind == "zero":
            data = bytes(s.length)
        elif kind == "garbage":
            data = rng.randbytes(s.length)
        else:
            data = b""
        pieces.append((s.offset, kind, data))
    return _Torn(op, tuple(pieces))


def _apply_torn(content: bytearray, torn: _Torn) -> None:
    end = torn.write.offset + torn.write.length
    if len(content) < end:
        # The size grows with the write (the metadata made it), the data
        # of the sectors left "old" reads as the zeros of the new extent.
        content.extend(bytes(end - len(content)))
    for offset, kind, data in torn.pieces:
        if kind != "old":
            content[offset : offset + len(data)] = data


def _build(
    replay: Replay,
    model: str,
    seed: int,
    kept: list[tuple[int | None, DataOp | MetaOp | _Torn]],
    note: str,
) -> CrashState:
    entries = dict(replay.entries)
    data_ops: dict[int, list[DataOp | _Torn]] = {}
    for node, op in kept:
        if node is None:
            assert not isinstance(op, (Write, Truncate, _Torn))
            apply_meta(entries, op)
        else:
            assert isinstance(op, (Write, Truncate, _Torn))
            data_ops.setdefault(node, []).append(op)
    state = CrashState(model, seed, replay.index, note=note)
    present = {""}
    for path in sorted(entries, key=lambda p: (p.count("/"), p)):
        if parent(path) not in present:
            continue  # its directory did not survive: the entry is gone too
        node = entries[path]
        if node == DIR:
            present.add(path)
            state.dirs.append(path)
            continue
        content = bytearray(replay.durable.get(node, b""))
        for op in data_ops.get(node, ()):
            if isinstance(op, _Torn):
                _apply_torn(content, op)
            else:
                apply_data(content, op)
        state.files[path] = bytes(content)
    return state
