"""Workflows: the resumable step loop, its signal path, and ML training state."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import safepoint
from safepoint.workflows import TrainState, load_state, save_state

OPTIONS = {"segment_bytes": 1 << 16}


def open_store(path, **options):  # type: ignore[no-untyped-def]
    return safepoint.open(path, **{**OPTIONS, **options})


@pytest.fixture
def db(tmp_path):
    with open_store(tmp_path / "s.sp") as store:
        yield store


def run_sum(db: safepoint.Store, total: int, fail_at: int | None = None) -> None:
    """Steps that add their index to ``sum``; raises inside step ``fail_at``."""
    for step in db.steps(total):
        step.put(b"sum", b"%d" % (int(step.get(b"sum", b"0")) + step.index))
        if step.index == fail_at:
            raise RuntimeError("crash in the middle of a step")


# --- the step loop ----------------------------------------------------------------------


def test_loop_runs_every_step_and_commits_each(db):
    run_sum(db, 10)
    assert db[b"sum"] == b"45"
    assert db[b"safepoint/steps"] == b"10"


def test_loop_reports_completion(db):
    loop = db.steps(3)
    for _ in loop:
        pass
    assert (loop.start, loop.next_step, loop.completed, loop.interrupted) == (0, 3, True, None)


def test_failed_step_is_not_committed_and_the_loop_resumes_there(db):
    with pytest.raises(RuntimeError):
        run_sum(db, 10, fail_at=6)
    assert db[b"safepoint/steps"] == b"6"
    assert db[b"sum"] == b"15"
    loop = db.steps(10)
    assert loop.start == 6
    run_sum(db, 10)
    assert db[b"sum"] == b"45"


def test_loop_resumes_after_a_reopen(tmp_path):
    with open_store(tmp_path / "s") as db, pytest.raises(RuntimeError):
        run_sum(db, 10, fail_at=4)
    with open_store(tmp_path / "s") as db:
        assert [s.index for s in db.steps(6)] == [4, 5]


def test_break_leaves_the_current_step_uncommitted(db):
    for step in db.steps(10):
        step.put(b"seen", b"%d" % step.index)
        if step.index == 3:
            break
    assert db[b"seen"] == b"2"
    assert db.steps(10).start == 3


def test_completed_loop_yields_nothing(db):
    run_sum(db, 5)
    assert list(db.steps(5)) == []
    assert db.steps(5).completed


def test_loop_can_be_extended_to_a_larger_total(db):
    run_sum(db, 5)
    run_sum(db, 8)
    assert db[b"sum"] == b"28"


def test_open_ended_loop_runs_until_the_body_stops_it(db):
    for step in db.steps(None):
        step.put(b"last", b"%d" % step.index)
        if step.index == 20:
            break
    assert db[b"last"] == b"19"


def test_step_reads_its_own_writes_first(db):
    db[b"k"] = b"old"
    for step in db.steps(1):
        step[b"k"] = b"new"
        assert step[b"k"] == b"new"
        del step[b"k"]
        assert b"k" not in step
        assert db[b"k"] == b"old"
    assert b"k" not in db


def test_step_is_usable_as_an_index(db):
    values = [10, 20, 30]
    assert [values[step] for step in db.steps(3)] == values


def test_step_values_go_through_the_store_codec(tmp_path):
    with open_store(tmp_path / "s", codec="pickle") as db:
        for step in db.steps(3):
            step.put("history", [*step.get("history", []), step.index])
        assert db["history"] == [0, 1, 2]


def test_counter_key_can_be_chosen(db):
    run = db.steps(2, key="sim/a/steps")
    list(run)
    assert db[b"sim/a/steps"] == b"2"
    assert db.steps(4, key="sim/b/steps").start == 0


def test_each_step_is_one_transaction(db):
    for step in db.steps(3):
        step.put(b"a", b"1")
        step.put(b"b", b"2")
    assert db.stats()["lsn"] == 3


# --- signals -----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_lets_the_current_step_commit_then_stops_the_loop(db, sig):
    loop = db.steps(10)
    for step in loop:
        step.put(b"done", b"%d" % step.index)
        if step.index == 2:
            signal.raise_signal(sig)
            step.put(b"after-signal", b"yes")
    assert (loop.interrupted, loop.next_step, loop.completed) == (sig, 3, False)
    assert db[b"done"] == b"2" and db[b"after-signal"] == b"yes"


def test_signal_handlers_are_restored_after_the_loop(db):
    before = signal.getsignal(signal.SIGINT)
    list(db.steps(2))
    assert signal.getsignal(signal.SIGINT) is before


@pytest.fixture
def python_sigint():
    """SIGINT raising KeyboardInterrupt, as in an interactive run.

    A shell starts a background job (``cmd &``) with SIGINT ignored, and
    Python then leaves it ignored: CI launched that way must not change what
    these tests see."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def test_second_signal_interrupts_at_once(db, python_sigint):
    with pytest.raises(KeyboardInterrupt):
        for step in db.steps(10):
            step.put(b"x", b"%d" % step.index)
            if step.index == 1:
                signal.raise_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
    assert db.steps(10).start == 1


