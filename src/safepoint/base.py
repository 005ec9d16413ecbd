"""The base image: one LMDB environment holding the state at a checkpoint.

Two named databases: ``data`` maps each key to ``crc32c(key ++ value)`` (4
bytes) followed by the value, because LMDB keeps no checksums of its own and
a flipped bit must never be returned as data; ``meta`` holds the store id,
the checkpoint LSN and the format facts.  A checkpoint writes its entries and
its LSN in one LMDB write transaction (base_write.py), which LMDB makes
durable (fdatasync of the data file, then of the meta page) before ``commit``
returns.  The entry format is base_entries.py; the read path's resize gate
and per-thread slot, base_gate.py.

Engine: py-lmdb bundles LMDB 0.9 and 1.0, whose files are incompatible.  We
pin 0.9 (``format.LMDB_LIB_VERSION``), the format every LMDB tool reads, and
record it in ``meta`` so that a store is never opened with the other engine.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import uuid
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager

import lmdb

from . import base_write
from .base_entries import LMDB_NAME as _LMDB_NAME
from .base_entries import (
    FoldBatch,
    _crc32c_bytes,
    _sp_fast,
    _unpack_crc,
    check_entry,
    check_entry_py,
    entry_value,
    stored_entries,
)
from .base_gate import ReadSlot as _ReadSlot
from .base_gate import ResizeGate as _ResizeGate
from .errors import ClosedError, CorruptionError, Error
from .format import FORMAT_VERSION, LMDB_ENGINE, LMDB_LIB_VERSION

# Re-exported: the entry format's names, as callers and tests knew them here.
__all__ = [
    "BaseImage",
    "FoldBatch",
    "check_entry",
    "check_entry_py",
    "entry_value",
    "stored_entries",
]

_META_STORE_ID = b"store_id"
_META_LSN = b"checkpoint_lsn"
_META_FORMAT = b"format_version"
_META_ENGINE = b"lmdb_engine"
_META_CHECKPOINTS = b"checkpoints"
# Virtual address space only: LMDB 0.9 does not grow the file to the map size
# on Linux, so a large map costs nothing until pages are written.
_INITIAL_MAP_BYTES = (1 << 40) if sys.maxsize > 2**32 else (1 << 30)


def _abort_quietly(txn: lmdb.Transaction) -> None:
    try:
        txn.abort()
    except lmdb.Error:
        pass  # invalidated when the environment closed: it holds nothing


class BaseImage:
    """The LMDB environment in ``<store>/base``."""

    def __init__(self, path: str, *, readonly: bool = False, create: bool = True) -> None:
        """Open (and with ``create``, create) the base image at ``path``.

        Raises CorruptionError if LMDB cannot read it or it was written by
        another engine or format version.
        """
        self.path = path
        self.readonly = readonly
        self.env, self._gate = _acquire_env(path, readonly=readonly, create=create)
        self._pinned: lmdb.Transaction | None = None
        # Cached read transactions, one per thread that reads (get()): see
        # _ReadSlot and docs/design.md, "The base image".  Bumped after
        # every commit, every map resize and at close.
        self._generation = 0
        self._local = threading.local()
        self._slots: weakref.WeakSet[_ReadSlot] = weakref.WeakSet()
        self._slots_lock = threading.Lock()
        if _sp_fast is not None and not readonly:
            # get() as a C callable: the store's get calls C directly, one
            # Python frame less (a read-only view reads its pinned
            # transaction in _get_first instead).
            self.get = _sp_fast.Reader(self, self._local)  # type: ignore[method-assign,assignment]
        try:
            if readonly:
                # A read-only view pins one read transaction for its whole
                # life: the memtable it replayed matches this base image and
                # no later one.  The databases are looked up in it because
                # open_db without a transaction begins a write transaction
                # while holding the GIL: beside a writer in this process whose
                # checkpoint holds LMDB's write lock (and waits for the GIL),
                # that deadlocks.
                self._pinned = self.env.begin()
                self._data = self.env.open_db(b"data", txn=self._pinned, create=False)
                self._meta = self.env.open_db(b"meta", txn=self._pinned, create=False)
            else:
                self._data = self.env.open_db(b"data", create=True)
                self._meta = self.env.open_db(b"meta", create=True)
            self._check_meta()
        except BaseException as exc:
            self.close()  # gives the shared environment back to the registry
            if isinstance(exc, lmdb.Error):
                raise CorruptionError(
                    f"base: base image lacks its databases: {exc}", file=_LMDB_NAME
                ) from exc
            raise

    # --- meta -----------------------------------------------------------------

    def _check_meta(self) -> None:
        fmt = self._meta_get(_META_FORMAT)
        engine = self._meta_get(_META_ENGINE)
        if fmt is not None and int(fmt) != FORMAT_VERSION:
            raise CorruptionError(
                f"base: format version {int(fmt)} is not {FORMAT_VERSION}", file=_LMDB_NAME
            )
        if engine is not None and engine.decode() != LMDB_ENGINE:
            raise Error(
                f"base: written by LMDB engine {engine.decode()}, this safepoint uses "
                f"{LMDB_ENGINE}; the two file formats are incompatible"
            )

    def _meta_get(self, key: bytes) -> bytes | None:
        pinned, env = self._pinned, self.env
        try:
            if pinned is not None:
                value = pinned.get(key, db=self._meta)
            else:
                if env is None:
                    raise ClosedError("base: the store is closed")
                with env.begin(db=self._meta) as txn:
                    value = txn.get(key)
        except lmdb.Error as exc:
            # A reader racing close(), as in get().
            if self.env is None:
                raise ClosedError("base: the store was closed during a read") from exc
            raise
        return None if value is None else bytes(value)

    @property
    def store_id(self) -> bytes | None:
        """The store's 16-byte id, or None for a base image never initialised."""
        return self._meta_get(_META_STORE_ID)

    @property
    def checkpoint_lsn(self) -> int:
        """Every record at or below this LSN is folded into the base image."""
        v = self._meta_get(_META_LSN)
        return int(v) if v is not None else 0

    @property
    def checkpoints(self) -> int:
        """How many checkpoints this base image has taken."""
        v = self._meta_get(_META_CHECKPOINTS)
        return int(v) if v is not None else 0

    def initialise(self) -> bytes:
        """Give a new base image a store id (durable when this returns)."""
        store_id = uuid.uuid4().bytes
        with self.env.begin(write=True, db=self._meta) as txn:
            txn.put(_META_STORE_ID, store_id)
            txn.put(_META_LSN, b"0")
            txn.put(_META_FORMAT, str(FORMAT_VERSION).encode())
            txn.put(_META_ENGINE, LMDB_ENGINE.encode())
            txn.put(_META_CHECKPOINTS, b"0")
        self._retire_readers()
        return store_id

    def _record_checkpoint(self, txn: lmdb.Transaction, lsn: int) -> None:
        """Set the checkpoint LSN and count one more checkpoint, in ``txn``
        (the checkpoint's write transaction, base_write._write)."""
        txn.put(_META_LSN, str(lsn).encode(), db=self._meta)
        n = int(txn.get(_META_CHECKPOINTS, b"0", db=self._meta)) + 1
        txn.put(_META_CHECKPOINTS, str(n).encode(), db=self._meta)

    # --- reads ------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` (bytes) in the base image, CRC-checked; None if absent.

        Sees every checkpoint that committed before the call.  Raises
        ClosedError if the base image is (being) closed.
        """
        # On the native backend a writable image's ``get`` is an
        # ``_sp_fast.Reader`` instead (see __init__), doing the same in C.
        try:
            slot = self._local.slot
        except AttributeError:
            return self._get_first(key)  # a read-only view, or this thread's first get
        return self._get_cached(slot, key)

    def _get_cached(self, slot: _ReadSlot, key: bytes) -> bytes | None:
        """get() through this thread's ``slot``: the oracle of ``_sp_fast.Reader``,
        which hands it every case it does not handle itself (renewal, a
        resize, a damaged entry)."""
        # The resize gate's enter()/leave(), inlined (this is the hot path),
        # through references the slot keeps.
        active = slot.active
        active.append(None)
        gate = slot.gate
        if gate._resizing:
            active.pop()
            gate.enter()
        try:
            try:
                txn = slot.pop()
            except IndexError:
                txn = None
            if txn is None or slot.generation != self._generation:
                txn = self._renew(slot, txn)
            try:
                stored = txn.get(key)
            except BaseException:
                _abort_quietly(txn)
                raise
            slot.append(txn)
            if slot.generation != self._generation:
                # A checkpoint committed while this get ran and may have
                # found the slot empty: do not keep its snapshot pinned.
                self._retire_slot(slot)
        except lmdb.Error as exc:
            self._raise_if_closed(exc)
            raise
        finally:
            active.pop()
            if gate._resizing:
                gate.wake()
        if stored is None:
            return None
        value = stored[4:]
        try:
            # One CRC call over a copy beats two calls (seeded continuation).
            ok = _crc32c_bytes(key + value) == _unpack_crc(stored)[0]
        except struct.error:
            ok = False  # shorter than its CRC: check_entry names it
        return value if ok else check_entry_py(key, stored)

    def _get_failed(self, txn: lmdb.Transaction, exc: BaseException) -> None:
        """``_sp_fast.Reader``'s error path, as ``_get_cached``'s: ``txn``
        (taken from the slot) raised ``exc`` in get; abort it, and raise
        ClosedError instead if the base image was closed under it."""
        _abort_quietly(txn)
        if isinstance(exc, lmdb.Error):
            self._raise_if_closed(exc)

    def _get_first(self, key: bytes) -> bytes | None:
        pinned = self._pinned
        if pinned is None:
            self._new_slot()
            return self.get(key)
        try:
            stored = pinned.get(key, db=self._data)
        except lmdb.Error as exc:
            self._raise_if_closed(exc)
            raise
        return None if stored is None else check_entry(key, stored)

    def _new_slot(self) -> _ReadSlot:
        slot = _ReadSlot(self._gate)
        with self._slots_lock:
            self._slots.add(slot)
        self._local.slot = slot
        return slot

    def _renew(self, slot: _ReadSlot, old: lmdb.Transaction | None) -> lmdb.Transaction:
        """A read transaction that sees the latest commit, for ``slot``."""
        if old is not None:
            _abort_quietly(old)
        env = self.env
        if env is None:
            raise ClosedError("base: the store is closed")
        # The generation is read before the transaction begins: a commit in
        # between makes the slot look stale (renewed once more), never fresh.
        slot.generation = self._generation
        return env.begin(db=self._data)

    def _retire_slot(self, slot: _ReadSlot) -> None:
        try:
            txn = slot.pop()
        except IndexError:
            return  # in use: its get retires it when it ends
        _abort_quietly(txn)

    def _retire_readers(self) -> None:
        """Make every cached read transaction renew before its next get.

        Called after a commit, before a map resize and at close.  Idle
        transactions are aborted here, so that none pins the pages of an
        old snapshot (LMDB could not reuse them and the file would grow);
        one in use is retired by its own get when it ends.
        """
        with self._slots_lock:  # two retirers must not lose an increment
            self._generation += 1
            slots = list(self._slots)
        for slot in slots:
            self._retire_slot(slot)

    def _raise_if_closed(self, exc: lmdb.Error) -> None:
        # A reader racing close(): the environment went away under it.
        if self.env is None:
            raise ClosedError("base: the store was closed during a read") from exc

    @contextmanager
    def reader(self) -> Iterator[lmdb.Transaction]:
        """A read transaction: one consistent view for as long as it is held."""
        pinned, env = self._pinned, self.env
        if pinned is not None:
            yield pinned
            return
        if env is None:
            raise ClosedError("base: the store is closed")
        with self._gate.shared():
            try:
                txn = env.begin(db=self._data)
            except lmdb.Error as exc:
                if self.env is None:
                    raise ClosedError("base: the store was closed during a read") from exc
                raise
            with txn:
                yield txn

    def iter_range(
        self, txn: lmdb.Transaction, start: bytes | None, stop: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        """CRC-checked (key, value) pairs with start <= key < stop, in order.

        Raises ClosedError if the base image is closed while iterating.
        """
        try:
            cur = txn.cursor(db=self._data)
            if start is None:
                ok = cur.first()
            else:
                ok = cur.set_range(start)
            while ok:
                key = bytes(cur.key())
                if stop is not None and key >= stop:
                    return
                yield key, check_entry(key, cur.value())
                ok = cur.next()
        except lmdb.Error as exc:
            # Closing the environment invalidates its transactions; say so in
            # the store's own terms rather than LMDB's.
            if self.env is None:
                raise ClosedError("base: the store was closed while an iterator was open") from exc
            raise

    def count(self) -> int:
        """Number of entries in the base image."""
        with self.reader() as txn:
            return int(txn.stat(self._data)["entries"])

    # --- checkpoint ---------------------------------------------------------------

    def write_checkpoint(
        self,
        keys: Sequence[bytes],
        values: Sequence[bytes | None],
        lsn: int,
        pause: Callable[[], None] | None = None,
    ) -> int:
        """Fold ``keys[i] -> values[i]`` (None: delete) and ``lsn`` in one transaction.

        Durable and atomic when it returns; returns the number of entries.
        The contract in full: ``base_write.write_checkpoint``.
        """
        return base_write.write_checkpoint(self, keys, values, lsn, pause)

    def write_fold(
        self,
        batches: Callable[[], Iterable[FoldBatch]],
        lsn: int,
        pause: Callable[[], None] | None = None,
    ) -> int:
        """Fold a memtable's ``batches()`` and ``lsn`` in one transaction.

        Durable and atomic when it returns; returns the number of entries.
        The contract in full, and the write path: ``base_write.write_fold``.
        """
        return base_write.write_fold(self, batches, lsn, pause)

    def sync(self) -> None:
        """Force LMDB's data to disk (it already is after each commit)."""
        self.env.sync(True)

    def size_bytes(self) -> int:
        """Bytes the data file occupies."""
        try:
            return os.path.getsize(os.path.join(self.path, "data.mdb"))
        except OSError:
            return 0

    def close(self) -> None:
        """Release the environment (closed when its last user in the process is)."""
        # Taken out atomically: two closing threads must not both give the
        # shared environment back (the count would drop under another user).
        with _ENVS_LOCK:
            env, self.env = self.env, None  # type: ignore[assignment]
        # Dropped, not aborted: a reader in another thread may be inside an
        # LMDB call on it (py-lmdb releases the GIL there), and aborting a
        # transaction under such a call crashes the process.  Its last
        # reference aborts it, or closing the environment invalidates it.
        self._pinned = None
        if env is not None:
            self._retire_readers()
            _release_env(env)


