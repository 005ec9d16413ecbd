"""Model-based test: the store and a dict run through the same operations.

Every rule applies one operation to both; after every step the whole store
(ordered ``items()``, ``len``) must equal the model, and so must a reopened
store, a read-only view (as of its open) and a store recovered after a simulated SIGKILL: with sync="always"
every commit that returned is in the log, so nothing may be lost and nothing
invented.  Small segments force rollovers; a small ``checkpoint_bytes`` makes
background checkpoints run between (and during) the steps.

Under HYPOTHESIS_PROFILE=ci the machine runs 500 examples (half the profile's
``max_examples``; tests/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import tempfile

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    precondition,
    rule,
)

import safepoint
from safepoint.format import MAX_KEY_SIZE

# --- strategies --------------------------------------------------------------------

PREFIXES = [b"sim/", b"sim/a", b"sim/b/", b"\x00", b"\xff", b"\xff\xff", b"k"]

str_keys = st.text(min_size=1, max_size=12).filter(
    lambda s: 0 < len(s.encode("utf-8")) <= MAX_KEY_SIZE
)
binary_keys = st.binary(min_size=1, max_size=12)
prefixed_keys = st.builds(
    lambda p, s: p + s, st.sampled_from(PREFIXES), st.binary(min_size=0, max_size=3)
)
# Long keys share 509 bytes so that they collide and sort next to each other.
max_length_keys = st.builds(
    lambda p, s: (p * MAX_KEY_SIZE)[: MAX_KEY_SIZE - 2] + s,
    st.sampled_from([b"L", b"\xff"]),
    st.binary(min_size=2, max_size=2),
)
small_pool_keys = st.sampled_from([b"a", b"b", b"sim/1", "sim/2", "é", b"\x00\x00", b"\xff"])
keys = st.one_of(small_pool_keys, prefixed_keys, str_keys, binary_keys, max_length_keys)
values = st.one_of(
    st.binary(max_size=40),
    # Big values, built from few draws (long random draws would exhaust
    # hypothesis's buffer and end the run after a few steps): two of them
    # overflow the smallest segments and force a rollover.
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=4), st.integers(500, 1500)),
)
bounds = st.one_of(st.none(), st.sampled_from(PREFIXES), binary_keys)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), keys, values),
        st.tuples(st.just("delete"), keys, st.none()),
    ),
    min_size=1,
    max_size=8,
)


def as_key(key: bytes | str) -> bytes:
    """The bytes a key is stored under (str keys are UTF-8)."""
    return key.encode("utf-8") if isinstance(key, str) else key


def in_range(key: bytes, prefix: bytes | None, start: bytes | None, stop: bytes | None) -> bool:
    """Whether the model's ``key`` belongs to a prefix/[start, stop) query."""
    if prefix is not None and not key.startswith(prefix):
        return False
    if start is not None and key < start:
        return False
    return stop is None or key < stop


class Aborted(Exception):
    """Raised inside a transaction block to abort it."""


# --- the machine ---------------------------------------------------------------------


