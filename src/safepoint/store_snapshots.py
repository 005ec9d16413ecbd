"""Snapshots, restore and the step loop: ``Store``'s methods that save and
roll back its whole state.

Split out of store.py as a mixin that ``Store`` inherits, so that
``db.save``, ``db.restore`` and the rest stay methods of ``Store``, listed
with their docstrings by ``help(safepoint.Store)``.  They are thin
delegates: the mechanics live in snapshots.py, restore.py and workflows.py
(restore closes and reopens the store with ``Store._reopen``, in
store_close.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, cast

from .workflows import StepLoop

if TYPE_CHECKING:
    from .snapshots import RestoreInfo, SnapshotInfo, Snapshots
    from .store import Store


class StoreSnapshots:
    """The snapshot, restore and step-loop methods of ``Store`` (store.py)."""

    if TYPE_CHECKING:
        # Store's, declared for mypy: this class is only ever a base of Store.
        _snapshots: Snapshots

    def save(
        self,
        name: str,
        *,
        step: int | None = None,
        metrics: Mapping[str, float] | None = None,
        metadata: Mapping[str, Any] | None = None,
        wait: bool = True,
        overwrite: bool = False,
    ) -> SnapshotInfo | Future[SnapshotInfo]:
        """Save the current state as snapshot ``name``; return its SnapshotInfo.

        A checkpoint, then a compact copy of the base image, checksummed,
        fsynced and renamed into ``snapshots/<name>/``; then the store's
        retention policy runs.  Writers wait only for the checkpoint's
        memtable swap.  With ``wait=False`` the copy runs in the background
        and a Future is returned; the snapshot holds the state at the call
        even if writes continue.  ``metrics`` are numbers (for retention),
        ``metadata`` anything JSON can hold.  Raises ValueError for a bad
        name or an existing one (unless ``overwrite``).
        """
        return self._snapshots.save(
            name, step=step, metrics=metrics, metadata=metadata, wait=wait, overwrite=overwrite
        )

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first.  CorruptionError if a manifest is damaged."""
        return self._snapshots.list()

    def restore(self, name: str) -> RestoreInfo:
        """Roll the whole store back to snapshot ``name``.

        Every CRC of the snapshot is checked first (CorruptionError, store
        untouched); then the base image and the log are swapped so that
        after a crash at any point the store opens as the old or the new
        state.  The replaced state (old base image and log) is moved to
        ``lost/restore-<time>-<name>/``, not deleted.  Like close and reopen:
        other threads must not use the store meanwhile.
        """
        return self._snapshots.restore(name)

    def delete_snapshot(self, name: str) -> None:
        """Delete snapshot ``name`` (KeyError if there is none); atomic."""
        self._snapshots.delete(name)

    def steps(
        self,
        total: int | None,
        *,
        key: Any = b"safepoint/steps",
        handle_signals: bool | None = None,
    ) -> StepLoop:
        """A crash-resumable loop over steps ``0..total-1`` (forever if None).

        ``for step in db.steps(n):`` yields Step objects; writes made with
        ``step.put`` commit together with the step counter (under ``key``)
        when the body ends, so after a crash the loop resumes at the first
        uncommitted step.  In the main thread SIGTERM and SIGINT let the
        current step commit, then end the loop (``loop.interrupted``).
        """
        return StepLoop(cast("Store", self), total, key=key, handle_signals=handle_signals)
