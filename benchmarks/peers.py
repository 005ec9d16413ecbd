"""The stores under test behind one small interface.

Every adapter opens a store in a directory either *durable* (each commit is
on disk when it returns: safepoint sync="always", lmdb sync=True, sqlite WAL
+ synchronous=FULL, rocksdict WriteOptions.sync=True, plyvel sync=True) or
*not* (the cheapest mode each offers: no fsync per commit), and offers
``put`` (one commit), ``put_batch`` (one transaction / write batch), ``get``
and ``close``.  All are safe to call from many threads.

A peer whose library is not installed is left out, with the reason in
``MISSING``: the runner reports it rather than failing (the smoke test runs
with only the test extra installed).
"""

from __future__ import annotations

import importlib.metadata
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence

import lmdb

import safepoint

MISSING: dict[str, str] = {}
_LMDB_MAP = 1 << 36  # address space only; LMDB 0.9 grows the file as needed


class Adapter:
    """Base class: ``name``, ``open``, ``put``, ``put_batch``, ``get``, ``close``."""

    name = "?"

    def __init__(self, path: str, *, durable: bool) -> None:
        self.path = path
        self.durable = durable

    def put(self, key: bytes, value: bytes) -> None:
        """One commit of one key (durable when it returns, if opened durable)."""
        raise NotImplementedError

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """One transaction / write batch of many keys."""
        raise NotImplementedError

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` as of the latest commit, or None."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the store (data stays on disk)."""


class SafepointAdapter(Adapter):
    name = "safepoint"

    def __init__(self, path: str, *, durable: bool, **options: object) -> None:
        super().__init__(path, durable=durable)
        options.setdefault("checkpoint_bytes", None)
        self.db = safepoint.open(path, sync="always" if durable else "none", **options)

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value)

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        self.db.update(items)

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.db.close()


class LmdbAdapter(Adapter):
    """Plain LMDB (py-lmdb): a write transaction per commit; with sync=True
    LMDB fdatasyncs the data file and then the meta page at each commit."""

    name = "lmdb"

    def __init__(self, path: str, *, durable: bool) -> None:
        super().__init__(path, durable=durable)
        self.env = lmdb.open(
            path, map_size=_LMDB_MAP, sync=durable, metasync=durable, max_readers=256
        )

    def put(self, key: bytes, value: bytes) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(key, value)

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        with self.env.begin(write=True) as txn:
            put = txn.put
            for k, v in items:
                put(k, v)

    def get(self, key: bytes) -> bytes | None:
        # A read transaction per get: a get must see the latest commit.
        with self.env.begin() as txn:
            return txn.get(key)  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self.durable:
            self.env.sync(True)
        self.env.close()


class SqliteAdapter(Adapter):
    """sqlite3, WAL journal; synchronous=FULL when durable (the WAL is
    fsynced at every commit), OFF otherwise.  One connection per thread."""

    name = "sqlite"

    def __init__(self, path: str, *, durable: bool) -> None:
        super().__init__(path, durable=durable)
        self.file = os.path.join(path, "kv.sqlite")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        con = self._con()
        con.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID")

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(
                self.file, isolation_level=None, check_same_thread=False, timeout=60
            )
            con.execute("PRAGMA journal_mode=WAL")
            con.execute(f"PRAGMA synchronous={'FULL' if self.durable else 'OFF'}")
            self._local.con = con
            with self._lock:
                self._all.append(con)
        return con

    def put(self, key: bytes, value: bytes) -> None:
        self._con().execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (key, value))

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        con = self._con()
        con.execute("BEGIN")
        con.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", items)
        con.execute("COMMIT")

    def get(self, key: bytes) -> bytes | None:
        row = self._con().execute("SELECT v FROM kv WHERE k = ?", (key,)).fetchone()
        return None if row is None else row[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        for con in self._all:
            con.close()
        self._all.clear()


class RocksAdapter(Adapter):
    """RocksDB through rocksdict (raw bytes mode); WriteOptions.sync=True
    when durable, so each write is fsynced (RocksDB groups concurrent ones)."""

    name = "rocksdict"

    def __init__(self, path: str, *, durable: bool) -> None:
        super().__init__(path, durable=durable)
        from rocksdict import Options, Rdict, WriteBatch, WriteOptions

        self._batch = WriteBatch
        self.db = Rdict(path, options=Options(raw_mode=True))
        wo = WriteOptions()
        wo.sync = durable
        self.wo = wo

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value, self.wo)

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        wb = self._batch(raw_mode=True)
        for k, v in items:
            wb.put(k, v)
        self.db.write(wb, self.wo)

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.db.close()


class PlyvelAdapter(Adapter):
    """LevelDB through plyvel; put(sync=True) when durable."""

    name = "plyvel"

    def __init__(self, path: str, *, durable: bool) -> None:
        super().__init__(path, durable=durable)
        import plyvel

        self.db = plyvel.DB(path, create_if_missing=True)

    def put(self, key: bytes, value: bytes) -> None:
        self.db.put(key, value, sync=self.durable)

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        with self.db.write_batch(sync=self.durable) as wb:
            for k, v in items:
                wb.put(k, v)

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.db.close()


class DictAdapter(Adapter):
    """A Python dict behind a lock: no disk at all, the in-memory ceiling."""

    name = "dict"

    def __init__(self, path: str, *, durable: bool) -> None:
        super().__init__(path, durable=durable)
        self.d: dict[bytes, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: bytes, value: bytes) -> None:
        with self._lock:
            self.d[key] = value

    def put_batch(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        with self._lock:
            self.d.update(items)

    def get(self, key: bytes) -> bytes | None:
        return self.d.get(key)


def _available() -> dict[str, Callable[..., Adapter]]:
    out: dict[str, Callable[..., Adapter]] = {
        "safepoint": SafepointAdapter,
        "lmdb": LmdbAdapter,
        "sqlite": SqliteAdapter,
    }
    for name, module, cls in (
        ("rocksdict", "rocksdict", RocksAdapter),
        ("plyvel", "plyvel", PlyvelAdapter),
    ):
        try:
            __import__(module)
        except ImportError as exc:
            MISSING[name] = f"not installed ({exc}); pip install '.[bench]'"
            continue
        out[name] = cls
    out["dict"] = DictAdapter
    return out


STORES = _available()
DISK_STORES = [n for n in STORES if n != "dict"]


def selected(names: Sequence[str], *, disk_only: bool = False) -> list[str]:
    """The stores to run: ``names`` (or all available), in a fixed order."""
    pool = DISK_STORES if disk_only else list(STORES)
    if not names:
        return pool
    return [n for n in pool if n in names]


def versions() -> dict[str, str]:
    """Library versions of every store (and sqlite's engine)."""
    out = {"safepoint": f"{safepoint.__version__} ({safepoint.BACKEND})"}
    out["lmdb"] = f"py-lmdb {lmdb.__version__}, LMDB {'.'.join(map(str, lmdb.version()))}"
    out["sqlite"] = f"SQLite {sqlite3.sqlite_version}"
    for dist in ("rocksdict", "plyvel", "matplotlib"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out
