"""The trace a FaultFS records, and its replay into durable vs pending state.

Every operation that changes a file or a directory under the FaultFS root is
one event, in the order the operations happened.  Replaying a prefix of the
trace gives, for the moment the prefix ends, exactly what a power loss can
and cannot take away:

* per file (an *inode*: a file keeps its identity across renames): the
  content made durable by its last fsync, and the writes and truncates made
  since, still in the page cache;
* per directory: the entries as of its last directory fsync, and the
  creates, renames, removes and mkdirs made since;
* LMDB's ``data.mdb`` files are inodes like the others, but LMDB writes
  them itself: each commit replaces the durable content (and makes the
  file's name durable) at once, because an LMDB commit is atomic and durable
  when it returns.

Paths in events are relative to the FaultFS root, with ``/`` separators;
``""`` is the root itself, which is assumed to exist durably.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

DIR = -1
"""Marks a directory in an entry map (files map to their inode number)."""


@dataclass(frozen=True, slots=True)
class Create:
    """A new, empty file ``path`` (inode ``node``) was created."""

    path: str
    node: int


@dataclass(frozen=True, slots=True)
class Adopt:
    """A file that appeared outside the layer was found; its bytes are unsynced."""

    path: str
    node: int
    content: bytes


@dataclass(frozen=True, slots=True)
class Write:
    """``length`` bytes written at ``offset``; ``data`` None means zeros."""

    node: int
    offset: int
    length: int
    data: bytes | None


@dataclass(frozen=True, slots=True)
class Truncate:
    """The file's length was set to ``size``."""

    node: int
    size: int


@dataclass(frozen=True, slots=True)
class Sync:
    """fsync / fdatasync returned: every earlier write of the file is durable.

    ``content`` is set when the file was written outside the layer (LMDB's
    ``copyfd`` into a file the layer opened): what the fsync made durable.
    """

    node: int
    content: bytes | None = None


@dataclass(frozen=True, slots=True)
class SyncLost:
    """An fsync failed and the kernel dropped the dirty pages: the writes made
    since the last good fsync will never reach the disk."""

    node: int


@dataclass(frozen=True, slots=True)
class MkDir:
    """Directory ``path`` was created."""

    path: str


@dataclass(frozen=True, slots=True)
class Rename:
    """``src`` was renamed to ``dst``; ``node`` is the file's inode, or DIR."""

    src: str
    dst: str
    node: int


@dataclass(frozen=True, slots=True)
class Remove:
    """File ``path`` (inode ``node``) was unlinked."""

    path: str
    node: int


@dataclass(frozen=True, slots=True)
class RmDir:
    """Empty directory ``path`` was removed."""

    path: str


@dataclass(frozen=True, slots=True)
class SyncDir:
    """Directory ``path`` was fsynced: its entry changes so far are durable."""

    path: str


@dataclass(frozen=True, slots=True)
class LmdbCommit:
    """An LMDB write transaction committed to ``path`` (a ``data.mdb``, inode
    ``node``); ``data`` is the file right after the commit."""

    path: str
    node: int
    data: bytes


Event = (
    Create
    | Adopt
    | Write
    | Truncate
    | Sync
    | SyncLost
    | MkDir
    | Rename
    | Remove
    | RmDir
    | SyncDir
    | LmdbCommit
)
DataOp = Write | Truncate
MetaOp = Create | MkDir | Rename | Remove | RmDir
DURABILITY_EVENTS = (Sync, SyncDir, LmdbCommit)


@dataclass
class Baseline:
    """What was on disk, all of it durable, when a FaultFS started tracking."""

    entries: dict[str, int] = field(default_factory=dict)  # path -> inode or DIR
    contents: dict[int, bytes] = field(default_factory=dict)  # inode -> bytes


def parent(path: str) -> str:
    """The directory holding ``path`` ("" for the root)."""
    head, _, _ = path.rpartition("/")
    return head


def durable_dir(op: MetaOp) -> str:
    """The directory whose fsync makes ``op`` durable.

    A rename is durable once its destination directory is synced; journaling
    file systems commit the removal of the source name in the same
    transaction, so a file is never left under both names.
    """
    if isinstance(op, Rename):
        return parent(op.dst)
    return parent(op.path)


