"""``safepoint dump`` and ``safepoint load``: the store as JSON lines.

The format (docs/cli.md), one JSON object per line, UTF-8:

* first line, a header: ``{"format": "safepoint-dump", "version": 1, "lsn": 42}``;
* then one line per entry, in key order: ``{"key": K, "value": V}``.

K and V are each either a JSON string, when the bytes are UTF-8 text
without control characters (tab, newline and carriage return allowed), or
``{"b64": "..."}`` holding the bytes in standard base64.  Any bytes round-trip
exactly; text stays readable and greppable.  ``load`` accepts files with or
without the header.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import io
import json
import sys
from collections.abc import Iterator
from typing import IO, Any

import safepoint

from .common import (
    UsageError,
    is_text,
    open_existing,
    progress,
    store_path,
)

FORMAT_NAME = "safepoint-dump"
FORMAT_VERSION = 1


def encode_bytes(data: bytes) -> str | dict[str, str]:
    """Bytes as a JSON value: text as a string, anything else as ``{"b64": ...}``."""
    text = is_text(data)
    if text is not None:
        return text
    return {"b64": base64.b64encode(data).decode("ascii")}


def decode_bytes(obj: object, what: str) -> bytes:
    """The inverse of ``encode_bytes``; ValueError naming ``what`` if malformed."""
    if isinstance(obj, str):
        try:
            return obj.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} is a string with a lone surrogate, not text") from None
    if isinstance(obj, dict) and set(obj) == {"b64"} and isinstance(obj["b64"], str):
        try:
            return base64.b64decode(obj["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{what} has invalid base64") from None
    raise ValueError(f'{what} must be a string or {{"b64": "..."}}, not {json.dumps(obj)[:60]}')


def entry_line(key: bytes, value: bytes) -> str:
    """One entry as a JSON line (without the newline)."""
    return json.dumps({"key": encode_bytes(key), "value": encode_bytes(value)}, ensure_ascii=False)


def parse_lines(stream: IO[str]) -> Iterator[tuple[int, bytes, bytes]]:
    """(line number, key, value) for every entry line; ValueError names the line."""
    for number, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON ({exc.args[0]})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"line {number}: expected a JSON object")
        if "format" in obj:
            if number != 1 or obj.get("format") != FORMAT_NAME:
                raise ValueError(f"line {number}: unexpected header {line.strip()[:60]}")
            if obj.get("version") != FORMAT_VERSION:
                raise ValueError(
                    f"line 1: dump format version {obj.get('version')!r}; this safepoint "
                    f"reads version {FORMAT_VERSION}"
                )
            continue
        if set(obj) != {"key", "value"}:
            raise ValueError(f'line {number}: expected {{"key": ..., "value": ...}}')
        try:
            key = decode_bytes(obj["key"], "key")
            value = decode_bytes(obj["value"], "value")
        except ValueError as exc:
            raise ValueError(f"line {number}: {exc}") from None
        yield number, key, value


def _utf8_stdout() -> io.TextIOWrapper:
    return io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n", write_through=False)


def run_dump(args: argparse.Namespace) -> int:
    """The ``dump`` command: a consistent read-only view, in key order."""
    store_path(args.path)
    prefix = args.prefix.encode("utf-8") if args.prefix is not None else None
    with open_existing(args.path, readonly=True) as db:
        lsn = db.stats()["lsn"]
        total = None if prefix else len(db)
        out: IO[str]
        if args.output:
            out = open(args.output, "w", encoding="utf-8")
        else:
            out = stdout = _utf8_stdout()
        try:
            header: dict[str, Any] = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "lsn": lsn}
            out.write(json.dumps(header) + "\n")
            for key, value in progress(db.items(prefix), total=total, desc="dump", unit="key"):
                out.write(entry_line(key, value) + "\n")
            out.flush()
        finally:
            if args.output:
                out.close()
            else:
                stdout.detach()  # leave sys.stdout usable
    return 0


def run_load(args: argparse.Namespace) -> int:
    """The ``load`` command: entries into a new or existing store, one
    transaction per ``--batch`` entries (a failed line aborts its batch)."""
    if args.batch < 1:
        raise UsageError("--batch must be at least 1")
    if args.input == "-":
        stream: IO[str] = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8")
    else:
        try:
            stream = open(args.input, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {args.input}: {exc.strerror}") from None
    loaded = batches = 0
    with stream, safepoint.open(args.path) as db:
        lines = parse_lines(stream)
        entries = progress(lines, desc="load", unit="key")
        try:
            while True:
                with db.transaction() as txn:
                    n = 0
                    for number, key, value in entries:
                        try:
                            txn.put(key, value)
                        except ValueError as exc:
                            raise ValueError(f"line {number}: {exc}") from None
                        n += 1
                        if n == args.batch:
                            break
                if n:
                    loaded += n
                    batches += 1
                if n < args.batch:
                    break
        except (ValueError, UnicodeDecodeError) as exc:
            done = f"{loaded} entries before it were loaded" if loaded else "nothing was loaded"
            raise UsageError(f"{exc}; {done}") from exc
    print(f"loaded {loaded} entries into {args.path} in {batches} transactions")
    return 0
