"""safepoint.testing's file layer and crash models, on plain files.

FaultFS runs every operation on real files and traces it; a crash model
turns the trace into the disk a power loss leaves.  These tests pin what is
durable when (fsync, fdatasync, directory fsync, LMDB commit) and what each
model may keep of the rest.
"""

from __future__ import annotations

import errno
import os

import pytest

import safepoint
from safepoint.testing import MODELS, SECTOR_BYTES, FaultFS, crash_state, replay

SEEDS = range(40)


@pytest.fixture
def root(tmp_path):
    return tmp_path / "root"


@pytest.fixture
def fs(root):
    f = FaultFS(root)
    f.makedirs(str(root / "d"))
    f.sync_dir(str(root))
    yield f
    f.close()


# --- helper verbs ---------------------------------------------------------------


def create(fs, root, rel, data=b"", *, sync=False, sync_dir=False):
    f = fs.open(str(root / rel), write=True, create=True)
    if data:
        f.write_at(data, 0)
    if sync:
        f.sync()
    f.close()
    if sync_dir:
        fs.sync_dir(str((root / rel).parent))


def append(fs, root, rel, data, *, sync=False):
    f = fs.open(str(root / rel), write=True)
    f.write_at(data, f.size())
    if sync:
        f.sync_data()
    f.close()


def files_after(fs, model="drop_unsynced", seed=0, at=None):
    return fs.crash(model, seed, at).files


def every_state(fs, model, at=None):
    r = replay(fs.baseline, fs.trace, at)
    return [s for s in (crash_state(r, model, seed) for seed in SEEDS) if s is not None]


# --- durability ----------------------------------------------------------------------


def test_unsynced_write_is_lost_by_drop_unsynced(fs, root):
    create(fs, root, "d/a", b"old", sync=True, sync_dir=True)
    append(fs, root, "d/a", b"new")
    assert files_after(fs)["d/a"] == b"old"


def test_synced_write_survives_every_model(fs, root):
    create(fs, root, "d/a", b"durable", sync=True, sync_dir=True)
    append(fs, root, "d/a", b"+pending")
    for model in MODELS:
        for state in every_state(fs, model):
            assert state.files["d/a"].startswith(b"durable")


def test_fdatasync_makes_earlier_writes_durable_but_not_later_ones(fs, root):
    create(fs, root, "d/a", sync=True, sync_dir=True)
    append(fs, root, "d/a", b"one", sync=True)
    append(fs, root, "d/a", b"two")
    assert files_after(fs)["d/a"] == b"one"


def test_file_created_without_a_directory_fsync_is_gone(fs, root):
    create(fs, root, "d/a", b"data", sync=True)
    assert "d/a" not in files_after(fs)


def test_directory_fsync_makes_the_create_durable(fs, root):
    create(fs, root, "d/a", b"data", sync=True, sync_dir=True)
    assert files_after(fs)["d/a"] == b"data"


def test_rename_without_a_directory_fsync_is_undone(fs, root):
    create(fs, root, "d/tmp", b"data", sync=True, sync_dir=True)
    fs.rename(str(root / "d/tmp"), str(root / "d/final"))
    for model in ("drop_unsynced", "undo_dir_ops"):
        files = files_after(fs, model)
        assert files.get("d/tmp") == b"data" and "d/final" not in files


def test_rename_is_durable_once_the_destination_directory_is_synced(fs, root):
    create(fs, root, "d/tmp", b"data", sync=True, sync_dir=True)
    fs.rename(str(root / "d/tmp"), str(root / "d/final"))
    fs.sync_dir(str(root / "d"))
    files = files_after(fs)
    assert files["d/final"] == b"data" and "d/tmp" not in files


def test_rename_over_a_file_replaces_it_atomically(fs, root):
    create(fs, root, "d/final", b"old", sync=True, sync_dir=True)
    fs.write_file_atomic(str(root / "d/final"), b"new")
    for model in MODELS:
        for state in every_state(fs, model):
            assert state.files["d/final"] == b"new"
    before_rename = next(i for i, ev in enumerate(fs.trace) if type(ev).__name__ == "Rename")
    assert files_after(fs, at=before_rename)["d/final"] == b"old"


def test_remove_without_a_directory_fsync_brings_the_file_back(fs, root):
    create(fs, root, "d/a", b"data", sync=True, sync_dir=True)
    fs.remove(str(root / "d/a"))
    assert files_after(fs)["d/a"] == b"data"


