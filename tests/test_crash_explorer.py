"""The crash-point explorer proves SPEC §3 under simulated power loss.

Each test runs a workload once under a FaultFS, then crashes it before and
after every fsync, directory fsync and LMDB commit and at sampled I/O
operations, under every crash model, recovers every distinct crash state
and checks atomicity (a prefix of the commits), durability (every
acknowledged commit), a stable reopen, and a crash during recovery.

The mutation check (the log's fsyncs switched off) proves the same checks
catch a lost-durability bug.  The counts asserted here add up to the
acceptance figure (at least 300 distinct crash states across all models in
CI, 0 violations); docs/testing.md has the longer run.
"""

from __future__ import annotations

import pytest

import safepoint
from safepoint.testing import MODELS, explore

VALUE_BYTES = (90, 170, 250, 330, 410)  # mixed record sizes: several per segment


# The failures these tests cause are logged as errors; the log is not the point.
pytestmark = pytest.mark.usefixtures("quiet_store_log")


# --- workloads ---------------------------------------------------------------------


def mixed_workload(db):
    """Puts, deletes, a transaction bigger than a segment, checkpoints."""
    for i in range(24):
        db.put(b"key-%02d" % (i % 9), bytes([65 + i % 26]) * VALUE_BYTES[i % 5])
        if i % 5 == 4:
            db.delete(b"key-%02d" % ((i * 4) % 9))
        if i % 9 == 8:
            db.checkpoint()
        if i == 13:
            with db.transaction() as txn:
                txn.put(b"big", b"B" * 5000)
                txn.put(b"key-00", b"in a transaction")
                txn.delete(b"key-03")


def unsynced_workload(db):
    """Many records written but not yet synced when the power goes."""
    for i in range(30):
        db.put(b"key-%02d" % (i % 11), bytes([97 + i % 26]) * VALUE_BYTES[i % 5])
        if i % 6 == 5:
            db.delete(b"key-%02d" % ((i * 7) % 11))
        if i % 12 == 11:
            db.checkpoint()


def snapshot_workload(db):
    """Save a snapshot, write on, restore it, write again."""
    for i in range(6):
        db.put(b"k%d" % i, b"v%d" % i * 40)
    db.save("first")
    for i in range(6, 12):
        db.put(b"k%d" % (i % 4), b"w%d" % i * 40)
    db.restore("first")
    db.put(b"after", b"the restore")


def full_segment_workload(db):
    """Records of 78 bytes: 52 fill a 4096-byte segment to its last byte."""
    for i in range(60):
        db.put(b"k%02d" % i, bytes([65 + i % 26]) * 32)


def small_workload(db):
    for i in range(12):
        db.put(b"k%02d" % i, b"v" * 120)


def assert_clean(result, at_least):
    assert result.violations == [], result.summary()
    assert result.states >= at_least, result.summary()
    assert all(result.distinct[m] > 0 for m in result.generated), result.summary()


# --- the guarantees ----------------------------------------------------------------------


def test_every_crash_of_acknowledged_commits_recovers_a_prefix_holding_them():
    result = explore(mixed_workload, seed=11)
    assert result.acknowledged == result.commits > 25
    assert set(result.generated) == set(MODELS)
    assert_clean(result, at_least=150)


def test_every_crash_with_unsynced_commits_recovers_a_prefix():
    result = explore(
        unsynced_workload, seed=12, variants=2, sample_ops=25, store_options={"sync": "none"}
    )
    assert result.tails_cut > 10  # torn tails among unsynced records were exercised
    assert_clean(result, at_least=120)


def test_every_crash_of_a_segment_filled_to_its_last_byte_recovers_a_prefix():
    # A torn record before one that ends its segment once made recovery
    # raise ValueError (tests/regressions/test_damage_before_a_record_*).
    result = explore(
        full_segment_workload, seed=21, variants=3, sample_ops=10, store_options={"sync": "none"}
    )
    assert_clean(result, at_least=100)


def test_every_crash_around_a_snapshot_restore_recovers_the_old_or_new_state():
    result = explore(snapshot_workload, seed=13, sample_ops=15)
    assert_clean(result, at_least=60)


def test_point_in_time_recovery_is_consistent_after_every_crash():
    result = explore(
        small_workload, seed=14, sample_ops=5, store_options={"recovery": "point_in_time"}
    )
    assert_clean(result, at_least=30)


def test_explorer_works_through_a_value_codec():
    def workload(db):
        for i in range(6):
            db.put(f"n{i}", {"step": i, "loss": 1 / (i + 1)})

    result = explore(
        workload, seed=15, models=("drop_unsynced", "torn_write"), store_options={"codec": "json"}
    )
    assert_clean(result, at_least=10)


# --- the checks can fail -------------------------------------------------------------------


def test_explorer_catches_a_log_whose_fsyncs_do_nothing():
    # The mutation check: with the log's fsyncs switched off, commits are
    # acknowledged but not durable, and the explorer must say so.
    result = explore(
        small_workload, seed=16, models=("drop_unsynced", "keep_prefix"), lose_log_fsyncs=True
    )
    kinds = {v.kind for v in result.violations}
    assert "lost_ack" in kinds, result.summary()


def test_commit_the_model_never_saw_is_reported():
    def workload(db):
        db.put(b"a", b"1")
        db.store.put(b"unrecorded", b"x")  # behind the recorder's back
        db.put(b"b", b"2")

    result = explore(workload, seed=17, models=("drop_unsynced",))
    assert {v.kind for v in result.violations} == {"not_a_prefix"}


def test_violating_crash_states_are_kept_for_inspection(tmp_path):
    result = explore(
        small_workload,
        seed=18,
        models=("drop_unsynced",),
        lose_log_fsyncs=True,
        keep_failures=tmp_path / "kept",
    )
    kept = result.violations[0].kept
    assert kept is not None
    with safepoint.open(kept) as db:  # a real store directory, ready to debug
        assert len(db) < 12


def test_summary_names_the_counts_and_violations():
    result = explore(small_workload, seed=19, models=("drop_unsynced",), lose_log_fsyncs=True)
    text = result.summary()
    assert f"{result.states} distinct crash states" in text
    assert f"{len(result.violations)} violations" in text and "lost_ack" in text


# Error paths


def test_unknown_model_is_refused_with_the_list():
    with pytest.raises(ValueError, match="keep_subset"):
        explore(small_workload, models=("meteor_strike",))


def test_variants_below_one_are_refused():
    with pytest.raises(ValueError, match="variants"):
        explore(small_workload, variants=0)


def test_restore_of_a_snapshot_the_workload_did_not_save_is_refused():
    def workload(db):
        db.restore("never-saved")

    with pytest.raises(ValueError, match="never-saved"):
        explore(workload)


def test_workload_error_propagates():
    def workload(db):
        db.put(b"a", b"1")
        raise RuntimeError("the workload's own bug")

    with pytest.raises(RuntimeError, match="own bug"):
        explore(workload)
