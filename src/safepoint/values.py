"""Value codecs: how Python objects become the bytes a store keeps.

A codec is any object with ``encode(obj) -> bytes`` and ``decode(data) ->
object``.  Keys are always bytes (``str`` keys are UTF-8); only values go
through the codec.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """The protocol a value codec follows."""

    def encode(self, obj: Any) -> bytes:
        """Turn ``obj`` into bytes."""
        ...

    def decode(self, data: bytes) -> Any:
        """Turn bytes produced by ``encode`` back into an object."""
        ...


class BytesCodec:
    """No codec: values are bytes-like and come back as ``bytes``."""

    name = "bytes"

    def encode(self, obj: Any) -> bytes:
        """Accept any bytes-like object."""
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, (bytearray, memoryview)):
            return bytes(obj)
        try:
            return bytes(memoryview(obj))
        except TypeError:
            raise TypeError(
                f"values must be bytes-like, not {type(obj).__name__} "
                "(open the store with codec='pickle' or 'json' to store objects)"
            ) from None

    def decode(self, data: bytes) -> bytes:
        """Bytes are returned as they are."""
        return data


class PickleCodec:
    """Any picklable object (only open stores you trust: pickle runs code)."""

    name = "pickle"

    def encode(self, obj: Any) -> bytes:
        """Pickle with the highest protocol."""
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes) -> Any:
        """Unpickle."""
        return pickle.loads(data)


class JsonCodec:
    """JSON values (UTF-8, compact)."""

    name = "json"

    def encode(self, obj: Any) -> bytes:
        """Dump to compact UTF-8 JSON."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    def decode(self, data: bytes) -> Any:
        """Parse JSON."""
        return json.loads(data)


_NP_MAGIC = b"SPND"
_NP_HEAD = struct.Struct("<4sBBH")  # magic, version, ndim, dtype string length


class NumpyCodec:
    """numpy arrays as raw bytes with dtype and shape; no pickle.

    Layout: "SPND", version 1, ndim, dtype length, dtype.str, shape (u64
    each), then the C-contiguous data.  ``decode`` returns a read-only array
    that shares the bytes it was given (no copy).  Object arrays are refused.
    """

    name = "numpy"

    def encode(self, obj: Any) -> bytes:
        """Encode an ndarray (anything ``numpy.asarray`` accepts)."""
        import numpy as np

        arr = np.asarray(obj)
        if arr.dtype.hasobject:
            raise TypeError("numpy codec: object arrays cannot be stored without pickle")
        dtype = arr.dtype.str.encode()
        if arr.dtype.fields is not None:
            raise TypeError("numpy codec: structured dtypes are not supported")
        head = _NP_HEAD.pack(_NP_MAGIC, 1, arr.ndim, len(dtype)) + dtype
        shape = struct.pack(f"<{arr.ndim}Q", *arr.shape)
        return head + shape + np.ascontiguousarray(arr).tobytes()

    def decode(self, data: bytes) -> Any:
        """A read-only ndarray viewing ``data``."""
        import numpy as np

        try:
            magic, version, ndim, dlen = _NP_HEAD.unpack_from(data, 0)
            if magic != _NP_MAGIC or version != 1:
                raise ValueError("bad magic or version")
            pos = _NP_HEAD.size
            dtype = np.dtype(bytes(data[pos : pos + dlen]).decode())
            pos += dlen
            shape = struct.unpack_from(f"<{ndim}Q", data, pos)
            pos += 8 * ndim
            count = math.prod(shape)
            if len(data) - pos != count * dtype.itemsize:
                raise ValueError(f"{len(data) - pos} data bytes for {count} x {dtype}")
        except (struct.error, ValueError, TypeError, UnicodeDecodeError) as exc:
            # Bytes written by another codec (or by hand) must not decode as
            # garbage or fail with a struct error deep inside numpy.
            raise ValueError(f"numpy codec: value is not an encoded array ({exc})") from None
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        return arr.reshape(shape)


_BY_NAME: dict[str, type] = {
    "pickle": PickleCodec,
    "json": JsonCodec,
    "numpy": NumpyCodec,
    "bytes": BytesCodec,
}


def resolve(codec: str | Codec | None) -> Codec:
    """The codec object for the ``codec=`` argument of ``open``."""
    if codec is None:
        return BytesCodec()
    if isinstance(codec, str):
        try:
            return _BY_NAME[codec]()  # type: ignore[no-any-return]
        except KeyError:
            raise ValueError(
                f"unknown codec {codec!r}; use one of {sorted(_BY_NAME)} or a codec object"
            ) from None
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise TypeError("codec must be a name or an object with encode() and decode()")
    return codec