# py-lmdb allows one Environment per file per process, so a read-only view
# opened beside a writer in the same process shares the writer's environment.
_ENVS: dict[str, list] = {}  # realpath -> [env, users, resize gate]
_ENVS_LOCK = threading.Lock()


def _acquire_env(
    path: str, *, readonly: bool, create: bool
) -> tuple[lmdb.Environment, _ResizeGate]:
    real = os.path.realpath(path)
    with _ENVS_LOCK:
        slot = _ENVS.get(real)
        if slot is not None:
            slot[1] += 1
            return slot[0], slot[2]
        try:
            env = _open_env(path, readonly=False, create=create and not readonly)
        except lmdb.ReadonlyError:
            env = None
        except lmdb.Error as exc:
            if not readonly:
                raise _lmdb_error(exc) from exc
            env = None
        if env is None:
            try:
                env = _open_env(path, readonly=True, create=False)
            except lmdb.Error as exc:
                raise _lmdb_error(exc) from exc
        gate = _ResizeGate()
        _ENVS[real] = [env, 1, gate]
        return env, gate


def _release_env(env: lmdb.Environment) -> None:
    with _ENVS_LOCK:
        for real, slot in list(_ENVS.items()):
            if slot[0] is env:
                slot[1] -= 1
                if slot[1] == 0:
                    del _ENVS[real]
                    env.close()
                return
    env.close()


def _open_env(path: str, *, readonly: bool, create: bool) -> lmdb.Environment:
    return lmdb.open(
        path,
        map_size=_INITIAL_MAP_BYTES,
        subdir=True,
        readonly=readonly,
        create=create,
        max_dbs=4,
        max_readers=1024,
        lib_version=LMDB_LIB_VERSION,
        sync=True,
        metasync=True,
        readahead=False,
        lock=True,
    )


def _lmdb_error(exc: lmdb.Error) -> Error:
    if isinstance(
        exc,
        (
            lmdb.CorruptedError,
            lmdb.InvalidError,
            lmdb.VersionMismatchError,
            lmdb.PageNotFoundError,
            lmdb.PanicError,
        ),
    ):
        return CorruptionError(f"base: LMDB cannot read the base image: {exc}", file=_LMDB_NAME)
    return Error(f"base: LMDB cannot open the base image: {exc}")