def test_without_signal_handling_sigint_interrupts_the_step(db, python_sigint):
    with pytest.raises(KeyboardInterrupt):
        for step in db.steps(10, handle_signals=False):
            if step.index == 1:
                signal.raise_signal(signal.SIGINT)
    assert db.steps(10).start == 1


def test_loop_in_another_thread_runs_without_signal_handling(db):
    loops = []
    t = threading.Thread(target=lambda: loops.append(db.steps(3)))
    t.start()
    t.join()
    assert loops[0].handle_signals is False
    assert [s.index for s in loops[0]] == [0, 1, 2]


SIGTERM_CHILD = textwrap.dedent(
    """
    import sys, time, safepoint
    with safepoint.open(sys.argv[1], segment_bytes=1 << 16) as db:
        loop = db.steps(1000)
        for step in loop:
            print("start", step.index, flush=True)
            time.sleep(0.05)
            step.put(b"sum", b"%d" % (int(step.get(b"sum", b"0")) + step.index))
        print("stopped", loop.interrupted, loop.next_step, flush=True)
    """
)


def test_sigterm_from_outside_finishes_the_step_and_exits_cleanly(tmp_path):
    store = str(tmp_path / "s")
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGTERM_CHILD, store], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("start 3"):
            proc.send_signal(signal.SIGTERM)
            break
    out = proc.stdout.read()
    assert proc.wait(60) == 0
    _, signum, next_step = out.strip().splitlines()[-1].split()
    assert int(signum) == signal.SIGTERM and int(next_step) >= 4
    with open_store(store) as db:
        n = int(db[b"safepoint/steps"])
        assert n == int(next_step)
        assert db[b"sum"] == b"%d" % sum(range(n))


