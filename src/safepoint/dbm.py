"""The ``dbm`` interface over a safepoint store.

    import safepoint.dbm
    with safepoint.dbm.open("cache.sp", "c") as db:
        db["key"] = "value"          # str is stored as UTF-8
        db[b"key"]                   # -> b"value"

Like the standard library's ``dbm`` modules: keys and values are bytes
(``str`` is encoded as UTF-8), a missing key raises KeyError, ``keys()`` is a
list of bytes, and ``open(path, flag)`` takes the usual flags:

* ``"r"``: open an existing store read-only;
* ``"w"``: open an existing store for reading and writing;
* ``"c"``: the same, creating the store if it does not exist (the default,
  as in ``dbm.dumb``);
* ``"n"``: always start empty: create the store, or clear every key of an
  existing one in one transaction (its snapshots are kept).

Every assignment is a durable transaction of its own (``sync="always"``);
pass further ``safepoint.open`` options as keywords.  Errors the store
detects are ``safepoint.Error``; ``error`` is the tuple to catch, as
``dbm.error`` is.  ``shelve.Shelf(safepoint.dbm.open(path))`` gives a shelf.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, MutableMapping
from typing import Any

from .errors import Error
from .fs import DEFAULT_FS
from .store import Store

error = (Error, OSError)
FLAGS = ("r", "w", "c", "n")


def open(  # noqa: A001 - the dbm API name
    file: str | os.PathLike[str], flag: str = "c", mode: int = 0o666, **options: Any
) -> Database:
    """Open the store in directory ``file`` as a dbm-style mapping.

    ``mode`` is accepted for compatibility and not used (files are created
    0644, directories 0755, less the umask).  Raises ValueError for an
    unknown flag, FileNotFoundError for "r"/"w" when there is no store and
    FileExistsError when ``file`` is a file.
    """
    if not isinstance(flag, str) or flag not in FLAGS:
        raise ValueError(f"flag must be one of 'r', 'w', 'c', 'n', not {flag!r}")
    if "codec" in options:
        raise ValueError("dbm values are bytes: open the Store itself to use a codec")
    path = os.fspath(file)
    fs = options.get("fs") or DEFAULT_FS
    if flag in ("r", "w") and not fs.exists(os.path.join(path, "base", "data.mdb")):
        raise FileNotFoundError(f"no safepoint store at {path} (use flag 'c' to create one)")
    store = Store(path, readonly=(flag == "r"), **options)
    try:
        if flag == "n":
            with store.transaction() as txn:
                for key in list(txn.keys()):
                    txn.delete(key)
    except BaseException:
        store.close()
        raise
    return Database(store)


def _bytes(obj: Any, what: str) -> bytes:
    if isinstance(obj, str):
        return obj.encode("utf-8")
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    raise TypeError(f"dbm {what}s must be bytes or str, not {type(obj).__name__}")


class Database(MutableMapping):  # type: ignore[type-arg]
    """A dbm-style view of a Store (``.store``): bytes keys, bytes values."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def __getitem__(self, key: Any) -> bytes:
        value = self.store.get(_bytes(key, "key"))
        if value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.store.put(_bytes(key, "key"), _bytes(value, "value"))

    def __delitem__(self, key: Any) -> None:
        del self.store[_bytes(key, "key")]

    def __contains__(self, key: object) -> bool:
        return _bytes(key, "key") in self.store

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.store.keys())

    def __len__(self) -> int:
        return len(self.store)

    def keys(self) -> list[bytes]:  # type: ignore[override]
        """Every key, in byte-wise order (a list, as dbm returns)."""
        return list(self.store.keys())

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        return self.store.get(_bytes(key, "key"), default)

    def setdefault(self, key: Any, default: Any = b"") -> bytes:
        """The value of ``key``; set to ``default`` first if missing."""
        k = _bytes(key, "key")
        with self.store.transaction() as txn:
            value = txn.get(k)
            if value is None:
                value = _bytes(default, "value")
                txn.put(k, value)
        return value  # type: ignore[no-any-return]

    def sync(self) -> None:
        """Make every write durable now (with sync="always" each already is)."""
        self.store._check_open()
        wal = self.store._wal
        if wal is not None:
            wal.sync()

    def close(self) -> None:
        """Close the store; idempotent."""
        self.store.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<safepoint.dbm.Database {str(self.store.path)!r}>"
