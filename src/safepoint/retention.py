"""Retention: which snapshots to keep after a save.

A policy is the union of up to three rules, like Orbax's ``max_to_keep`` /
``best_fn`` / ``keep_period`` and Keras's ``save_best_only``:

* ``keep_last=N``: the N newest snapshots;
* ``keep_best=K`` with ``metric`` and ``mode``: the K snapshots with the best
  value of ``metrics[metric]`` ("min": lowest, "max": highest); a snapshot
  without that metric (or with NaN) is never among the best;
* ``keep_every_n_steps=N``: every snapshot whose ``step`` is a multiple of N.

The newest snapshot is always kept, whatever the rules say, so a save is
never undone by its own retention pass.  Everything the policy needs is in
the snapshots' manifests (step, metrics, creation order), so it gives the
same answer after a restart: nothing is remembered in memory.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Any, Protocol

MODES = ("min", "max")


class _Described(Protocol):
    """What the policy reads of a snapshot (SnapshotInfo has it)."""

    @property
    def name(self) -> str: ...

    @property
    def step(self) -> int | None: ...

    @property
    def metrics(self) -> dict[str, float]: ...


def _positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a positive int, not bool")
    try:
        n = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be a positive int, not {type(value).__name__}") from None
    if n < 1:
        raise ValueError(f"{name} must be at least 1, not {n}")
    return n


class Retention:
    """Which snapshots survive: the union of keep_last, keep_best and
    keep_every_n_steps, plus always the newest.

    ``Retention(keep_last=3, keep_best=2, metric="val_loss", mode="min")``
    keeps the three newest snapshots and the two with the lowest val_loss.
    Raises ValueError when no rule is given, when ``keep_best`` and
    ``metric`` do not come together, or for a mode other than "min"/"max".
    """

    __slots__ = ("keep_last", "keep_best", "metric", "mode", "keep_every_n_steps")

    def __init__(
        self,
        keep_last: int | None = None,
        keep_best: int | None = None,
        metric: str | None = None,
        mode: str = "min",
        keep_every_n_steps: int | None = None,
    ) -> None:
        self.keep_last = _positive("keep_last", keep_last)
        self.keep_best = _positive("keep_best", keep_best)
        self.keep_every_n_steps = _positive("keep_every_n_steps", keep_every_n_steps)
        if metric is not None and not isinstance(metric, str):
            raise TypeError(f"metric must be a str, not {type(metric).__name__}")
        if metric == "":
            raise ValueError("metric must not be empty")
        if mode not in MODES:
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        if self.keep_best is not None and metric is None:
            raise ValueError("keep_best needs metric= (the name of the metric to rank by)")
        if metric is not None and self.keep_best is None:
            raise ValueError(f"metric={metric!r} is used only with keep_best=; give keep_best")
        if self.keep_last is None and self.keep_best is None and self.keep_every_n_steps is None:
            raise ValueError("give at least one of keep_last, keep_best, keep_every_n_steps")
        self.metric = metric
        self.mode = mode

    def keep(self, snapshots: Sequence[_Described]) -> set[str]:
        """Names of the snapshots to keep; ``snapshots`` are ordered oldest first."""
        if not snapshots:
            return set()
        kept = {snapshots[-1].name}
        if self.keep_last is not None:
            kept.update(s.name for s in snapshots[-self.keep_last :])
        if self.keep_best is not None:
            kept.update(s.name for s in self.best(snapshots))
        if self.keep_every_n_steps is not None:
            n = self.keep_every_n_steps
            kept.update(s.name for s in snapshots if s.step is not None and s.step % n == 0)
        return kept

    def best(self, snapshots: Sequence[_Described]) -> list[_Described]:
        """The ``keep_best`` best snapshots by ``metric``, best first.

        Among equal values the newer snapshot ranks first.
        """
        if self.keep_best is None or self.metric is None:
            return []
        sign = 1.0 if self.mode == "min" else -1.0
        ranked = []
        for i, s in enumerate(snapshots):
            value = _metric(s, self.metric)
            if value is not None:
                ranked.append((sign * value, -i, s))
        ranked.sort(key=lambda t: (t[0], t[1]))
        return [s for _, _, s in ranked[: self.keep_best]]

    def drop(self, snapshots: Sequence[_Described]) -> list[str]:
        """Names of the snapshots the policy deletes, oldest first."""
        kept = self.keep(snapshots)
        return [s.name for s in snapshots if s.name not in kept]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Retention):
            return NotImplemented
        return all(getattr(self, a) == getattr(other, a) for a in self.__slots__)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, a) for a in self.__slots__))

    def __repr__(self) -> str:
        parts = [
            f"{a}={getattr(self, a)!r}" for a in self.__slots__ if getattr(self, a) is not None
        ]
        return f"Retention({', '.join(parts)})"


def _metric(snapshot: _Described, metric: str) -> float | None:
    """The snapshot's value of ``metric``; None when missing, not a number or NaN."""
    value = (snapshot.metrics or {}).get(metric)
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(f):
        return None
    return f