def apply_meta(entries: dict[str, int], op: MetaOp) -> None:
    """Apply one directory operation to an entry map, tolerating a missing
    source (a subset of pending operations need not be self-consistent: a
    rename whose create was lost still names the inode it moved)."""
    if isinstance(op, Create):
        entries[op.path] = op.node
    elif isinstance(op, MkDir):
        entries[op.path] = DIR
    elif isinstance(op, Remove):
        if entries.get(op.path) == op.node:
            del entries[op.path]
    elif isinstance(op, RmDir):
        entries.pop(op.path, None)
    elif isinstance(op, Rename):
        if op.node == DIR:
            prefix = op.src + "/"
            moved = {p: n for p, n in entries.items() if p == op.src or p.startswith(prefix)}
            for p in moved:
                del entries[p]
            for p, n in moved.items():
                entries[op.dst + p[len(op.src) :]] = n
            entries.setdefault(op.dst, DIR)
        else:
            if entries.get(op.src) == op.node:
                del entries[op.src]
            entries[op.dst] = op.node
    else:  # pragma: no cover - the Event union is closed
        raise TypeError(f"not a directory operation: {op!r}")


def apply_data(content: bytearray, op: DataOp) -> None:
    """Apply one write or truncate to a file's bytes."""
    if isinstance(op, Write):
        end = op.offset + op.length
        if len(content) < op.offset:
            content.extend(bytes(op.offset - len(content)))
        content[op.offset : end] = op.data if op.data is not None else bytes(op.length)
    else:
        if op.size < len(content):
            del content[op.size :]
        else:
            content.extend(bytes(op.size - len(content)))


class Replay:
    """Durable and pending state after replaying a prefix of a trace.

    ``apply`` one event at a time; the state after the k-th call is the
    state a power loss right after event k-1 starts from.  Crash models
    (crash.py) read it and never change it.
    """

    def __init__(self, baseline: Baseline) -> None:
        self.index = 0  # number of events applied
        self.entries = dict(baseline.entries)  # durable directory entries
        self.durable = {n: bytearray(c) for n, c in baseline.contents.items()}
        self.pending_data: dict[int, list[tuple[int, DataOp]]] = {}
        self.pending_meta: list[tuple[int, MetaOp]] = []

    def apply(self, event: Event) -> None:
        """Advance by one event."""
        i = self.index
        self.index += 1
        if isinstance(event, (Write, Truncate)):
            self.pending_data.setdefault(event.node, []).append((i, event))
        elif isinstance(event, Sync):
            content = self.durable.setdefault(event.node, bytearray())
            for _, op in self.pending_data.pop(event.node, ()):
                apply_data(content, op)
            if event.content is not None:
                self.durable[event.node] = bytearray(event.content)
        elif isinstance(event, SyncLost):
            self.pending_data.pop(event.node, None)
        elif isinstance(event, Create):
            self.durable[event.node] = bytearray()
            self.pending_meta.append((i, event))
        elif isinstance(event, Adopt):
            self.durable[event.node] = bytearray()
            self.pending_meta.append((i, Create(event.path, event.node)))
            write = Write(event.node, 0, len(event.content), event.content)
            self.pending_data.setdefault(event.node, []).append((i, write))
        elif isinstance(event, SyncDir):
            keep: list[tuple[int, MetaOp]] = []
            for j, meta in self.pending_meta:
                if durable_dir(meta) == event.path:
                    apply_meta(self.entries, meta)
                else:
                    keep.append((j, meta))
            self.pending_meta = keep
        elif isinstance(event, LmdbCommit):
            self.durable[event.node] = bytearray(event.data)
            self.pending_data.pop(event.node, None)
            self.entries[event.path] = event.node
        else:
            self.pending_meta.append((i, event))

    def pending(self) -> list[tuple[int, int | None, DataOp | MetaOp]]:
        """Every unsynced operation as (event index, inode or None, op), in
        the order they happened; inode None marks a directory operation."""
        out: list[tuple[int, int | None, DataOp | MetaOp]] = [
            (i, node, op) for node, ops in self.pending_data.items() for i, op in ops
        ]
        out.extend((i, None, op) for i, op in self.pending_meta)
        out.sort(key=lambda t: t[0])
        return out


def replay(baseline: Baseline, events: list[Event], k: int | None = None) -> Replay:
    """The state after the first ``k`` events (all of them if None)."""
    r = Replay(baseline)
    for ev in events[: len(events) if k is None else k]:
        r.apply(ev)
    return r


def iter_replays(
    baseline: Baseline, events: list[Event], points: list[int]
) -> Iterator[tuple[int, Replay]]:
    """Yield (k, replay) for each crash point k in ascending order, replaying
    the trace once; each replay is valid only until the next is yielded."""
    r = Replay(baseline)
    for k in sorted(set(points)):
        while r.index < k:
            r.apply(events[r.index])
        yield k, r
