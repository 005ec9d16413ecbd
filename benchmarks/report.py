"""Turn results into the markdown report, the targets table and the chart."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

from .common import Result, fmt


@dataclass
class Target:
    """One performance target of issue 7, as a ratio (or a bound) to check."""

    text: str
    measured: float
    bound: float
    at_most: bool = False  # True: measured must be <= bound
    how: str = ""

    @property
    def verdict(self) -> str:
        """'met', 'MISSED' or 'not measured'."""
        if math.isnan(self.measured):
            return "not measured"
        ok = self.measured <= self.bound if self.at_most else self.measured >= self.bound
        return "met" if ok else "MISSED"


def _find(results: list[Result], workload: str, subject: str) -> float:
    """Median of the first result whose workload starts with ``workload`` and
    whose subject equals ``subject`` (NaN if absent)."""
    for r in results:
        if r.workload.startswith(workload) and r.subject == subject:
            return r.median
    return float("nan")


def _best(results: list[Result], workload: str, skip: Callable[[str], bool]) -> tuple[str, float]:
    best = ("-", float("nan"))
    for r in results:
        if r.workload.startswith(workload) and not skip(r.subject):
            if math.isnan(best[1]) or r.median > best[1]:
                best = (r.subject, r.median)
    return best


def targets(results: list[Result], threads: int) -> list[Target]:
    """Issue 7's targets, each computed from this run's medians."""
    f = _find
    x1 = f(results, "durable commits x1", "safepoint")
    raw = f(results, "durable commits x1", "raw fdatasync")
    xn = f(results, f"durable commits x{threads}", "safepoint")
    peer, peer_rate = _best(
        results,
        f"durable commits x{threads}",
        lambda s: s in ("safepoint", "dict") or s.startswith("raw"),
    )
    lm = f(results, "random gets", "lmdb")
    rocks_small = f(results, "reopen after", "rocksdict (warm)")
    sp_small = f(results, "reopen after", "safepoint (warm)")
    ck = f(results, "checkpoint of", "safepoint checkpoint")
    ck_lmdb = f(results, "checkpoint of", "lmdb, one sorted write txn")
    before = f(results, "one durable writer", "writer before checkpoint")
    during = f(results, "one durable writer", "writer during checkpoint")
    no_replay = f(results, "open with nothing to replay", "safepoint (warm)")
    large = [r for r in results if r.workload.startswith("reopen after") and "MiB" in r.workload]
    large_sp = next((r.median for r in large if r.subject == "safepoint (warm)"), float("nan"))
    return [
        Target("durable commits, 1 thread ÷ raw pwrite+fdatasync", x1 / raw, 0.95),
        Target(f"durable commits, {threads} threads ÷ our 1 thread", xn / x1, 3.0),
        Target(f"durable commits, {threads} threads ÷ best peer ({peer})", xn / peer_rate, 2.0),
        Target(
            "bulk load ÷ rocksdict WriteBatch",
            f(results, "bulk load", "safepoint") / f(results, "bulk load", "rocksdict"),
            2.0,
        ),
        Target(
            "random gets, base image ÷ lmdb (read txn per get)",
            f(results, "random gets", "safepoint (base image)") / lm,
            0.8,
        ),
        Target(
            "random gets, memtable ÷ lmdb (read txn per get)",
            f(results, "random gets", "safepoint (memtable)") / lm,
            1.5,
        ),
        Target(
            "open with nothing to replay, ms (a 10 GB store)",
            no_replay,
            50.0,
            at_most=True,
            how="the store's size is in its workload's title (--open-store-gb)",
        ),
        Target("recovery, 100-byte values, records/s (warm)", sp_small, 1e6),
        Target("recovery, 1 MiB values, GB/s (warm)", large_sp, 1.0),
        Target(
            "recovery, 100-byte values ÷ RocksDB reopen of the same data",
            sp_small / rocks_small,
            1.0,
        ),
        Target("checkpoint entries/s ÷ one sorted lmdb write txn", ck / ck_lmdb, 0.7),
        Target("writers' commit rate during a checkpoint ÷ before", during / before, 0.7),
        Target(
            "memtable bytes ÷ payload bytes",
            f(results, "memory", "safepoint (memtable)"),
            2.0,
            at_most=True,
        ),
    ]


def _table(rows: list[Result]) -> list[str]:
    ref = next((r for r in rows if r.subject.startswith("safepoint")), None)
    limit = next((r for r in rows if r.subject.startswith("raw")), None)
    head = "| store / case | median | unit | rounds (min-max) |"
    rule = "| --- | ---: | --- | --- |"
    if ref is not None:
        head += " ÷ safepoint |"
        rule += " ---: |"
    if limit is not None:
        head += " ÷ raw limit |"
        rule += " ---: |"
    lines = [head + " note |", rule + " --- |"]
    for r in rows:
        cells = [r.subject, fmt(r.median), r.unit, r.spread]
        if ref is not None:
            cells.append(f"{r.median / ref.median:.2f}" if ref.median else "-")
        if limit is not None:
            cells.append(f"{r.median / limit.median:.2f}" if limit.median else "-")
        cells.append(r.note)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(
    results: list[Result],
    machine: dict[str, str],
    meta: dict[str, str],
    targets_: list[Target],
    chart: str | None,
    notes: list[str],
) -> str:
    """The whole results file."""
    out = ["# safepoint benchmarks", ""]
    out += [f"- **{k}**: {v}" for k, v in meta.items()]
    out += ["", "## Machine", ""]
    out += [f"- **{k}**: {v}" for k, v in machine.items()]
    out += ["", "## Targets (issue 7)", ""]
    out += ["| target | measured | bound | verdict |", "| --- | ---: | ---: | --- |"]
    for t in targets_:
        m = "-" if math.isnan(t.measured) else f"{t.measured:,.3g}"
        bound = f"{'≤' if t.at_most else '≥'} {t.bound:g}"
        text = t.text + (f" ({t.how})" if t.how else "")
        out.append(f"| {text} | {m} | {bound} | {t.verdict} |")
    if chart:
        out += ["", f"![chart]({os.path.basename(chart)})"]
    out += ["", "## Results", ""]
    seen: list[str] = []
    for r in results:
        if r.workload not in seen:
            seen.append(r.workload)
    for w in seen:
        out += [f"### {w}", ""]
        out += _table([r for r in results if r.workload == w])
        out.append("")
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def chart(results: list[Result], path: str) -> str | None:
    """A PNG of the main rate workloads (log scale); None if matplotlib is
    missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullFormatter
    except ImportError:
        return None
    panels: list[str] = []
    for r in results:
        if (
            r.higher_is_better
            and r.workload not in panels
            and not r.workload.startswith(
                ("CRC32C", "sequential", "memory", "checkpoint", "one durable writer")
            )
        ):
            panels.append(r.workload)
    if not panels:
        return None
    cols = 2
    rows_n = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(13, 2.9 * rows_n), squeeze=False)
    for ax, w in zip(axes.flat, panels, strict=False):
        rows = [r for r in results if r.workload == w]
        names = [r.subject for r in rows]
        values = [r.median for r in rows]
        colours = [
            "#d62728"
            if n.startswith("safepoint")
            else "#7f7f7f"
            if n.startswith("raw")
            else "#1f77b4"
            for n in names
        ]
        ax.barh(range(len(rows)), values, color=colours)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{w} ({rows[0].unit})", fontsize=9)
        for i, v in enumerate(values):
            ax.text(v, i, " " + fmt(v), va="center", fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(
        "safepoint vs peers: medians, higher is better (red: safepoint, grey: physical limit)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