class StoreMachine(RuleBasedStateMachine):
    """safepoint.open(...) against a dict, compared after every step."""

    touched = Bundle("touched")

    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="sp-machine-")
        self.path = os.path.join(self.dir, "store.sp")
        self.model: dict[bytes, bytes] = {}
        self.db: safepoint.Store | None = None
        self.options: dict[str, object] = {}
        self.steps = 0
        self.segments_seen: set[str] = set()

    @initialize(
        segment_bytes=st.sampled_from([4096, 8192, 65536]),
        checkpoint_bytes=st.sampled_from([None, 1024, 8192, 64 << 20]),
    )
    def open_store(self, segment_bytes: int, checkpoint_bytes: int | None) -> None:
        self.options = {
            "sync": "always",
            "segment_bytes": segment_bytes,
            "checkpoint_bytes": checkpoint_bytes,
        }
        self.db = safepoint.open(self.path, **self.options)

    def teardown(self) -> None:
        try:
            if self.db is not None:
                # Coverage of the run, for --hypothesis-show-statistics.
                checkpoints = self.db.stats()["checkpoints"]
                event(f"checkpoints: {min(checkpoints, 3)}{'+' if checkpoints >= 3 else ''}")
                event(f"segments: {min(len(self.segments_seen), 3)}+")
                event(f"steps: {self.steps // 10 * 10}+")
                event(f"keys at the end: {min(len(self.model) // 5 * 5, 20)}+")
                self.db.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- helpers ---------------------------------------------------------------

    def check_key(self, key: bytes | str) -> None:
        k = as_key(key)
        assert self.db.get(key) == self.model.get(k)
        assert (key in self.db) == (k in self.model)

    def check_all(self) -> None:
        assert list(self.db.items()) == sorted(self.model.items())
        assert len(self.db) == len(self.model)

    # --- writes ------------------------------------------------------------------

    @rule(target=touched, key=keys, value=values)
    def put(self, key: bytes | str, value: bytes) -> bytes | str:
        self.db.put(key, value)
        self.model[as_key(key)] = value
        self.check_key(key)
        return key

    @rule(key=st.one_of(consumes(touched), keys))
    def delete(self, key: bytes | str) -> None:
        self.db.delete(key)
        self.model.pop(as_key(key), None)
        self.check_key(key)

    @rule(key=touched, value=values)
    def overwrite_with_setitem(self, key: bytes | str, value: bytes) -> None:
        self.db[key] = value
        self.model[as_key(key)] = value
        assert self.db[key] == value

    @rule(pairs=st.lists(st.tuples(keys, values), max_size=6))
    def update(self, pairs: list[tuple[bytes | str, bytes]]) -> None:
        lsn = self.db.stats()["lsn"]
        self.db.update(pairs)
        for k, v in pairs:
            self.model[as_key(k)] = v
        # One transaction, one record (or none if there was nothing to write).
        assert self.db.stats()["lsn"] == lsn + (1 if pairs else 0)
        for k, _ in pairs:
            self.check_key(k)

    @rule(ops=ops)
    def transaction(self, ops: list[tuple[str, bytes | str, bytes | None]]) -> None:
        seen = dict(self.model)
        with self.db.transaction() as txn:
            for kind, key, value in ops:
                if kind == "put":
                    txn.put(key, value)
                    seen[as_key(key)] = value
                else:
                    txn.delete(key)
                    seen.pop(as_key(key), None)
                # Reads its own writes, over the committed state.
                assert txn.get(key) == seen.get(as_key(key))
        self.model = seen
        for _, key, _ in ops:
            self.check_key(key)

    @rule(ops=ops)
    def aborted_transaction(self, ops: list[tuple[str, bytes | str, bytes | None]]) -> None:
        lsn = self.db.stats()["lsn"]
        try:
            with self.db.transaction() as txn:
                for kind, key, value in ops:
                    if kind == "put":
                        txn.put(key, value)
                    else:
                        txn.delete(key)
                raise Aborted
        except Aborted:
            pass
        assert self.db.stats()["lsn"] == lsn
        for _, key, _ in ops:
            self.check_key(key)

    # --- reads ---------------------------------------------------------------------

    @rule(prefix=bounds, start=bounds, stop=bounds)
    def range_query(self, prefix: bytes | None, start: bytes | None, stop: bytes | None) -> None:
        expected = sorted((k, v) for k, v in self.model.items() if in_range(k, prefix, start, stop))
        assert list(self.db.items(prefix, start=start, stop=stop)) == expected
        assert list(self.db.keys(prefix, start=start, stop=stop)) == [k for k, _ in expected]
        assert list(self.db.values(prefix, start=start, stop=stop)) == [v for _, v in expected]

    @rule(key=keys, value=values)
    def readonly_view_is_a_snapshot(self, key: bytes | str, value: bytes) -> None:
        # A view beside the writer shows the state as of its open, even after
        # later commits are checkpointed into the base image under it.
        before = sorted(self.model.items())
        with safepoint.open(self.path, readonly=True) as view:
            assert list(view.items()) == before
            self.db.put(key, value)
            self.model[as_key(key)] = value
            self.db.checkpoint()
            assert list(view.items()) == before
            assert len(view) == len(before)
            assert view.get(key) == dict(before).get(as_key(key))

    # --- lifecycle ---------------------------------------------------------------------

    @rule()
    def checkpoint(self) -> None:
        info = self.db.checkpoint()
        assert info.lsn == self.db.stats()["lsn"]
        assert self.db.stats()["checkpoint_lsn"] >= info.lsn

    @rule(checkpoint_bytes=st.sampled_from([None, 1024, 8192]))
    def reopen(self, checkpoint_bytes: int | None) -> None:
        lsn = self.db.stats()["lsn"]
        self.db.close()
        self.options["checkpoint_bytes"] = checkpoint_bytes
        self.db = safepoint.open(self.path, **self.options)
        assert self.db.stats()["lsn"] == lsn
        assert self.db.recovery.clean
        self.check_all()

    @rule()
    def crash(self) -> None:
        lsn = self.db.stats()["lsn"]
        self.db._simulate_kill()
        self.db = safepoint.open(self.path, **self.options)
        # Every commit returned with sync="always": none may be missing.
        assert self.db.stats()["lsn"] == lsn
        assert self.db.recovery.last_lsn == lsn
        self.check_all()

    @precondition(lambda self: self.db is not None and len(self.model) > 0)
    @rule()
    def popitem(self) -> None:
        k, v = self.db.popitem()
        assert self.model.pop(k) == v
        assert k == min(self.model.keys() | {k})

    @invariant()
    def store_equals_model(self) -> None:
        if self.db is not None:
            self.check_all()
            self.steps += 1
            self.segments_seen.update(
                n for n in os.listdir(os.path.join(self.path, "wal")) if n.endswith(".wal")
            )


EXAMPLES = max(50, settings.default.max_examples // 2)  # 500 under "ci", 50 under "dev"

StoreMachine.TestCase.settings = settings(
    settings.default,
    max_examples=EXAMPLES,
    stateful_step_count=40,
)
test_store_matches_a_dict_model = StoreMachine.TestCase
