"""FaultFS: a file layer that records what is durable and injects faults.

Pass one to the store (``safepoint.open(path, fs=FaultFS(path))``).  Every
operation really happens on the real files, so the running store sees what
it would see on a real machine (the page cache); in addition each one that
changes a file or a directory under the root is appended to ``fs.trace``.
From the trace, ``fs.crash(model, seed)`` computes what a power loss at any
moment would leave on disk (trace.py, crash.py): per file what is durable and
what is not yet synced, per directory the entries a directory fsync has not
yet covered.

LMDB does its own I/O, outside this layer.  Its commits are modelled as
atomic and durable when they return: lmdb_model.py reports each commit of a
``BaseImage`` and the layer records a copy of that ``data.mdb``, which from
then on is its durable content (renames carry it along like any file).  A
``data.mdb`` the layer itself wrote and synced (restore's copy of a
snapshot) that LMDB then changed is noticed at the next directory fsync and
recorded the same way.  LMDB's ``lock.mdb`` is not state and is never traced.

Limits: one FaultFS per store directory.  Bytes written outside the layer
are seen when an fsync through the layer finds the file's size changed
(LMDB's ``copyfd`` into a snapshot file), and files that appear from
outside are adopted as unsynced when an operation or a directory fsync
first meets them; an outside overwrite that keeps the size is not seen.
Contents are held in memory, so keep test stores small
(``segment_bytes=4096``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import threading

from ..fs import File, FileSystem
from . import lmdb_model
from .crash import CrashState, crash_state
from .failures import Failures
from .trace import (
    DIR,
    DURABILITY_EVENTS,
    Adopt,
    Baseline,
    Create,
    Event,
    LmdbCommit,
    MkDir,
    Remove,
    Rename,
    RmDir,
    Sync,
    SyncDir,
    SyncLost,
    Truncate,
    Write,
    parent,
    replay,
)

LOG_SEGMENTS = "wal/*.wal"
"""The files whose fsyncs ``lose_log_fsyncs`` turns into no-ops."""
LMDB_DATA_FILE = "data.mdb"
LMDB_LOCK_FILE = "lock.mdb"  # reader table, rebuilt by LMDB: not state


class FaultFile(File):
    """A writable file under a FaultFS root: every change is traced."""

    __slots__ = ("_ffs", "node", "_zeroing")

    def __init__(self, fd: int, path: str, ffs: FaultFS, node: int) -> None:
        super().__init__(fd, path)
        self._ffs = ffs
        self.node = node
        self._zeroing = False

    def write_at(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset`` (traced; faults may strike)."""
        with self._ffs._lock:
            super().write_at(data, offset)

    def _pwrite(self, view: memoryview, offset: int) -> int:
        ffs = self._ffs
        size = os.fstat(self.fd).st_size
        allowed = ffs.failures.on_write(ffs.name_of(self.node), size, offset, len(view))
        n = os.pwrite(self.fd, view[:allowed], offset)
        data = None if self._zeroing else bytes(view[:n])
        ffs._record(Write(self.node, offset, n, data))
        ffs._sizes[self.node] = max(ffs._sizes.get(self.node, 0), offset + n)
        return n

    def zero_fill(self, start: int, end: int) -> None:
        """Write real zeros over [start, end) (traced compactly)."""
        with self._ffs._lock:
            self._zeroing = True
            try:
                super().zero_fill(start, end)
            finally:
                self._zeroing = False

    def truncate(self, size: int) -> None:
        """Set the file's length (traced; not durable until synced)."""
        with self._ffs._lock:
            super().truncate(size)
            self._ffs._record(Truncate(self.node, size))
            self._ffs._sizes[self.node] = size

    def sync_data(self) -> None:
        """fdatasync, traced; an armed fault may fail it."""
        self._ffs._sync_file(self, super().sync_data)

    def sync(self) -> None:
        """fsync, traced; an armed fault may fail it."""
        self._ffs._sync_file(self, super().sync)


