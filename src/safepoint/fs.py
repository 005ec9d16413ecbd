"""The file layer: the only module that writes, syncs, renames or deletes.

Everything else in safepoint does file I/O through a ``FileSystem`` object,
so tests (and ``safepoint.testing``) can substitute one that records what is
durable and injects faults.  LMDB does its own I/O inside the C library; it is
the one exception, and the crash toolkit models its commits as atomic.

Contract of every method: it either does the whole operation or raises
``OSError`` (with the errno the kernel gave).  Short writes are retried until
the data is written or the kernel reports an error.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager

_ZERO_CHUNK_BYTES = 1 << 20


class File:
    """An open file descriptor with positional I/O.

    Not thread-safe for concurrent writes to overlapping ranges; the WAL's
    group commit guarantees one writer per file at a time.
    """

    __slots__ = ("fd", "path")

    def __init__(self, fd: int, path: str) -> None:
        self.fd = fd
        self.path = path

    def write_at(self, data: bytes | bytearray | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``; not durable until ``sync_data``."""
        view = memoryview(data)
        while view:
            n = self._pwrite(view, offset)
            if n <= 0:  # pragma: no cover - the kernel reports errors instead
                raise OSError(errno.EIO, "short write returned 0", self.path)
            view = view[n:]
            offset += n

    def _pwrite(self, view: memoryview, offset: int) -> int:
        """One pwrite(2): the bytes written, which may be fewer than asked.

        The seam where safepoint.testing injects short writes and ENOSPC, so
        that the retry loop of ``write_at`` is the one under test.
        """
        return os.pwrite(self.fd, view, offset)

    def read_at(self, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset`` (fewer only at end of file)."""
        parts = []
        while size > 0:
            chunk = os.pread(self.fd, size, offset)
            if not chunk:
                break
            parts.append(chunk)
            size -= len(chunk)
            offset += len(chunk)
        return b"".join(parts)

    def read_all(self) -> bytes:
        """The whole file's contents."""
        return self.read_at(self.size(), 0)

    def size(self) -> int:
        """Current size of the file in bytes."""
        return os.fstat(self.fd).st_size

    def sync_data(self) -> None:
        """fdatasync: data and the metadata needed to read it are durable."""
        os.fdatasync(self.fd)

    def sync(self) -> None:
        """fsync: data and all metadata are durable."""
        os.fsync(self.fd)

    def truncate(self, size: int) -> None:
        """Set the file's length (not durable until synced)."""
        os.ftruncate(self.fd, size)

    def zero_fill(self, start: int, end: int) -> None:
        """Write real zeros over [start, end).

        Used to preallocate: fallocate leaves "unwritten" extents whose first
        write is a metadata change that every fdatasync would then journal;
        zeros written once make later overwrites pure data writes.
        """
        zeros = bytes(min(_ZERO_CHUNK_BYTES, max(end - start, 0)))
        while start < end:
            n = min(len(zeros), end - start)
            self.write_at(memoryview(zeros)[:n], start)
            start += n

    def close(self) -> None:
        """Close the descriptor; safe to call twice."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class FileSystem:
    """Real files.  Subclass to inject faults or to model a crash."""

    def open(self, path: str, *, write: bool = False, create: bool = False) -> File:
        """Open ``path`` for reading, or for reading and writing."""
        flags = os.O_RDWR if write else os.O_RDONLY
        if create:
            flags |= os.O_CREAT
        flags |= getattr(os, "O_CLOEXEC", 0)
        return File(os.open(path, flags, 0o644), path)

    def read_file(self, path: str) -> bytes:
        """Whole contents of a file."""
        f = self.open(path)
        try:
            return f.read_all()
        finally:
            f.close()

    def map_file(self, path: str) -> bytes | mmap.mmap:
        """A read-only view of a whole file: an mmap, or bytes if it is empty.

        Recovery scans segments through this, so opening a store does not
        copy every preallocated segment into memory.  The view stays valid
        while referenced; bytes the file gains later may or may not show.
        """
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            if os.fstat(fd).st_size == 0:
                return b""
            return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)

    def write_file_synced(self, path: str, data: bytes) -> None:
        """Create or replace the contents of ``path`` with ``data``, fsynced.

        The name itself is durable only after ``sync_dir`` of the parent.
        """
        f = self.open(path, write=True, create=True)
        try:
            f.truncate(0)
            f.write_at(data, 0)
            f.sync()
        finally:
            f.close()

    def write_file_atomic(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` durably: after a crash, old or new.

        Writes a temporary file, syncs it, renames it over ``path`` and syncs
        the directory.
        """
        tmp = path + ".tmp"
        self.write_file_synced(tmp, data)
        self.rename(tmp, path)
        self.sync_dir(os.path.dirname(path) or ".")

    def rename(self, src: str, dst: str) -> None:
        """Atomically rename; durable only after ``sync_dir`` of the parent."""
        os.rename(src, dst)

    def remove(self, path: str) -> None:
        """Delete a file; durable only after ``sync_dir`` of the parent."""
        os.unlink(path)

    def remove_tree(self, path: str) -> None:
        """Delete a directory and everything below it."""
        for root, dirs, files in os.walk(path, topdown=False):
            for name in files:
                self.remove(os.path.join(root, name))
            for name in dirs:
                os.rmdir(os.path.join(root, name))
        os.rmdir(path)

    def makedirs(self, path: str) -> None:
        """Create a directory and its parents if missing (not synced)."""
        os.makedirs(path, exist_ok=True)

    def sync_dir(self, path: str) -> None:
        """fsync a directory so that creates, renames and deletes in it last."""
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def listdir(self, path: str) -> list[str]:
        """Sorted names in a directory."""
        return sorted(os.listdir(path))

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists."""
        return os.path.exists(path)

    def file_size(self, path: str) -> int:
        """Size of a file in bytes."""
        return os.stat(path).st_size

    @contextmanager
    def locked(self, path: str) -> Iterator[bool]:
        """Hold an exclusive flock on ``path`` while the block runs.

        Yields False instead of blocking if another process holds it.  flock
        is released by the kernel when the holder dies, so a lock left by a
        dead process never blocks.
        """
        handle = self.try_lock(path)
        try:
            yield handle is not None
        finally:
            if handle is not None:
                handle.close()

    def try_lock(self, path: str) -> File | None:
        """Take an exclusive flock on ``path``; None if another process has it."""
        f = self.open(path, write=True, create=True)
        try:
            fcntl.flock(f.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            return None
        except BaseException:
            f.close()
            raise
        return f


DEFAULT_FS = FileSystem()
