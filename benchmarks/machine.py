"""A description of the machine a run measured: CPU, memory, disk, software."""

from __future__ import annotations

import os
import platform

from safepoint import records

from . import peers


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (and "virtual machine" if a hypervisor shows)."""
    info = _read("/proc/cpuinfo")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    if " hypervisor" in info:
        model += " (virtual machine)"
    return model


def ram_gb() -> float:
    """Total RAM in GB."""
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def filesystem(path: str) -> str:
    """'<fstype> on <device> (mounted at <mountpoint>, <options>)' for ``path``."""
    path = os.path.realpath(path)
    best = ("", "?", "?", "")
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        dev, mnt, fstype, opts = parts[:4]
        if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
            best = (mnt, dev, fstype, opts)
    mnt, dev, fstype, opts = best
    disk = os.path.basename(dev)
    rot = _read(f"/sys/block/{disk}/queue/rotational").strip()
    kind = f", rotational={rot} as the kernel reports it" if rot else ""
    return f"{fstype} on {dev}{kind} (mounted at {mnt}, {opts})"


def describe(scratch: str) -> dict[str, str]:
    """Every fact the results file prints about the machine."""
    st = os.statvfs(scratch)
    out = {
        "CPU": cpu_model(),
        "cores": str(os.cpu_count()),
        "RAM": f"{ram_gb():.1f} GB",
        "filesystem": filesystem(scratch),
        "free space": f"{st.f_bavail * st.f_frsize / 1e9:.0f} GB",
        "kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "record codec": records.BACKEND,
    }
    out.update({f"{name} version": v for name, v in peers.versions().items()})
    return out
