"""Types of safepoint._sp_get (native/sp_get.c): Store.get in C."""

from collections.abc import Callable
from typing import Any

class StoreGet:
    def __init__(
        self, fallback: Callable[..., Any], missing: object, bytes_codec: type, max_key: int, /
    ) -> None: ...
    def __get__(self, obj: object, owner: type | None = None) -> Callable[..., Any]: ...
    def __call__(self, store: Any, key: Any, default: Any = None, /) -> Any: ...