class FaultFS(FileSystem):
    """Real files plus a trace of every change under ``root``.

    ``lose_log_fsyncs`` is a
    mutation switch for testing the tests: fsyncs of log segments
    (``wal/*.wal``) do nothing, so commits are acknowledged without being
    durable; crash tests must then report lost commits.  ``failures``: armed
    faults (failures.py); ``fs.failures`` arms them later.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        lose_log_fsyncs: bool = False,
        failures: Failures | None = None,
    ) -> None:
        self.root = os.path.abspath(os.fspath(root))
        self.lose_log_fsyncs = lose_log_fsyncs
        self.failures = failures if failures is not None else Failures()
        self.trace: list[Event] = []
        self._lock = threading.RLock()
        self._names: dict[str, int] = {}  # live file entries -> inode
        self._where: dict[int, str] = {}  # inode -> its live name
        self._dirs: set[str] = set()  # live directories
        self._sizes: dict[int, int] = {}  # inode -> size as written through the layer
        # data.mdb files written and synced through the layer, with the digest
        # synced: LMDB may commit to one (restore's copy) before the next
        # directory fsync, which looks once.  Timestamps are too coarse.
        self._lmdb_polled: dict[int, bytes | None] = {}
        self._next_node = 1
        self.baseline = self._scan()
        lmdb_model.watch(self)

    # --- paths -----------------------------------------------------------------

    def _rel(self, path: str | os.PathLike[str]) -> str | None:
        """``path`` relative to the root ("" for the root), None if outside."""
        p = os.path.abspath(os.fspath(path))
        if p == self.root:
            return ""
        if not p.startswith(self.root + os.sep):
            return None
        return p[len(self.root) + 1 :].replace(os.sep, "/")

    def _tracked(self, rel: str | None) -> bool:
        return rel is not None and rel != "" and not _is_lmdb_lock(rel)

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, *rel.split("/")) if rel else self.root

    def name_of(self, node: int) -> str:
        """The live name of inode ``node`` relative to the root ("" if none)."""
        return self._where.get(node, "")

    # --- the trace ------------------------------------------------------------------

    def _record(self, event: Event) -> None:
        self.trace.append(event)

    def _new_node(self, rel: str, size: int = 0) -> int:
        node = self._next_node
        self._next_node += 1
        self._names[rel] = node
        self._where[node] = rel
        self._sizes[node] = size
        return node

    def _scan(self) -> Baseline:
        """Everything already under the root, taken as durable."""
        base = Baseline()
        if not os.path.isdir(self.root):
            return base
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = self._rel(dirpath) or ""
            for d in dirnames:
                rel = f"{rel_dir}/{d}" if rel_dir else d
                base.entries[rel] = DIR
                self._dirs.add(rel)
            for f in filenames:
                rel = f"{rel_dir}/{f}" if rel_dir else f
                if _is_lmdb_lock(rel):
                    continue
                with open(os.path.join(dirpath, f), "rb") as fh:
                    content = fh.read()
                node = self._new_node(rel, len(content))
                base.entries[rel] = node
                base.contents[node] = content
        return base

    def _adopt_file(self, rel: str) -> int:
        """Trace a file that appeared outside the layer: its bytes are unsynced."""
        with open(self._abs(rel), "rb") as fh:
            content = fh.read()
        node = self._new_node(rel, len(content))
        self._record(Adopt(rel, node, content))
        return node

    def _adopt_tree(self, rel: str) -> None:
        self._dirs.add(rel)
        self._record(MkDir(rel))
        for entry in sorted(os.scandir(self._abs(rel)), key=lambda e: e.name):
            child = f"{rel}/{entry.name}"
            if entry.is_dir(follow_symlinks=False):
                self._adopt_tree(child)
            elif child not in self._names and not _is_lmdb_lock(child):
                self._adopt_file(child)

    def _forget_tree(self, rel: str) -> None:
        prefix = rel + "/"
        for p in [p for p in self._names if p.startswith(prefix)]:
            node = self._names.pop(p)
            self._where.pop(node, None)
        for d in sorted((d for d in self._dirs if d.startswith(prefix)), reverse=True):
            self._dirs.discard(d)
        self._dirs.discard(rel)

    def _reconcile(self, rel_dir: str) -> None:
        """Bring the traced entries of one directory in line with the disk
        (names created or removed outside the layer)."""
        path = self._abs(rel_dir)
        real = {e.name: e.is_dir(follow_symlinks=False) for e in os.scandir(path)}
        for name, is_dir in sorted(real.items()):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if is_dir and rel not in self._dirs:
                self._adopt_tree(rel)
            elif not is_dir and rel not in self._names and not _is_lmdb_lock(rel):
                self._adopt_file(rel)
        for rel in [p for p in self._names if parent(p) == rel_dir]:
            if rel.rpartition("/")[2] not in real:
                node = self._names.pop(rel)
                self._where.pop(node, None)
                self._record(Remove(rel, node))
        for rel in [d for d in self._dirs if parent(d) == rel_dir]:
            if rel.rpartition("/")[2] not in real:
                self._forget_tree(rel)
                self._record(RmDir(rel))

    # --- FileSystem -----------------------------------------------------------------

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        """Open ``path``; a writable file under the root is a FaultFile."""
        rel = self._rel(path)
        if not write or not self._tracked(rel):
            return super().open(path, write=write, create=create)
        assert rel is not None
        with self._lock:
            existed = os.path.exists(path)
            if create and not existed:
                self.failures.on_create(rel)
            plain = super().open(path, write=True, create=create)
            node = self._names.get(rel)
            if node is not None and not existed:
                self._names.pop(rel)
                self._where.pop(node, None)
                self._record(Remove(rel, node))
                node = None
            if node is None:
                if existed:
                    node = self._adopt_file(rel)
                else:
                    node = self._new_node(rel)
                    self._record(Create(rel, node))
                    if rel.rpartition("/")[2] == LMDB_DATA_FILE:
                        self._lmdb_polled[node] = None
            return FaultFile(plain.fd, plain.path, self, node)

    def rename(self, src: str, dst: str) -> None:
        """Rename, traced; durable once the destination directory is synced."""
        rs, rd = self._rel(src), self._rel(dst)
        if not (self._tracked(rs) or self._tracked(rd)):
            return super().rename(src, dst)
        with self._lock:
            if not (self._tracked(rs) and self._tracked(rd)):
                # Moving across the edge of the tracked tree: trace it as the
                # creates and removes the two directories then show.
                super().rename(src, dst)
                for rel in (rs, rd):
                    if self._tracked(rel):
                        assert rel is not None
                        self._reconcile(parent(rel))
                return
            assert rs is not None and rd is not None
            if os.path.isdir(src):
                super().rename(src, dst)
                self._forget_tree(rd)
                self._move_tree(rs, rd)
                self._record(Rename(rs, rd, DIR))
                return
            node = self._names.get(rs)
            if node is None:
                node = self._adopt_file(rs)
            super().rename(src, dst)
            replaced = self._names.pop(rd, None)
            if replaced is not None:
                self._where.pop(replaced, None)
            del self._names[rs]
            self._names[rd] = node
            self._where[node] = rd
            self._record(Rename(rs, rd, node))

    def _move_tree(self, src: str, dst: str) -> None:
        """Move the live names under a renamed directory; inodes keep their
        numbers, as the rename in the trace does."""
        prefix = src + "/"
        for p in [p for p in self._names if p.startswith(prefix)]:
            node = self._names.pop(p)
            new = dst + p[len(src) :]
            self._names[new] = node
            self._where[node] = new
        moved = [d for d in self._dirs if d == src or d.startswith(prefix)]
        for d in moved:
            self._dirs.discard(d)
        for d in moved:
            self._dirs.add(dst + d[len(src) :])

    def remove(self, path: str) -> None:
        """Unlink, traced; durable once the directory is synced."""
        rel = self._rel(path)
        if not self._tracked(rel):
            return super().remove(path)
        assert rel is not None
        with self._lock:
            super().remove(path)
            node = self._names.pop(rel, None)
            if node is not None:
                self._where.pop(node, None)
                self._record(Remove(rel, node))

    def remove_tree(self, path: str) -> None:
        """Delete a directory and everything below it, traced."""
        rel = self._rel(path)
        if not self._tracked(rel):
            return super().remove_tree(path)
        with self._lock:
            for root, dirs, files in os.walk(path, topdown=False):
                for name in files:
                    self.remove(os.path.join(root, name))
                for name in dirs:
                    self._rmdir(os.path.join(root, name))
            self._rmdir(path)

    def _rmdir(self, path: str) -> None:
        os.rmdir(path)
        rel = self._rel(path)
        if self._tracked(rel):
            assert rel is not None
            self._forget_tree(rel)
            self._record(RmDir(rel))

    def makedirs(self, path: str) -> None:
        """Create missing directories, each traced (not durable until the
        parent directory is synced)."""
        rel = self._rel(path)
        if not self._tracked(rel):
            return super().makedirs(path)
        assert rel is not None
        with self._lock:
            os.makedirs(self.root, exist_ok=True)
            parts = rel.split("/")
            for i in range(1, len(parts) + 1):
                sub = "/".join(parts[:i])
                full = self._abs(sub)
                if not os.path.isdir(full):
                    os.mkdir(full)
                    self._dirs.add(sub)
                    self._record(MkDir(sub))

    def sync_dir(self, path: str) -> None:
        """fsync a directory, traced; an armed fault may fail it."""
        rel = self._rel(path)
        if rel is None:
            return super().sync_dir(path)
        with self._lock:
            fault = self.failures.on_fsync(rel, is_dir=True)
            if fault is not None and not fault.reached_disk:
                raise OSError(fault.error, os.strerror(fault.error), path)
            super().sync_dir(path)
            self._poll_lmdb()
            self._reconcile(rel)
            self._record(SyncDir(rel))
            if fault is not None:
                raise OSError(fault.error, os.strerror(fault.error), path)

    def _sync_file(self, f: FaultFile, real_sync: object) -> None:
        with self._lock:
            name = self.name_of(f.node)
            if self.lose_log_fsyncs and fnmatch.fnmatchcase(name, LOG_SEGMENTS):
                return
            fault = self.failures.on_fsync(name, is_dir=False)
            # fsync(2) reports no file name; the OSError names the file's
            # current name (File.path is the name it was opened under).
            where = self._abs(name) if name else f.path
            if fault is not None and not fault.reached_disk:
                if fault.lose_pages:
                    self._record(SyncLost(f.node))
                raise OSError(fault.error, os.strerror(fault.error), where)
            real_sync()  # type: ignore[operator]
            size = os.fstat(f.fd).st_size
            if size != self._sizes.get(f.node):
                # Written outside the layer (LMDB's copyfd): what is on disk now.
                self._sizes[f.node] = size
                self._record(Sync(f.node, f.read_all()))
            else:
                self._record(Sync(f.node))
            if f.node in self._lmdb_polled:
                self._lmdb_polled[f.node] = hashlib.sha256(f.read_all()).digest()
            if fault is not None:
                raise OSError(fault.error, os.strerror(fault.error), where)

    # --- LMDB ----------------------------------------------------------------------

    def note_lmdb_commit(self, env_path: str) -> None:
        """Record that the LMDB environment at ``env_path`` committed (called
        by lmdb_model right after a commit returns)."""
        env = self._rel(env_path)
        if env is None:
            return
        rel = f"{env}/{LMDB_DATA_FILE}" if env else LMDB_DATA_FILE
        with self._lock:
            try:
                with open(self._abs(rel), "rb") as fh:
                    data = fh.read()
            except FileNotFoundError:
                return
            node = self._names.get(rel)
            if node is None:
                node = self._new_node(rel, len(data))
            self._lmdb_polled.pop(node, None)  # reported from now on
            self._sizes[node] = len(data)
            self._record(LmdbCommit(rel, node, data))

    def _poll_lmdb(self) -> None:
        """Record a commit LMDB made to a data.mdb the layer wrote and synced
        since that sync (looked at once, at the next directory fsync)."""
        for node, synced in list(self._lmdb_polled.items()):
            name = self.name_of(node)
            if synced is None:
                continue
            del self._lmdb_polled[node]
            try:
                with open(self._abs(name), "rb") as fh:
                    data = fh.read()
            except (FileNotFoundError, IsADirectoryError):
                continue
            if name and hashlib.sha256(data).digest() != synced:
                self._sizes[node] = len(data)
                self._record(LmdbCommit(name, node, data))

    def close(self) -> None:
        """Stop observing LMDB commits (the trace stays readable)."""
        lmdb_model.unwatch(self)

    # --- crashes -------------------------------------------------------------------

    def crash(
        self, model: str = "drop_unsynced", seed: int = 0, at: int | None = None
    ) -> CrashState:
        """What a power loss after the first ``at`` traced events (default:
        now) leaves on disk under ``model``; ``.materialise(dir)`` writes it.

        A model that cannot apply at that moment (``torn_write`` with no
        unsynced write) falls back to ``drop_unsynced``.
        """
        with self._lock:
            r = replay(self.baseline, self.trace, at)
        return crash_state(r, model, seed) or crash_state(r, "drop_unsynced", seed)  # type: ignore[return-value]

    def durability_points(self) -> list[int]:
        """Crash points right after each fsync, directory fsync and LMDB commit."""
        return [i + 1 for i, ev in enumerate(self.trace) if isinstance(ev, DURABILITY_EVENTS)]


def _is_lmdb_lock(rel: str) -> bool:
    return rel.rpartition("/")[2] == LMDB_LOCK_FILE
