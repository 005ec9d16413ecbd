"""Failure injection: failed fsyncs, a full disk and short writes.

A ``Failures`` object belongs to one FaultFS (``fs.failures``); it does
nothing until armed, like bbolt's failpoints.  Armed faults strike the
operations of the layer, never LMDB's own I/O.

* ``fail_fsync(nth)``: the nth matching fsync from now raises ``OSError``
  (EIO by default).  By default it fails *before* the data reached the disk
  and, as Linux does, the kernel drops the dirty pages: those writes will
  never be durable even if a later fsync succeeds ("fsyncgate").  With
  ``reached_disk=True`` the data is durable and only the report fails, which
  leaves the caller's transaction "maybe committed".
* ``disk_full_after(nbytes)``: after ``nbytes`` more bytes are allocated,
  writes that need new space (that extend a file) and file creates raise
  ENOSPC; a write is cut short at the limit first, as ``pwrite`` does.
  Overwriting bytes a file already has needs no space and still succeeds.
  ``free_space()`` lifts the limit.
* ``short_writes(max_bytes)``: every ``pwrite`` writes at most ``max_bytes``
  (the file layer must loop until all is written).
"""

from __future__ import annotations

import errno
import fnmatch
import os
from dataclasses import dataclass


@dataclass
class FsyncFault:
    """One armed fsync failure."""

    remaining: int  # matching fsyncs still to pass before this one strikes
    error: int
    reached_disk: bool
    lose_pages: bool
    pattern: str
    dirs: bool
    fired: bool = False


class Failures:
    """The faults armed on one FaultFS.  Called under the FaultFS lock."""

    def __init__(self) -> None:
        self._fsync: list[FsyncFault] = []
        self._alloc_left: int | None = None
        self._max_write: int | None = None
        self.fsyncs_failed = 0
        self.enospc_raised = 0
        self.short_writes_made = 0

    # --- arming ------------------------------------------------------------------

    def fail_fsync(
        self,
        nth: int = 1,
        *,
        error: int = errno.EIO,
        reached_disk: bool = False,
        lose_pages: bool = True,
        match: str = "*",
        dirs: bool = False,
    ) -> FsyncFault:
        """Make the ``nth`` fsync from now (1 = the next) raise OSError(error).

        Only fsyncs of files whose path relative to the root matches the
        glob ``match`` count (``"wal/*.wal"``: the log's record fsyncs;
        background threads make "the nth of all fsyncs" racy).  Directory
        fsyncs count only with ``dirs=True``.  ``reached_disk``: the data is
        durable, only the report fails.  ``lose_pages``: a failure before the
        disk also drops the pending writes for good (Linux behaviour).
        """
        if nth < 1:
            raise ValueError(f"nth must be 1 or more, not {nth}")
        fault = FsyncFault(nth, error, reached_disk, lose_pages, match, dirs)
        self._fsync.append(fault)
        return fault

    def disk_full_after(self, nbytes: int) -> None:
        """Allow ``nbytes`` more bytes of new space, then raise ENOSPC."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be 0 or more, not {nbytes}")
        self._alloc_left = nbytes

    def free_space(self) -> None:
        """The disk has room again: lift ``disk_full_after``."""
        self._alloc_left = None

    def short_writes(self, max_bytes: int | None) -> None:
        """Make every pwrite write at most ``max_bytes`` (None: no limit)."""
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be 1 or more, not {max_bytes}")
        self._max_write = max_bytes

    def clear(self) -> None:
        """Disarm everything."""
        self._fsync.clear()
        self._alloc_left = None
        self._max_write = None

    # --- consulted by the FaultFS ----------------------------------------------------

    def on_fsync(self, path: str, *, is_dir: bool) -> FsyncFault | None:
        """The fault that strikes this fsync, if one does."""
        for fault in self._fsync:
            if fault.fired or (is_dir and not fault.dirs):
                continue
            if not fnmatch.fnmatchcase(path, fault.pattern):
                continue
            fault.remaining -= 1
            if fault.remaining == 0:
                fault.fired = True
                self.fsyncs_failed += 1
                return fault
        return None

    def on_create(self, path: str) -> None:
        """Raise ENOSPC if a new file cannot get space."""
        if self._alloc_left == 0:
            self.enospc_raised += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    def on_write(self, path: str, size: int, offset: int, length: int) -> int:
        """How many of ``length`` bytes at ``offset`` a pwrite may write to a
        file of ``size`` bytes; raises ENOSPC when it can write none."""
        allowed = length
        if self._max_write is not None and allowed > self._max_write:
            allowed = self._max_write
            self.short_writes_made += 1
        if self._alloc_left is not None:
            overwrite = max(0, min(allowed, size - offset))
            if allowed > overwrite + self._alloc_left:
                allowed = overwrite + self._alloc_left
            if allowed == 0:
                self.enospc_raised += 1
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
            self._alloc_left -= allowed - overwrite
        return allowed
