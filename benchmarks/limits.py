"""Physical limits of this machine, measured in the same run as the stores.

* sequential write: 1 MiB pwrites of a fresh file, then one fdatasync;
* cold sequential read: the same file after posix_fadvise(DONTNEED) (it was
  synced, so every page is clean and is dropped), read in 1 MiB preads;
* CRC32C bandwidth: ``safepoint.records.crc32c`` (the native core) over a
  16 MiB buffer, and the ``crc32c`` package beside it.

The pwrite + fdatasync loop, the limit for durable commits, runs inside the
commits workload so that it is interleaved with the stores.
"""

from __future__ import annotations

import os
import time

import crc32c as crc32c_pkg

from safepoint import records

from .common import Context, Result, interleave

NAME = "limits"
CHUNK = 1 << 20


def seq_write_read(ctx: Context, mb: int) -> tuple[float, float]:
    """(write MB/s incl. the final fdatasync, cold read MB/s) of an ``mb`` MiB file."""
    path = os.path.join(ctx.root, "seq.dat")
    buf = os.urandom(CHUNK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.perf_counter()
        for i in range(mb):
            os.pwrite(fd, buf, i * CHUNK)
        os.fdatasync(fd)
        write = mb * CHUNK / 1e6 / (time.perf_counter() - t0)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        t0 = time.perf_counter()
        for i in range(mb):
            os.pread(fd, CHUNK, i * CHUNK)
        read = mb * CHUNK / 1e6 / (time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.unlink(path)
    return write, read


def crc_rate(fn: object, total_mb: int) -> float:
    """GB/s of ``fn(buffer)`` over ``total_mb`` MiB in 16 MiB calls."""
    buf = os.urandom(16 * CHUNK)
    calls = max(1, total_mb // 16)
    t0 = time.perf_counter()
    for _ in range(calls):
        fn(buf)  # type: ignore[operator]
    return calls * len(buf) / 1e9 / (time.perf_counter() - t0)


def run(ctx: Context) -> list[Result]:
    """Disk write/read MB/s and CRC32C GB/s."""
    s = ctx.settings
    mb = max(4, int(512 * s.scale))
    got: dict[str, list[float]] = {"write": [], "read": []}

    def disk() -> float:
        w, r = seq_write_read(ctx, mb)
        got["write"].append(w)
        got["read"].append(r)
        return w

    crc_mb = max(16, int(2048 * s.scale))
    samples = interleave(
        ctx,
        "limits",
        {
            "disk": disk,
            "crc32c native": lambda: crc_rate(records.crc32c, crc_mb),
            "crc32c package": lambda: crc_rate(crc32c_pkg.crc32c, crc_mb),
        },
    )
    return [
        Result(f"sequential disk I/O, {mb} MiB", "write + fdatasync", "MB/s", got["write"]),
        Result(
            f"sequential disk I/O, {mb} MiB", "cold read (fadvise DONTNEED)", "MB/s", got["read"]
        ),
        Result(
            "CRC32C bandwidth",
            "safepoint.records.crc32c (native)",
            "GB/s",
            samples["crc32c native"],
        ),
        Result("CRC32C bandwidth", "crc32c package", "GB/s", samples["crc32c package"]),
    ]
