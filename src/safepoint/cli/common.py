"""What every command shares: errors, exit codes, progress bars, formatting.

Exit codes (docs/cli.md): 0 ok, 1 damage found, 2 usage error or a command
that could not run (bad arguments, no store, store locked, bad input).
"""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

EXIT_OK = 0
EXIT_DAMAGE = 1
EXIT_USAGE = 2

T = TypeVar("T")


class UsageError(Exception):
    """Raised when a command cannot run as asked: exit code 2, one line."""


def store_path(path: str) -> Path:
    """``path`` as a store directory that must already exist."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"no safepoint store at {path} (the directory does not exist)")
    if not p.is_dir():
        raise UsageError(f"{path} is not a directory, so not a safepoint store")
    if not (p / "base" / "data.mdb").exists() and not (p / "wal").is_dir():
        raise UsageError(f"no safepoint store at {path} (no base/ or wal/ in it)")
    return p


def open_existing(path: str, **options: Any) -> Any:
    """``safepoint.open`` for a store that must exist (never creates one)."""
    import safepoint

    p = store_path(path)
    if not (p / "base" / "data.mdb").exists():
        raise UsageError(f"no safepoint store at {path} (base/data.mdb is missing)")
    return safepoint.open(p, **options)


# --- progress bars -----------------------------------------------------------------------


def show_progress() -> bool:
    """Bars only on a terminal: a pipe or a log file gets no control codes."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str = "", unit: str = "it"
) -> Iterator[T]:
    """``items``, with a tqdm bar on stderr when stderr is a terminal."""
    if not show_progress():
        yield from items
        return
    from tqdm import tqdm

    with tqdm(items, total=total, desc=desc, unit=unit, leave=False, file=sys.stderr) as bar:
        yield from bar


class ByteProgress:
    """A bar counted in bytes (``update(n)``); does nothing off a terminal."""

    def __init__(self, total: int, desc: str) -> None:
        self._bar: Any = None
        if show_progress():
            from tqdm import tqdm

            self._bar = tqdm(
                total=total,
                desc=desc,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                leave=False,
                file=sys.stderr,
            )

    def update(self, n: int) -> None:
        """Count ``n`` more bytes done."""
        if self._bar is not None:
            self._bar.update(n)

    def close(self) -> None:
        """Remove the bar from the terminal."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> ByteProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- formatting ------------------------------------------------------------------------


def human_bytes(n: int) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_time_ns(time_ns: int) -> str:
    """A record's wall-clock time, UTC, to the microsecond."""
    if time_ns <= 0:
        return "-"
    try:
        t = datetime.datetime.fromtimestamp(time_ns / 1e9, tz=datetime.timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{time_ns} ns"
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def is_text(data: bytes) -> str | None:
    """``data`` as text if it is UTF-8 without control characters, else None.

    Tab, newline and carriage return are allowed: they are text, and JSON
    escapes them.
    """
    try:
        s = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    for ch in s:
        o = ord(ch)
        if (o < 0x20 and ch not in "\t\n\r") or 0x7F <= o < 0xA0:
            return None
    return s


def show_key(key: bytes, limit: int = 40) -> str:
    """A key for a human: text as is (quoted if it has spaces), else hex."""
    text = is_text(key)
    if text is not None and text.isprintable():
        shown = text if len(text) <= limit else text[: limit - 1] + "…"
        return repr(shown) if (" " in shown or not shown) else shown
    hexed = key.hex()
    if len(hexed) > limit:
        hexed = hexed[: limit - 1] + "…"
    return "0x" + hexed


def print_table(rows: Iterable[tuple[str, object]], *, indent: str = "") -> None:
    """Aligned ``name  value`` lines on stdout."""
    rows = list(rows)
    width = max((len(name) for name, _ in rows), default=0)
    for name, value in rows:
        print(f"{indent}{name:<{width}}  {value}")
