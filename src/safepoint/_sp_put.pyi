"""Types of safepoint._sp_put (native/sp_put.c): Store.put in C."""

from collections.abc import Callable
from typing import Any

class StorePut:
    def __init__(
        self,
        fallback: Callable[..., Any],
        store_type: type,
        bytes_codec: type,
        wal_type: type,
        engine_type: type,
        mem_type: type,
        append_address: int,
        flush_address: int,
        /,
    ) -> None: ...
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...
    def __call__(self, store: Any, key: Any, value: Any, /) -> None: ...