def test_files_in_a_directory_whose_creation_is_lost_are_lost(fs, root):
    fs.makedirs(str(root / "new"))
    create(fs, root, "new/a", b"data", sync=True, sync_dir=True)
    state = fs.crash("drop_unsynced")
    assert "new" not in state.dirs and "new/a" not in state.files


def test_remove_tree_is_traced_file_by_file(fs, root):
    fs.makedirs(str(root / "d/sub"))
    fs.sync_dir(str(root / "d"))
    create(fs, root, "d/sub/a", b"data", sync=True, sync_dir=True)
    fs.remove_tree(str(root / "d/sub"))
    fs.sync_dir(str(root / "d"))
    state = fs.crash("drop_unsynced")
    assert "d/sub" not in state.dirs and "d/sub/a" not in state.files


def test_renamed_directory_keeps_its_files(fs, root):
    fs.makedirs(str(root / "d/tmp"))
    fs.sync_dir(str(root / "d"))
    create(fs, root, "d/tmp/a", b"data", sync=True, sync_dir=True)
    fs.rename(str(root / "d/tmp"), str(root / "d/done"))
    fs.sync_dir(str(root / "d"))
    append(fs, root, "d/done/a", b"+more", sync=True)
    assert files_after(fs)["d/done/a"] == b"data+more"


def test_files_outside_the_root_are_not_traced(fs, root, tmp_path):
    n = len(fs.trace)
    f = fs.open(str(tmp_path / "outside"), write=True, create=True)
    f.write_at(b"x", 0)
    f.sync()
    f.close()
    assert len(fs.trace) == n


def test_file_created_outside_the_layer_is_adopted_as_unsynced(fs, root):
    (root / "d" / "foreign").write_bytes(b"made by someone else")
    fs.sync_dir(str(root / "d"))
    assert files_after(fs)["d/foreign"] == b""
    assert files_after(fs, "undo_dir_ops")["d/foreign"] == b"made by someone else"


def test_existing_files_are_durable_from_the_start(root):
    (root / "d").mkdir(parents=True)
    (root / "d" / "a").write_bytes(b"was here")
    fs = FaultFS(root)
    try:
        assert files_after(fs)["d/a"] == b"was here"
    finally:
        fs.close()


# --- the models ---------------------------------------------------------------------


def pending_appends(fs, root, n, size=100):
    create(fs, root, "d/a", sync=True, sync_dir=True)
    for i in range(n):
        append(fs, root, "d/a", bytes([65 + i]) * size)


