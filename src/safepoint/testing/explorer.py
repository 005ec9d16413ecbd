"""The crash-point explorer: crash a workload everywhere, recover, check.

``explore(workload)`` runs ``workload(db)`` once on a fresh store under a
FaultFS, recording the trace of every file operation and the commits the
workload made (recorder.py).  Then, for every crash point chosen (right
before and right after every fsync, directory fsync and LMDB commit, plus
sampled I/O operations, or every one), and every crash model, it
materialises the disk a power loss there leaves, opens it, and checks:

1. recovery succeeds;
2. the state equals the expected state after some prefix of the commits
   (atomicity), and that prefix holds every commit acknowledged as durable
   before the crash (durability) and none not yet begun;
3. a second open gives the same state;
4. a crash during that recovery (at a random point of its own trace, under
   a random model), then recovery again, gives the same state.

Identical crash states are checked once.  A violation names the model,
seed, crash point and what the model kept; with ``keep_failures`` its disk
is kept for inspection.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import Store
from .crash import MODELS, RANDOM_MODELS, CrashState, crash_state
from .failures import Failures
from .faultfs import FaultFS
from .recorder import History, RecordingStore
from .trace import DURABILITY_EVENTS, replay

DEFAULT_STORE_OPTIONS: dict[str, Any] = {"segment_bytes": 4096, "checkpoint_bytes": None}
VIOLATION_KINDS = (
    "recovery_failed",
    "not_a_prefix",
    "lost_ack",
    "future_commit",
    "reopen_differs",
    "recovery_crash_differs",
)


@dataclass
class Violation:
    """One broken guarantee, with what is needed to reproduce it."""

    kind: str  # one of VIOLATION_KINDS
    model: str
    seed: int
    point: int  # trace events before the crash
    detail: str
    note: str = ""  # what the crash model kept
    kept: str | None = None  # where the crash state was kept, if it was

    def __str__(self) -> str:
        where = f" (kept in {self.kept})" if self.kept else ""
        return (
            f"{self.kind}: {self.detail} [model {self.model}, seed {self.seed}, "
            f"crash after {self.point} events; {self.note}]{where}"
        )


@dataclass
class ExploreResult:
    """What an exploration did and found."""

    trace_events: int = 0
    commits: int = 0
    acknowledged: int = 0
    crash_points: int = 0
    generated: dict[str, int] = field(default_factory=dict)  # crash states per model
    distinct: dict[str, int] = field(default_factory=dict)  # distinct ones per model
    states: int = 0  # distinct crash states recovered and checked, all models
    recovery_crashes: int = 0
    tails_cut: int = 0  # recoveries that cut a torn tail or set damage aside
    violations: list[Violation] = field(default_factory=list)
    duration_s: float = 0.0

    def summary(self) -> str:
        """A few lines for a terminal or a CI log."""
        per = ", ".join(f"{m} {self.distinct.get(m, 0)}/{n}" for m, n in self.generated.items())
        lines = [
            f"{self.states} distinct crash states checked (per model, distinct/generated: {per})",
            f"{self.crash_points} crash points in a trace of {self.trace_events} events; "
            f"{self.commits} commits, {self.acknowledged} acknowledged; "
            f"{self.tails_cut} recoveries cut a torn tail; "
            f"{self.recovery_crashes} crashes during recovery; {self.duration_s:.1f} s",
            f"{len(self.violations)} violations",
        ]
        lines.extend(f"  {v}" for v in self.violations[:10])
        return "\n".join(lines)


def explore(
    workload: Callable[[RecordingStore], object],
    *,
    models: Iterable[str] = MODELS,
    seed: int = 0,
    variants: int = 1,
    sample_ops: int | None = None,
    recovery_crashes: int = 1,
    store_options: dict[str, Any] | None = None,
    workdir: str | os.PathLike[str] | None = None,
    keep_failures: str | os.PathLike[str] | None = None,
    lose_log_fsyncs: bool = False,
    arm: Callable[[Failures], object] | None = None,
) -> ExploreResult:
    """Crash ``workload`` at many points under each model; report violations.

    ``workload(db)`` gets a RecordingStore (the store's API; its commits
    are recorded) on a fresh store opened with ``store_options`` (default
    small segments and no automatic checkpoints); it must be
    single-threaded.  ``variants``: seeds per crash point for the random
    models.  ``sample_ops``: how many crash points besides the fsync
    boundaries (None: every I/O operation).  ``recovery_crashes``: crashes
    injected into each recovery.  ``lose_log_fsyncs``: the mutation switch
    (faultfs.py), for proving that the checks catch lost commits.  ``arm``
    is called with the FaultFS's ``Failures`` before the store opens, to
    inject I/O errors into the run (the workload then handles the errors
    the store raises); recoveries run without them.
    """
    models = tuple(models)
    for m in models:
        if m not in MODELS:
            raise ValueError(f"unknown crash model {m!r}; the models are {', '.join(MODELS)}")
    if variants < 1:
        raise ValueError("variants must be 1 or more")
    t0 = time.perf_counter()
    options = {**DEFAULT_STORE_OPTIONS, **(store_options or {})}
    check_options = {k: v for k, v in options.items() if k not in ("codec", "fs", "readonly")}
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="safepoint-explore-") if own_dir else workdir)  # type: ignore[arg-type]
    try:
        fs, history = _run(workload, work / "store", options, lose_log_fsyncs, arm)
        checker = _Checker(
            work, check_options, history, models, seed, keep_failures, recovery_crashes
        )
        result = ExploreResult(
            trace_events=len(fs.trace),
            commits=history.commits,
            acknowledged=sum(1 for a in history.acked if a is not None),
            generated={m: 0 for m in models},
        )
        per_model: dict[str, set[str]] = {m: set() for m in models}
        points = _crash_points(fs, sample_ops, random.Random(seed))
        result.crash_points = len(points)
        r = replay(fs.baseline, [], 0)
        for k in points:
            while r.index < k:
                r.apply(fs.trace[r.index])
            for m in models:
                for v in range(variants if m in RANDOM_MODELS else 1):
                    state = crash_state(r, m, seed * 1000 + v)
                    if state is None:
                        continue
                    result.generated[m] += 1
                    fp = state.fingerprint()
                    per_model[m].add(fp)
                    checker.check(state, fp)
        result.distinct = {m: len(fps) for m, fps in per_model.items()}
        result.states = len(checker.recovered)
        result.violations = checker.violations
        result.recovery_crashes = checker.recovery_crashes
        result.tails_cut = checker.tails_cut
        result.duration_s = time.perf_counter() - t0
        return result
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)


def _run(
    workload: Callable[[RecordingStore], object],
    root: Path,
    options: dict[str, Any],
    lose_log_fsyncs: bool,
    arm: Callable[[Failures], object] | None,
) -> tuple[FaultFS, History]:
    fs = FaultFS(root, lose_log_fsyncs=lose_log_fsyncs)
    if arm is not None:
        arm(fs.failures)
    history = History()
    try:
        db = RecordingStore(Store(root, fs=fs, **options), history, lambda: len(fs.trace))
        try:
            workload(db)
        finally:
            if not db.store._closed:
                db.close()
    finally:
        fs.close()
    return fs, history


def _crash_points(fs: FaultFS, sample_ops: int | None, rng: random.Random) -> list[int]:
    n = len(fs.trace)
    points = {0, n}
    for i, ev in enumerate(fs.trace):
        if isinstance(ev, DURABILITY_EVENTS):
            points.update((i, i + 1))
    others = [k for k in range(n + 1) if k not in points]
    if sample_ops is not None and sample_ops < len(others):
        others = rng.sample(others, sample_ops)
    points.update(others)
    return sorted(points)


class _Checker:
    """Recovers crash states and checks them against the history."""

    def __init__(
        self,
        work: Path,
        options: dict[str, Any],
        history: History,
        models: tuple[str, ...],
        seed: int,
        keep_failures: str | os.PathLike[str] | None,
        crashes_per_recovery: int,
    ) -> None:
        self.work = work
        self.crashes_per_recovery = crashes_per_recovery
        self.options = options
        self.history = history
        self.models = models
        self.rng = random.Random(seed)
        self.keep = Path(keep_failures) if keep_failures is not None else None
        self.recovered: dict[str, list[int] | None] = {}  # fingerprint -> matching prefixes
        self.violations: list[Violation] = []
        self.recovery_crashes = 0
        self.tails_cut = 0

    def check(self, state: CrashState, fp: str) -> None:
        """Check one crash state (``fp``: its fingerprint).  An identical
        state met before is not recovered again, but it is judged again:
        what it must hold depends on when the crash happened."""
        if fp not in self.recovered:
            self.recovered[fp] = self._recover(state)
        js = self.recovered[fp]
        if js is None:
            return  # recovery failed: reported when first met
        must, may = self.history.bounds(state.point)
        if not any(must <= j <= may for j in js):
            self._judge(state, js, must, may)

    def _recover(self, state: CrashState) -> list[int] | None:
        """Recover a new crash state and check what does not depend on the
        crash point; returns the commit prefixes its state equals."""
        path = state.materialise(self.work / "check")
        try:
            found = self._open(path, count_cuts=True)
        except Exception as exc:  # noqa: BLE001 - any failure to recover is the finding
            self._fail(state, "recovery_failed", f"{type(exc).__name__}: {exc}")
            return None
        try:
            again = self._open(path)  # as the first recovery left it
        except Exception as exc:  # noqa: BLE001
            self._fail(
                state, "reopen_differs", f"a second open failed: {type(exc).__name__}: {exc}"
            )
        else:
            if again != found:
                self._fail(state, "reopen_differs", "a second open gave a different state")
        for _ in range(self.crashes_per_recovery):
            self._crash_recovery(state, found)
        return self.history.matches(found)

    def _open(
        self, path: Path, fs: FaultFS | None = None, count_cuts: bool = False
    ) -> dict[bytes, bytes]:
        db = Store(path, fs=fs, **self.options)
        try:
            if count_cuts and not db.recovery.clean:
                self.tails_cut += 1
            return dict(db.items())
        finally:
            db.close()

    def _crash_recovery(self, state: CrashState, expected: dict[bytes, bytes]) -> None:
        path = state.materialise(self.work / "recover")
        rfs = FaultFS(path)
        try:
            self._open(path, rfs)
        except Exception as exc:  # noqa: BLE001
            self._fail(state, "recovery_failed", f"with a FaultFS: {type(exc).__name__}: {exc}")
            return
        finally:
            rfs.close()
        if not rfs.trace:
            return
        boundaries = rfs.durability_points()
        if boundaries and self.rng.random() < 0.5:
            point = self.rng.choice(boundaries)
        else:
            point = self.rng.randint(0, len(rfs.trace))
        model = self.rng.choice(self.models)
        r = replay(rfs.baseline, rfs.trace, point)
        second = crash_state(r, model, self.rng.randrange(1 << 30)) or crash_state(
            r, "drop_unsynced", 0
        )
        assert second is not None
        self.recovery_crashes += 1
        try:
            got = self._open(second.materialise(self.work / "check2"))
        except Exception as exc:  # noqa: BLE001
            self._fail(
                state,
                "recovery_crash_differs",
                f"recovery crashed after {point} of its {len(rfs.trace)} events under "
                f"{model} ({second.note}), then failed: {type(exc).__name__}: {exc}",
            )
            return
        if got != expected:
            self._fail(
                state,
                "recovery_crash_differs",
                f"recovery crashed after {point} of its {len(rfs.trace)} events under "
                f"{model} ({second.note}); the next recovery found {len(got)} keys, "
                f"not the {len(expected)} of the first",
            )

    def _judge(self, state: CrashState, js: list[int], must: int, may: int) -> None:
        if not js:
            self._fail(
                state, "not_a_prefix", "the state is not the state after any prefix of commits"
            )
        elif max(js) < must:
            self._fail(
                state,
                "lost_ack",
                f"state after {max(js)} commits, but {must} were acknowledged durable",
            )
        else:
            self._fail(
                state,
                "future_commit",
                f"state after {min(js)} commits, but only {may} had begun",
            )

    def _fail(self, state: CrashState, kind: str, detail: str) -> None:
        kept = None
        if self.keep is not None:
            target = self.keep / f"{kind}-{state.model}-{state.seed}-{state.point}"
            kept = str(state.materialise(target))
        self.violations.append(
            Violation(kind, state.model, state.seed, state.point, detail, state.note, kept)
        )
