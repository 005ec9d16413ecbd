"""Retention: which snapshots survive, as a pure policy and applied by a store.

The policy tests use plain descriptions of snapshots (name, step, metrics),
oldest first; the store tests save real snapshots and reopen the store, since
the policy must give the same answer after a restart from manifests alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

import safepoint
from safepoint import Retention

OPTIONS = {"segment_bytes": 1 << 16}


@dataclass
class Snap:
    name: str
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def snaps(*losses: float | None) -> list[Snap]:
    """Snapshots s0, s1, ... with val_loss values (None: no metric), step = index."""
    return [
        Snap(f"s{i}", i, {} if loss is None else {"val_loss": loss})
        for i, loss in enumerate(losses)
    ]


def kept(policy: Retention, items: list[Snap]) -> list[str]:
    names = policy.keep(items)
    return [s.name for s in items if s.name in names]


# --- the policy --------------------------------------------------------------------------


def test_keep_last_keeps_the_newest_n():
    assert kept(Retention(keep_last=2), snaps(1, 2, 3, 4)) == ["s2", "s3"]


def test_keep_best_min_keeps_the_lowest_values_and_the_newest():
    assert kept(Retention(keep_best=2, metric="val_loss"), snaps(0.5, 0.1, 0.9, 0.2, 0.7)) == [
        "s1",
        "s3",
        "s4",
    ]


def test_keep_best_max_keeps_the_highest_values():
    policy = Retention(keep_best=1, metric="val_loss", mode="max")
    assert kept(policy, snaps(0.5, 0.9, 0.1, 0.2)) == ["s1", "s3"]


def test_keep_every_n_steps_keeps_multiples_of_n():
    assert kept(Retention(keep_every_n_steps=3), snaps(*[None] * 8)) == ["s0", "s3", "s6", "s7"]


def test_policies_combine_as_a_union():
    policy = Retention(keep_last=1, keep_best=1, metric="val_loss", keep_every_n_steps=4)
    assert kept(policy, snaps(0.9, 0.1, 0.8, 0.7, 0.6, 0.5)) == ["s0", "s1", "s4", "s5"]


def test_newest_snapshot_is_kept_even_when_it_is_the_worst():
    policy = Retention(keep_best=1, metric="val_loss")
    assert kept(policy, snaps(0.1, 0.2, 9.0)) == ["s0", "s2"]


def test_snapshot_without_the_metric_counts_only_for_keep_last():
    policy = Retention(keep_last=1, keep_best=2, metric="val_loss")
    assert kept(policy, snaps(None, 0.5, None, 0.4, None)) == ["s1", "s3", "s4"]


def test_nan_metric_is_never_among_the_best():
    policy = Retention(keep_best=1, metric="val_loss")
    assert kept(policy, snaps(math.nan, 0.3, 0.2)) == ["s2"]
    assert kept(policy, snaps(math.nan, 0.3, 0.4)) == ["s1", "s2"]


def test_equal_metric_values_keep_the_newer_snapshot():
    policy = Retention(keep_best=1, metric="val_loss")
    assert kept(policy, snaps(0.2, 0.2, 0.5)) == ["s1", "s2"]


def test_keep_best_ranks_best_first():
    policy = Retention(keep_best=3, metric="val_loss")
    assert [s.name for s in policy.best(snaps(0.3, 0.1, 0.2, 0.4))] == ["s1", "s2", "s0"]


def test_drop_lists_the_others_oldest_first():
    assert Retention(keep_last=1).drop(snaps(1, 2, 3)) == ["s0", "s1"]


def test_empty_list_keeps_nothing_and_drops_nothing():
    assert Retention(keep_last=1).keep([]) == set()
    assert Retention(keep_last=1).drop([]) == []


def test_step_none_never_matches_keep_every_n_steps():
    items = [Snap("a", None), Snap("b", None), Snap("c", 5)]
    assert kept(Retention(keep_every_n_steps=1), items) == ["c"]


def test_retention_has_a_readable_repr_and_compares_by_value():
    a = Retention(keep_last=3, keep_best=2, metric="val_loss")
    assert a == Retention(keep_last=3, keep_best=2, metric="val_loss")
    assert "keep_last=3" in repr(a) and "metric='val_loss'" in repr(a)


# --- applied by a store ----------------------------------------------------------------


def save_losses(db: safepoint.Store, losses: list[float | None], start: int = 0) -> None:
    for i, loss in enumerate(losses, start):
        db[b"epoch"] = str(i).encode()
        metrics = {} if loss is None else {"val_loss": loss}
        db.save(f"epoch-{i}", step=i, metrics=metrics)


def names(db: safepoint.Store) -> list[str]:
    return [s.name for s in db.snapshots()]


def test_store_applies_retention_after_each_save(tmp_path):
    policy = Retention(keep_last=2, keep_best=1, metric="val_loss")
    with safepoint.open(tmp_path / "s", retention=policy, **OPTIONS) as db:
        save_losses(db, [0.5, 0.1, 0.4, 0.3, 0.6])
        assert names(db) == ["epoch-1", "epoch-3", "epoch-4"]


def test_best_snapshot_survives_a_restart(tmp_path):
    policy = Retention(keep_last=1, keep_best=1, metric="val_loss")
    with safepoint.open(tmp_path / "s", retention=policy, **OPTIONS) as db:
        save_losses(db, [0.5, 0.1, 0.4])
    with safepoint.open(tmp_path / "s", retention=policy, **OPTIONS) as db:
        save_losses(db, [0.3, 0.2], start=3)
        assert names(db) == ["epoch-1", "epoch-4"]


def test_retention_after_restart_ranks_old_and_new_snapshots_together(tmp_path):
    policy = Retention(keep_best=2, metric="val_loss", mode="max")
    with safepoint.open(tmp_path / "s", retention=policy, **OPTIONS) as db:
        save_losses(db, [0.7, 0.9, 0.1])
    with safepoint.open(tmp_path / "s", retention=policy, **OPTIONS) as db:
        save_losses(db, [0.8, 0.2], start=3)
        assert names(db) == ["epoch-1", "epoch-3", "epoch-4"]


def test_store_without_retention_keeps_every_snapshot(tmp_path):
    with safepoint.open(tmp_path / "s", **OPTIONS) as db:
        save_losses(db, [0.3, 0.2, 0.1])
        assert names(db) == ["epoch-0", "epoch-1", "epoch-2"]


def test_retention_added_later_prunes_at_the_next_save(tmp_path):
    with safepoint.open(tmp_path / "s", **OPTIONS) as db:
        save_losses(db, [0.3, 0.2, 0.1])
    with safepoint.open(tmp_path / "s", retention=Retention(keep_last=2), **OPTIONS) as db:
        save_losses(db, [0.5], start=3)
        assert names(db) == ["epoch-2", "epoch-3"]


def test_retention_leaves_a_snapshot_with_a_damaged_manifest_alone(tmp_path):
    with safepoint.open(tmp_path / "s", retention=Retention(keep_last=1), **OPTIONS) as db:
        save_losses(db, [0.3])
        manifest = tmp_path / "s" / "snapshots" / "epoch-0" / "manifest.json"
        manifest.write_text(manifest.read_text().replace('"step": 0', '"step": 7'))
        save_losses(db, [0.2, 0.1], start=1)
        assert sorted(p.name for p in (tmp_path / "s" / "snapshots").iterdir()) == [
            "epoch-0",
            "epoch-2",
        ]


# Error paths


def test_no_rule_at_all_is_refused():
    with pytest.raises(ValueError, match="at least one of"):
        Retention()


def test_keep_best_without_metric_is_refused():
    with pytest.raises(ValueError, match="keep_best needs metric"):
        Retention(keep_best=2)


def test_metric_without_keep_best_is_refused():
    with pytest.raises(ValueError, match="give keep_best"):
        Retention(keep_last=2, metric="val_loss")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="mode must be 'min' or 'max'"):
        Retention(keep_best=1, metric="acc", mode="maximum")


@pytest.mark.parametrize("arg", ["keep_last", "keep_best", "keep_every_n_steps"])
def test_zero_or_negative_counts_are_refused(arg):
    extra = {"metric": "m"} if arg == "keep_best" else {}
    with pytest.raises(ValueError, match=f"{arg} must be at least 1"):
        Retention(**{arg: 0}, **extra)


def test_non_integer_count_is_refused():
    with pytest.raises(TypeError, match="keep_last must be a positive int"):
        Retention(keep_last=2.5)


def test_bool_count_is_refused():
    with pytest.raises(TypeError, match="not bool"):
        Retention(keep_last=True)


def test_store_refuses_a_retention_that_is_not_a_policy(tmp_path):
    with pytest.raises(TypeError, match="retention must be a safepoint.Retention"):
        safepoint.open(tmp_path / "s", retention={"keep_last": 2})
