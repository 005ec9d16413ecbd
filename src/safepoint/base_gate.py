"""Concurrency helpers of the base image's read path.

``ResizeGate`` lets readers share the LMDB environment and a map resize take
it alone; ``ReadSlot`` holds one thread's cached read transaction.  The
contract both keep is the one ``BaseImage.get`` (and ``_sp_fast.Reader``,
its C twin) relies on; see their docstrings and docs/design.md, "The base
image".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Error


class ResizeGate:
    """Readers share it; growing the map takes it alone (LMDB requires that no
    transaction is active in the process while the map is resized).

    Readers register by appending to a list, which the GIL makes atomic, and
    check the flag after registering; the grower sets the flag, then waits
    for the list to drain.  That costs a reader ~0.1 us where a Condition
    costs ~4 us, and every base-image get passes through here.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: list[None] = []
        self._resizing = False

    def enter(self) -> None:
        """Register a reader; waits while a resize is under way."""
        active = self._active
        while True:
            active.append(None)
            if not self._resizing:
                return
            active.pop()
            with self._cond:
                while self._resizing:
                    self._cond.wait()

    def leave(self) -> None:
        """Unregister a reader."""
        self._active.pop()
        if self._resizing:
            self.wake()

    def wake(self) -> None:
        """Tell a waiting grower that a reader left."""
        with self._cond:
            self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    @contextmanager
    def exclusive(self, timeout_s: float) -> Iterator[None]:
        """Hold readers off; Error if they do not drain within ``timeout_s``."""
        with self._cond:
            while self._resizing:
                self._cond.wait()
            self._resizing = True
        try:
            deadline = time.monotonic() + timeout_s
            while self._active:
                if time.monotonic() >= deadline:
                    raise Error(
                        "base: the LMDB map is full and cannot grow while read "
                        "transactions (open iterators) are held; close them and "
                        "checkpoint again"
                    )
                with self._cond:
                    # A reader's leave() may notify before we wait: poll too.
                    self._cond.wait(0.01)
            yield
        finally:
            with self._cond:
                self._resizing = False
                self._cond.notify_all()


class ReadSlot(list):  # type: ignore[type-arg]
    """One thread's cached read transaction: holds it (zero or one item)
    while it is idle.

    The owner takes it with ``pop()`` for one get and puts it back with
    ``append()``; a retiring thread takes it with ``pop()`` too and aborts
    it.  Both are single calls under the GIL, so exactly one of them gets
    the transaction and no transaction is aborted while a get is using it.
    ``generation`` is the base image's generation read *before* the
    transaction began: if it still equals the current one, no checkpoint
    has committed since, so the transaction sees the latest base image.
    """

    __slots__ = ("generation", "gate", "active", "__weakref__")
    # Identity, not contents: slots live in a WeakSet.
    __hash__ = object.__hash__  # type: ignore[assignment]
    __eq__ = object.__eq__  # type: ignore[assignment]

    def __init__(self, gate: ResizeGate) -> None:
        super().__init__()
        self.generation = -1
        self.gate = gate  # the base image's resize gate and its reader list,
        self.active = gate._active  # kept here to save lookups per get
