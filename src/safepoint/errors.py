"""The errors safepoint raises on its own account.

Bad arguments raise TypeError / ValueError and a missing key KeyError, as
Python users expect; everything the store itself detects is a ``Error``.
"""

from __future__ import annotations


class Error(Exception):
    """Raised for any failure the store detects on its own account."""


class CorruptionError(Error):
    """Raised when bytes on disk fail validation; names file, offset and LSN."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        offset: int | None = None,
        lsn: int | None = None,
    ) -> None:
        self.file = file
        self.offset = offset
        self.lsn = lsn
        where = []
        if file is not None:
            where.append(f"in {file}")
        if offset is not None:
            where.append(f"at offset {offset}")
        if lsn is not None:
            where.append(f"(lsn {lsn})")
        super().__init__(" ".join([message, *where]))


class LockedError(Error):
    """Raised when another live process holds the store open for writing."""


class ClosedError(Error):
    """Raised when a store, transaction or iterator is used after close."""


class ReadOnlyError(Error):
    """Raised when a write is attempted on a store opened readonly=True."""


class StoreFailedError(Error):
    """Raised for writes after an fsync failed: reopen the store to recover.

    The kernel may drop dirty pages after a failed fsync, so a retried fsync
    that succeeds proves nothing; only recovery from what is on disk does.
    """
