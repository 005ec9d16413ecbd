"""The LMDB model: a commit is atomic and durable when it returns.

LMDB writes its data file itself, outside safepoint's file layer, so a
FaultFS cannot see its writes one by one.  We do not try to: LMDB's commit
protocol (copy-on-write pages, fdatasync, then a meta page, then
fdatasync) makes a committed transaction durable and an uncommitted one
invisible after a power loss, and the crash toolkit takes that as given.

The hook: the functions that commit a base image (``BaseImage.initialise``
and ``safepoint.base_write._write``, the transaction behind a checkpoint)
are wrapped once, the first time a FaultFS is created.  After the original
returns, every FaultFS whose root holds that environment records an
``LmdbCommit`` event with a copy of ``data.mdb``; a crash state gets the copy
of the last commit before the crash.  Stores not under a FaultFS pay one
loop over an empty set per commit.  A transaction made directly on
``image.env`` (restore gives the base-image copy it wrote a fresh store id
that way) is not seen here; the FaultFS notices it at its next directory
fsync (faultfs.py).  ``BaseImage.close`` is deliberately left alone: tests
elsewhere trace its code object.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any

from .. import base_write
from ..base import BaseImage

if TYPE_CHECKING:
    from .faultfs import FaultFS

_watching: weakref.WeakSet[FaultFS] = weakref.WeakSet()
_install_lock = threading.Lock()
_installed = False


def watch(fs: FaultFS) -> None:
    """Report LMDB commits under ``fs.root`` to ``fs`` from now on."""
    _install()
    _watching.add(fs)


def unwatch(fs: FaultFS) -> None:
    """Stop reporting to ``fs``."""
    _watching.discard(fs)


def _committed(image: BaseImage) -> None:
    for fs in list(_watching):
        fs.note_lmdb_commit(image.path)


def _install() -> None:
    global _installed
    with _install_lock:
        if _installed:
            return
        write = base_write._write
        initialise = BaseImage.initialise

        @functools.wraps(write)
        def _write(image: BaseImage, *args: Any, **kwargs: Any) -> int:
            n = write(image, *args, **kwargs)
            _committed(image)
            return n

        @functools.wraps(initialise)
        def _initialise(self: BaseImage) -> bytes:
            store_id = initialise(self)
            _committed(self)
            return store_id

        base_write._write = _write
        BaseImage.initialise = _initialise  # type: ignore[method-assign]
        _installed = True