SIGKILL_CHILD = textwrap.dedent(
    """
    import os, signal, sys, safepoint
    with safepoint.open(sys.argv[1], segment_bytes=1 << 16) as db:
        for step in db.steps(50):
            step.put(b"sum", b"%d" % (int(step.get(b"sum", b"0")) + step.index))
            if step.index == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_loop_resumes_at_the_first_uncommitted_step_after_kill_9(tmp_path):
    store = str(tmp_path / "s")
    for kill_at in (7, 23):
        rc = subprocess.run([sys.executable, "-c", SIGKILL_CHILD, store, str(kill_at)]).returncode
        assert rc == -signal.SIGKILL
        with open_store(store) as db:
            assert db.steps(50).start == kill_at
            assert db[b"sum"] == b"%d" % sum(range(kill_at))
    with open_store(store) as db:
        run_sum(db, 50)
        assert db[b"sum"] == b"%d" % sum(range(50))


# --- ML training state -------------------------------------------------------------------


def model() -> dict[str, np.ndarray]:
    r = np.random.default_rng(0)
    return {
        "layer1.weight": r.standard_normal((4, 3)).astype(np.float32),
        "layer1.bias": np.zeros(4, dtype=np.float16),
        "embed": r.integers(0, 1 << 40, size=(2, 5), dtype=np.int64),
        "mask": np.array([True, False]),
        "scale": np.array(2.5),
        "empty": np.zeros((0, 3), dtype=np.float64),
    }


def assert_same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert list(a) == list(b)
    for k in a:
        assert (a[k].dtype, a[k].shape) == (b[k].dtype, b[k].shape), k
        assert a[k].tobytes() == b[k].tobytes(), k


def test_state_dict_round_trips_exactly(db):
    save_state(db, "run", state_dict=model(), step=7)
    got = load_state(db, "run")
    assert isinstance(got, TrainState)
    assert got.step == 7
    assert_same_arrays(got.state_dict, model())


def test_optimizer_tree_round_trips_with_its_types(db):
    optimizer = {
        "state": {0: {"step": np.float32(12.0), "exp_avg": np.ones(3)}, 1: {"step": 3}},
        "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0, 1], "name": None}],
        "blob": b"\x00\xff",
        "nan": float("nan"),
    }
    save_state(db, "run", optimizer=optimizer)
    got = load_state(db, "run").optimizer
    assert got["state"][0]["step"] == np.float32(12.0)
    assert type(got["state"][0]["step"]) is np.float32
    assert np.array_equal(got["state"][0]["exp_avg"], np.ones(3))
    assert got["state"][1] == {"step": 3}
    assert got["param_groups"] == optimizer["param_groups"]
    assert type(got["param_groups"][0]["betas"]) is tuple
    assert got["blob"] == b"\x00\xff"
    assert np.isnan(got["nan"])


def test_rng_states_restore_the_exact_sequences(db):
    gens = {
        "python": random.Random(1),
        "pcg": np.random.default_rng(2),
        "mt": np.random.Generator(np.random.MT19937(3)),
        "legacy": np.random.RandomState(4),
    }
    for g in gens.values():
        g.random()
    save_state(db, "run", rng=gens)

    def draw() -> list[float]:
        return [float(g.random()) for g in gens.values() for _ in range(5)]

    expected = draw()
    load_state(db, "run", rng=gens)
    assert draw() == expected


def test_global_python_rng_is_restored(db):
    random.seed(5)
    save_state(db, "run", rng=random)
    expected = [random.random() for _ in range(3)]
    load_state(db, "run", rng=random)
    assert [random.random() for _ in range(3)] == expected


def test_loaded_arrays_are_writable_copies(db):
    save_state(db, "run", state_dict={"w": np.arange(3.0)})
    w = load_state(db, "run").state_dict["w"]
    w += 1
    assert list(w) == [1.0, 2.0, 3.0]


def test_save_state_is_one_transaction(db):
    before = db.stats()["lsn"]
    save_state(db, "run", state_dict=model(), optimizer={"lr": 0.1}, rng=random, step=1)
    assert db.stats()["lsn"] == before + 1


def test_saving_again_replaces_everything_under_the_prefix(db):
    save_state(db, "run", state_dict=model(), step=1)
    save_state(db, "run", state_dict={"only": np.ones(2)}, step=2)
    got = load_state(db, "run")
    assert list(got.state_dict) == ["only"] and got.step == 2
    assert len(list(db.keys(prefix=b"run/arrays/"))) == 1


def test_other_prefixes_are_left_alone(db):
    save_state(db, "a", state_dict={"w": np.ones(1)})
    save_state(db, "ab", state_dict={"w": np.zeros(1)})
    save_state(db, "a", state_dict={})
    assert load_state(db, "ab").state_dict["w"][0] == 0.0


def test_state_does_not_depend_on_the_store_codec(tmp_path):
    with open_store(tmp_path / "s", codec="json") as db:
        save_state(db, "run", state_dict=model(), step=3)
        assert_same_arrays(load_state(db, "run").state_dict, model())


def test_load_state_of_nothing_is_none(db):
    assert load_state(db, "missing") is None


def test_state_is_restored_by_a_snapshot_restore(db):
    save_state(db, "run", state_dict={"w": np.ones(2)}, step=1)
    db.save("good")
    save_state(db, "run", state_dict={"w": np.full(2, np.nan)}, step=2)
    db.restore("good")
    got = load_state(db, "run")
    assert got.step == 1 and list(got.state_dict["w"]) == [1.0, 1.0]


# Error paths


def test_negative_total_is_refused(db):
    with pytest.raises(ValueError, match="total must not be negative"):
        db.steps(-1)


def test_counter_key_holding_other_data_is_refused(db):
    db[b"safepoint/steps"] = b"not a number"
    with pytest.raises(ValueError, match="not a step counter"):
        db.steps(3)


def test_signal_handling_outside_the_main_thread_is_refused(db):
    errors = []

    def body() -> None:
        try:
            db.steps(3, handle_signals=True)
        except ValueError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert errors and "main thread" in errors[0]


def test_steps_on_a_readonly_view_raise_readonly_error(tmp_path):
    open_store(tmp_path / "s").close()
    with safepoint.open(tmp_path / "s", readonly=True) as view:
        with pytest.raises(safepoint.ReadOnlyError):
            view.steps(3)


def test_unsupported_leaf_is_refused_naming_its_path(db):
    with pytest.raises(TypeError, match="state_dict/w: cannot save a object"):
        save_state(db, "run", state_dict={"w": object()})
    assert load_state(db, "run") is None


def test_object_array_is_refused(db):
    with pytest.raises(TypeError, match="object arrays"):
        save_state(db, "run", state_dict={"w": np.array([object()])})


def test_unknown_rng_is_refused(db):
    with pytest.raises(TypeError, match="rng: cannot take the state"):
        save_state(db, "run", rng=object())


def test_loading_into_different_rngs_is_refused(db):
    save_state(db, "run", rng={"a": random.Random(1)})
    with pytest.raises(ValueError, match="saved states are for"):
        load_state(db, "run", rng={"b": random.Random(1)})