def test_keep_prefix_keeps_writes_in_issue_order(fs, root):
    pending_appends(fs, root, 5)
    seen = set()
    for state in every_state(fs, "keep_prefix"):
        data = state.files["d/a"]
        assert data == b"".join(bytes([65 + i]) * 100 for i in range(len(data) // 100))
        seen.add(len(data))
    assert len(seen) > 3


def test_keep_subset_can_keep_a_later_write_without_an_earlier_one(fs, root):
    pending_appends(fs, root, 3, size=SECTOR_BYTES)
    assert any(
        s.files["d/a"][SECTOR_BYTES:].startswith(b"B") and s.files["d/a"][:1] != b"A"
        for s in every_state(fs, "keep_subset")
    )


def test_keep_subset_splits_writes_at_sector_boundaries(fs, root):
    create(fs, root, "d/a", bytes(2 * SECTOR_BYTES), sync=True, sync_dir=True)
    f = fs.open(str(root / "d/a"), write=True)
    f.write_at(b"\xff" * (2 * SECTOR_BYTES), 0)
    f.close()
    halves = {
        (s.files["d/a"][0], s.files["d/a"][SECTOR_BYTES]) for s in every_state(fs, "keep_subset")
    }
    assert (0xFF, 0) in halves and (0, 0xFF) in halves


def test_torn_write_changes_only_bytes_inside_the_write(fs, root):
    durable = bytes(range(256)) * 8
    create(fs, root, "d/a", durable, sync=True, sync_dir=True)
    f = fs.open(str(root / "d/a"), write=True)
    f.write_at(b"\xee" * 700, 300)
    f.close()
    for state in every_state(fs, "torn_write"):
        data = state.files["d/a"]
        assert data[:300] == durable[:300] and data[1000:] == durable[1000:]


def test_torn_write_sectors_are_new_old_zero_or_garbage(fs, root):
    old = b"\x11" * (3 * SECTOR_BYTES)
    create(fs, root, "d/a", old, sync=True, sync_dir=True)
    f = fs.open(str(root / "d/a"), write=True)
    f.write_at(b"\xee" * len(old), 0)
    f.close()
    kinds = set()
    for state in every_state(fs, "torn_write"):
        data = state.files["d/a"]
        for s in range(3):
            sector = data[s * SECTOR_BYTES : (s + 1) * SECTOR_BYTES]
            if sector in (b"\xee" * SECTOR_BYTES, b"\x11" * SECTOR_BYTES, bytes(SECTOR_BYTES)):
                kinds.add(sector[:1])
            else:
                kinds.add(b"garbage")
    assert kinds == {b"\xee", b"\x11", b"\x00", b"garbage"}


def test_torn_write_needs_a_pending_write(fs, root):
    create(fs, root, "d/a", b"data", sync=True, sync_dir=True)
    assert crash_state(replay(fs.baseline, fs.trace), "torn_write", 0) is None


def test_undo_dir_ops_keeps_every_write_and_no_new_name(fs, root):
    create(fs, root, "d/a", b"data", sync=True, sync_dir=True)
    append(fs, root, "d/a", b"+pending")
    create(fs, root, "d/b", b"new file", sync=True)
    files = files_after(fs, "undo_dir_ops")
    assert files["d/a"] == b"data+pending" and "d/b" not in files


def test_same_model_and_seed_give_the_same_state(fs, root):
    pending_appends(fs, root, 6, size=300)
    for model in MODELS:
        assert fs.crash(model, 7).fingerprint() == fs.crash(model, 7).fingerprint()


def test_materialise_writes_the_files_and_directories(fs, root, tmp_path):
    create(fs, root, "d/a", b"data", sync=True, sync_dir=True)
    out = fs.crash("drop_unsynced").materialise(tmp_path / "out")
    assert (out / "d" / "a").read_bytes() == b"data"


# --- a store under FaultFS: the LMDB model and the mutation switch ------------------------


def open_store(root, fs, **options):
    return safepoint.open(root, fs=fs, segment_bytes=4096, checkpoint_bytes=None, **options)


def test_lmdb_commit_is_durable_when_it_returns(root, tmp_path):
    fs = FaultFS(root)
    with open_store(root, fs) as db:
        db.put(b"a", b"1")
        db.checkpoint()
        db.put(b"b", b"2")
    fs.close()
    out = fs.crash("drop_unsynced").materialise(tmp_path / "out")
    with safepoint.open(out) as db:
        assert db.recovery.base_lsn == 1 and dict(db.items()) == {b"a": b"1", b"b": b"2"}


def test_crash_before_an_lmdb_commit_keeps_the_previous_base_image(root, tmp_path):
    fs = FaultFS(root)
    with open_store(root, fs) as db:
        db.put(b"a", b"1")
        db.checkpoint()
        db.put(b"b", b"2")
        mark = len(fs.trace)
        db.checkpoint()
    fs.close()
    commit = next(
        i for i, ev in enumerate(fs.trace) if i >= mark and type(ev).__name__ == "LmdbCommit"
    )
    out = fs.crash("drop_unsynced", at=commit).materialise(tmp_path / "out")
    with safepoint.open(out) as db:
        assert db.recovery.base_lsn == 1 and db.get(b"b") == b"2"


def test_mutation_switch_skips_only_log_segment_fsyncs(root):
    fs = FaultFS(root, lose_log_fsyncs=True)
    with open_store(root, fs) as db:
        db.put(b"a", b"1")
    fs.close()
    names = [type(ev).__name__ for ev in fs.trace]
    renamed = names.index("Rename")
    segment = fs.trace[renamed].node
    syncs = [
        i for i, ev in enumerate(fs.trace) if type(ev).__name__ == "Sync" and ev.node == segment
    ]
    assert syncs and max(syncs) < renamed  # the header's, as prepared.tmp; none after


def test_without_the_switch_a_committed_put_survives_a_power_loss(root, tmp_path):
    fs = FaultFS(root)
    db = open_store(root, fs)
    db.put(b"a", b"1")
    out = fs.crash("drop_unsynced").materialise(tmp_path / "out")
    db.close()
    fs.close()
    with safepoint.open(out) as again:
        assert again.get(b"a") == b"1"


def test_with_the_switch_a_committed_put_is_lost_in_a_power_loss(root, tmp_path):
    fs = FaultFS(root, lose_log_fsyncs=True)
    db = open_store(root, fs)
    db.put(b"a", b"1")
    out = fs.crash("drop_unsynced").materialise(tmp_path / "out")
    db.close()
    fs.close()
    with safepoint.open(out) as again:
        assert again.get(b"a") is None


# --- injected failures on plain files ------------------------------------------------------


def test_failed_fsync_that_dropped_the_pages_never_makes_those_writes_durable(fs, root):
    create(fs, root, "d/a", b"", sync=True, sync_dir=True)
    fs.failures.fail_fsync(1)
    f = fs.open(str(root / "d/a"), write=True)
    f.write_at(b"lost", 0)
    with pytest.raises(OSError) as info:
        f.sync()
    assert info.value.errno == errno.EIO
    f.write_at(b"kept", 4)
    f.sync()
    f.close()
    assert files_after(fs)["d/a"] == bytes(4) + b"kept"


def test_fsync_failing_after_the_data_reached_the_disk_keeps_the_data(fs, root):
    create(fs, root, "d/a", b"", sync=True, sync_dir=True)
    fs.failures.fail_fsync(1, reached_disk=True)
    f = fs.open(str(root / "d/a"), write=True)
    f.write_at(b"durable", 0)
    with pytest.raises(OSError):
        f.sync()
    f.close()
    assert files_after(fs)["d/a"] == b"durable"


def test_nth_fsync_counts_only_matching_files(fs, root):
    create(fs, root, "d/a", b"", sync=True, sync_dir=True)
    create(fs, root, "d/b", b"", sync=True, sync_dir=True)
    fs.failures.fail_fsync(2, match="d/b")
    for _ in range(3):
        append(fs, root, "d/a", b"x", sync=True)
    append(fs, root, "d/b", b"y", sync=True)
    with pytest.raises(OSError):
        append(fs, root, "d/b", b"z", sync=True)


def test_directory_fsync_fails_only_when_asked(fs, root):
    fs.failures.fail_fsync(1, dirs=True, match="d")
    create(fs, root, "d/a", b"x", sync=True)
    with pytest.raises(OSError):
        fs.sync_dir(str(root / "d"))
    fs.sync_dir(str(root / "d"))


def test_short_writes_still_write_everything(fs, root):
    fs.failures.short_writes(7)
    create(fs, root, "d/a", bytes(range(256)) * 4, sync=True, sync_dir=True)
    assert (root / "d" / "a").read_bytes() == bytes(range(256)) * 4
    assert files_after(fs)["d/a"] == bytes(range(256)) * 4
    assert fs.failures.short_writes_made > 100


def test_full_disk_cuts_a_write_short_then_fails_it(fs, root):
    create(fs, root, "d/a", b"", sync=True, sync_dir=True)
    fs.failures.disk_full_after(10)
    f = fs.open(str(root / "d/a"), write=True)
    with pytest.raises(OSError) as info:
        f.write_at(b"x" * 25, 0)
    f.close()
    assert info.value.errno == errno.ENOSPC
    assert os.path.getsize(root / "d" / "a") == 10


def test_overwriting_needs_no_space_on_a_full_disk(fs, root):
    create(fs, root, "d/a", bytes(100), sync=True, sync_dir=True)
    fs.failures.disk_full_after(0)
    f = fs.open(str(root / "d/a"), write=True)
    f.write_at(b"y" * 100, 0)
    with pytest.raises(OSError):
        f.write_at(b"z", 100)
    f.close()


def test_creating_a_file_on_a_full_disk_fails(fs, root):
    fs.failures.disk_full_after(0)
    with pytest.raises(OSError) as info:
        fs.open(str(root / "d/new"), write=True, create=True)
    assert info.value.errno == errno.ENOSPC


def test_freeing_space_lets_writes_through_again(fs, root):
    fs.failures.disk_full_after(0)
    fs.failures.free_space()
    create(fs, root, "d/a", b"room again", sync=True)
    assert (root / "d" / "a").read_bytes() == b"room again"


# Error paths


def test_unknown_crash_model_is_refused_with_the_list(fs):
    with pytest.raises(ValueError, match="torn_write"):
        fs.crash("meteor_strike")


def test_fsync_fault_needs_a_positive_count(fs):
    with pytest.raises(ValueError, match="nth"):
        fs.failures.fail_fsync(0)


def test_disk_full_needs_a_byte_count_of_zero_or_more(fs):
    with pytest.raises(ValueError, match="nbytes"):
        fs.failures.disk_full_after(-1)


def test_short_writes_need_at_least_one_byte(fs):
    with pytest.raises(ValueError, match="max_bytes"):
        fs.failures.short_writes(0)
