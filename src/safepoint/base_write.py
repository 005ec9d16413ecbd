"""The base image's write path: a checkpoint folded into LMDB.

``write_fold`` writes a memtable's entries and the checkpoint LSN in one
LMDB write transaction, durable and atomic when it returns: a crash before
the commit leaves the previous checkpoint, after it this one (docs/design.md,
"How step 3 folds the entries").  If the map is full the transaction is
abandoned, the map grows and the fold starts again from fresh batches.

The functions take the ``BaseImage`` whose environment they write;
``BaseImage.write_fold`` and ``BaseImage.write_checkpoint`` delegate here.
The crash toolkit wraps ``_write``, the one function that commits
(safepoint.testing.lmdb_model), so it is looked up here at each call.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import compress, repeat
from operator import is_not, itemgetter, not_
from typing import TYPE_CHECKING, cast

import lmdb

from .base_entries import FoldBatch, stored_entries
from .errors import Error

if TYPE_CHECKING:
    from .base import BaseImage

_first = itemgetter(0)

_GROW_WAIT_S = 1.0  # how long growing the map waits for readers to drain
# Entries per putmulti call of a checkpoint (the caller's pause runs between).
_PUT_CHUNK = 512


def write_checkpoint(
    image: BaseImage,
    keys: Sequence[bytes],
    values: Sequence[bytes | None],
    lsn: int,
    pause: Callable[[], None] | None = None,
) -> int:
    """Fold ``keys[i] -> values[i]`` (None: delete) and ``lsn`` into
    ``image`` in one transaction (``BaseImage.write_checkpoint``).

    ``keys`` must be distinct and ascending (a memtable's order); see
    ``write_fold``, which this feeds in batches.  Returns the number of
    entries.
    """
    if len(keys) != len(values):
        raise ValueError(f"write_checkpoint: {len(keys)} keys but {len(values)} values")

    def batches() -> Iterator[FoldBatch]:
        for lo in range(0, len(keys), _PUT_CHUNK):
            ks, vs = keys[lo : lo + _PUT_CHUNK], values[lo : lo + _PUT_CHUNK]
            live = list(map(is_not, vs, repeat(None)))
            deletes = list(compress(ks, map(not_, live)))
            puts = cast("list[bytes]", list(compress(vs, live)))  # no None left
            yield stored_entries(list(compress(ks, live)), puts), deletes

    return image.write_fold(batches, lsn, pause)


def write_fold(
    image: BaseImage,
    batches: Callable[[], Iterable[FoldBatch]],
    lsn: int,
    pause: Callable[[], None] | None = None,
) -> int:
    """Fold a memtable and ``lsn`` into ``image`` in one transaction
    (``BaseImage.write_fold``).

    ``batches()`` gives the entries as ``Memtable.fold_batches`` does:
    consecutive batches, each a list of (key, stored entry) puts and a
    list of deleted keys, every key distinct and ascending across them.
    It is called again if the map must grow and the write restart.
    ``pause``, if given, is called between batches (the caller lets
    other threads run there).  Durable and atomic when it returns: a
    crash before the commit leaves the previous checkpoint, after it
    this one.  Returns the number of entries.
    """
    while True:
        try:
            return _write(image, batches(), lsn, pause or _no_pause)
        except lmdb.MapFullError:
            _grow(image)
        except lmdb.DiskError as exc:
            raise Error(
                f"base: the checkpoint could not be written ({exc}); the log still "
                "holds every commit, and the next checkpoint retries"
            ) from exc


def _write(
    image: BaseImage, batches: Iterable[FoldBatch], lsn: int, pause: Callable[[], None]
) -> int:
    data = image._data
    entries = 0
    with image.env.begin(write=True) as txn:
        cur = txn.cursor(db=data)
        # Keys above the last one stored go in with MDB_APPEND (no
        # search; pages are filled instead of split), the others with
        # plain puts.  Deleting or putting keys at or below it never
        # raises the database's last key, so the appends stay valid.
        last = cur.key() if cur.last() else None
        for puts, deletes in batches:
            for key in deletes:
                txn.delete(key, db=data)
            split = 0 if last is None else bisect_right(puts, last, key=_first)
            if split:
                _put_stored(cur, puts[:split], append=False)
            if split < len(puts):
                _put_stored(cur, puts[split:], append=True)
            entries += len(puts) + len(deletes)
            pause()
        image._record_checkpoint(txn, lsn)
    # Committed: from here every get must see it.  The store drops the
    # frozen memtable only after this returns, so a get that no longer
    # finds it there finds a bumped generation here.
    image._retire_readers()
    return entries


def _put_stored(cur: lmdb.Cursor, items: Sequence[tuple[bytes, bytes]], *, append: bool) -> None:
    """Put the (key, stored entry) ``items``, ascending, through ``cur``."""
    _, added = cur.putmulti(items, append=append)
    if added != len(items):
        # LMDB answers an out-of-order MDB_APPEND with "key exists", which
        # putmulti counts as not added and skips: never lose one silently.
        raise Error(f"base: the checkpoint stored {added} of {len(items)} entries")


def _no_pause() -> None:
    pass


def _grow(image: BaseImage) -> None:
    # Readers must not wait on a checkpoint: if open iterators (or a
    # reader in this very thread) hold the gate past the timeout, give up
    # the growth and fail this checkpoint instead; the memtable keeps
    # its entries and the next checkpoint tries again.
    with image._gate.exclusive(timeout_s=_GROW_WAIT_S):
        # No get is running (the gate), so every cached transaction is
        # idle and retired here: LMDB resizes only with none open.
        image._retire_readers()
        size = image.env.info()["map_size"]
        image.env.set_mapsize(size * 2)
