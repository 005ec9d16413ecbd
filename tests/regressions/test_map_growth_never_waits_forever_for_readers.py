"""Regression: growing a full LMDB map waited for every open iterator, and
held new readers off meanwhile; a reader in the checkpointing thread's way
(or an iterator never closed) stalled checkpoints and gets indefinitely.
Growth now gives up after a bounded wait, failing only that checkpoint."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

import safepoint
from safepoint import base, base_write


def test_a_checkpoint_that_cannot_grow_the_map_fails_and_keeps_the_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base, "_INITIAL_MAP_BYTES", 1 << 20)
    monkeypatch.setattr(base_write, "_GROW_WAIT_S", 0.2)
    db = safepoint.open(tmp_path / "s", checkpoint_bytes=None)
    try:
        db.put(b"a", b"1")
        db.checkpoint()
        it = db.items()
        next(it)  # holds a read transaction open
        with db.transaction() as txn:
            for i in range(300):
                txn.put(b"k%04d" % i, b"v" * 4000)  # more than the 1 MiB map
        result: list[BaseException | None] = []

        def checkpoint() -> None:
            try:
                db.checkpoint()
                result.append(None)
            except safepoint.Error as exc:
                result.append(exc)

        t = threading.Thread(target=checkpoint)
        t.start()
        t.join(10)
        assert not t.is_alive(), "the checkpoint waited forever for the open iterator"
        assert isinstance(result[0], safepoint.Error)
        assert "iterators" in str(result[0])
        assert db.get(b"k0299") == b"v" * 4000  # the memtable kept its entries
        it.close()
        db.checkpoint()  # with no reader left, the map grows
        assert db.get(b"k0000") == b"v" * 4000
    finally:
        db.close()
    with safepoint.open(tmp_path / "s") as db:
        assert len(db) == 301
