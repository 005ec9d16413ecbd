"""Workflows: resumable step loops for simulations, and ML training state.

``db.steps(total)`` runs a loop that survives crashes::

    for step in db.steps(1000):
        state = advance(step.get("state", initial), step.index)
        step.put("state", state)
    # each step's writes and the step counter commit as one transaction
    # when its iteration ends: after kill -9 the loop resumes at the first
    # step that did not commit, from exactly the state the last one left

``save_state`` / ``load_state`` keep a model's arrays, the optimizer's
values, RNG states and the step in one atomic commit (docs/ml.md).
"""

from __future__ import annotations

import base64
import json
import operator
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from .keys import key_range, to_key
from .values import NumpyCodec

if TYPE_CHECKING:
    from .store import Store

DEFAULT_STEPS_KEY = b"safepoint/steps"
_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_MISSING = object()


# --- the resumable loop ----------------------------------------------------------


class Step:
    """One step of a ``steps()`` loop: its index and the writes it commits.

    Writes are buffered and commit together with the step counter when the
    loop body finishes (the loop advances).  An exception or a ``break`` in
    the body leaves them uncommitted: that step runs again next time.  Reads
    see this step's writes over the store's committed state.
    """

    __slots__ = ("index", "_store", "_writes")

    def __init__(self, store: Store, index: int) -> None:
        self.index = index
        self._store = store
        self._writes: dict[bytes, bytes | None] = {}

    def put(self, key: Any, value: Any) -> None:
        """Set ``key`` to ``value`` when this step commits."""
        self._writes[to_key(key)] = self._store._encode(value)

    def delete(self, key: Any) -> None:
        """Remove ``key`` when this step commits; no error if it is missing."""
        self._writes[to_key(key)] = None

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key`` as this step sees it (its own writes first)."""
        k = to_key(key)
        raw = self._writes[k] if k in self._writes else self._store._lookup(k)
        return default if raw is None else self._store._decode(raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.put(key, value)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __delitem__(self, key: Any) -> None:
        if self.get(key, _MISSING) is _MISSING:
            raise KeyError(key)
        self.delete(key)

    def __contains__(self, key: object) -> bool:
        return self.get(key, _MISSING) is not _MISSING

    def __index__(self) -> int:
        return self.index

    def __int__(self) -> int:
        return self.index

    def __repr__(self) -> str:
        return f"<Step {self.index}: {len(self._writes)} pending writes>"

    def _commit(self, counter_key: bytes) -> None:
        writes = dict(self._writes)
        writes[counter_key] = str(self.index + 1).encode()
        self._store._commit(writes)


class StepLoop:
    """The iterable ``Store.steps`` returns; see there.

    Attributes: ``start`` (the first step this run executes), ``next_step``
    (the first step not committed), ``completed`` (all ``total`` steps are
    committed) and ``interrupted`` (the signal that stopped the loop, or None).
    """

    def __init__(
        self,
        store: Store,
        total: int | None,
        *,
        key: Any = DEFAULT_STEPS_KEY,
        handle_signals: bool | None = None,
    ) -> None:
        if total is not None:
            if isinstance(total, bool):
                raise TypeError("total must be an int or None, not bool")
            total = operator.index(total)
            if total < 0:
                raise ValueError(f"total must not be negative, not {total}")
        in_main = threading.current_thread() is threading.main_thread()
        if handle_signals and not in_main:
            raise ValueError("handle_signals=True needs the main thread (Python's signal rule)")
        store._check_writable()
        self._store = store
        self.total = total
        self.key = to_key(key)
        self.handle_signals = in_main if handle_signals is None else bool(handle_signals)
        raw = store._lookup(self.key)
        self.start = self.next_step = _parse_counter(raw, self.key)
        self.completed = total is not None and self.next_step >= total
        self.interrupted: int | None = None
        self._previous: dict[int, Any] = {}

    def __iter__(self) -> Iterator[Step]:
        self._install()
        try:
            i = self.next_step
            while self.total is None or i < self.total:
                if self.interrupted is not None:
                    return
                step = Step(self._store, i)
                yield step
                # Reached only when the body finished: an exception or a
                # break leaves this generator suspended and the step unsaved.
                step._commit(self.key)
                i += 1
                self.next_step = i
            self.completed = True
        finally:
            self._uninstall()

    def _install(self) -> None:
        if not self.handle_signals:
            return
        for sig in _SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def _uninstall(self) -> None:
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: the step in progress finishes and commits, then the
        # loop stops.  A second signal gets the previous handler (Ctrl-C
        # twice still interrupts at once).
        self.interrupted = signum
        self._uninstall()


def _parse_counter(raw: bytes | None, key: bytes) -> int:
    if raw is None:
        return 0
    try:
        return int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(
            f"key {key!r} holds {raw[:40]!r}, not a step counter; pass steps(key=...) "
            "to keep the counter elsewhere"
        ) from None


# --- ML training state -------------------------------------------------------------

STATE_FORMAT = 1
_NUMPY = NumpyCodec()


@dataclass
class TrainState:
    """What ``load_state`` returns.  Arrays are writable copies."""

    step: int | None
    state_dict: Any
    optimizer: Any
    rng: Any  # the saved RNG states (already applied to ``rng=`` objects)
    extra: Any


def save_state(
    db: Store,
    prefix: Any,
    *,
    state_dict: Any = None,
    optimizer: Any = None,
    rng: Any = None,
    step: int | None = None,
    extra: Any = None,
) -> int | None:
    """Save training state under ``prefix`` in one transaction; return its LSN.

    ``state_dict`` and ``optimizer`` are trees of dicts, lists and tuples
    whose leaves are numpy arrays or scalars, str, int, float, bool, None or
    bytes (a model's ``state_dict`` converted to numpy; see docs/ml.md for
    PyTorch).  ``rng`` is an RNG or a dict of them: ``random`` (the module),
    a ``random.Random``, a numpy ``Generator``, ``RandomState`` or bit
    generator; their states are saved.  Everything saved before under
    ``prefix`` is replaced in the same transaction, so after a crash the
    store holds the old state or the new one, never a mix.  No pickle.
    """
    arrays: list[bytes] = []
    body = {
        "format": STATE_FORMAT,
        "step": None if step is None else operator.index(step),
        "state_dict": _encode_tree(state_dict, "state_dict", arrays),
        "optimizer": _encode_tree(optimizer, "optimizer", arrays),
        "rng": _encode_tree(_rng_states(rng), "rng", arrays),
        "extra": _encode_tree(extra, "extra", arrays),
    }
    p = _prefix(prefix)
    writes: dict[bytes, bytes | None] = {p + b"state": json.dumps(body).encode()}
    for i, data in enumerate(arrays):
        writes[p + b"arrays/%08d" % i] = data
    # Raw bytes, past the store's codec: the layout does not depend on it.
    db._begin_write()
    try:
        lo, hi = key_range(p, None, None)
        for k, _ in list(db._snapshot_iter(lo, hi)):
            if k not in writes:
                writes[k] = None
        lsn = db._append_locked(writes)
    finally:
        db._end_write()
    if lsn is not None:
        db._finish(lsn)
    return lsn


def load_state(db: Store, prefix: Any, *, rng: Any = None) -> TrainState | None:
    """The state ``save_state`` saved under ``prefix``, or None if there is none.

    If ``rng`` is given (the same objects, or dict of them, as at save), their
    states are set in place, so they continue exactly where they were saved.
    """
    p = _prefix(prefix)
    raw = db._lookup(p + b"state")
    if raw is None:
        return None
    body = json.loads(raw)
    if body.get("format") != STATE_FORMAT:
        raise ValueError(f"state under {p!r} has format {body.get('format')!r}, not 1")

    def array(i: int) -> Any:
        data = db._lookup(p + b"arrays/%08d" % i)
        if data is None:
            raise KeyError(f"state under {p!r} lacks array {i}")
        return _NUMPY.decode(data).copy()

    states = _decode_tree(body["rng"], array)
    if rng is not None:
        _apply_rng(rng, states)
    return TrainState(
        step=body["step"],
        state_dict=_decode_tree(body["state_dict"], array),
        optimizer=_decode_tree(body["optimizer"], array),
        rng=states,
        extra=_decode_tree(body["extra"], array),
    )


def _prefix(prefix: Any) -> bytes:
    p = to_key(prefix)
    return p if p.endswith(b"/") else p + b"/"


def _encode_tree(tree: Any, path: str, arrays: list[bytes]) -> Any:
    """A JSON skeleton of ``tree``: every JSON object in it is a marker, so
    dict keys of any scalar type, tuples, bytes and arrays come back exactly."""
    np = sys.modules.get("numpy")
    if tree is None or isinstance(tree, (str, bool, int, float)):
        return tree
    if np is not None and isinstance(tree, (np.ndarray, np.generic)):
        arrays.append(_NUMPY.encode(tree))
        kind = "__array__" if isinstance(tree, np.ndarray) else "__scalar__"
        return {kind: len(arrays) - 1}
    if isinstance(tree, Mapping):
        return {
            "__dict__": [
                [_encode_key(k, path), _encode_tree(v, f"{path}/{k}", arrays)]
                for k, v in tree.items()
            ]
        }
    if isinstance(tree, tuple):
        return {"__tuple__": [_encode_tree(v, f"{path}/{i}", arrays) for i, v in enumerate(tree)]}
    if isinstance(tree, list):
        return [_encode_tree(v, f"{path}/{i}", arrays) for i, v in enumerate(tree)]
    if isinstance(tree, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(tree)).decode()}
    raise TypeError(
        f"{path}: cannot save a {type(tree).__name__} (use numpy arrays, scalars, str, bytes, "
        "dicts, lists and tuples; convert tensors with .cpu().numpy())"
    )


def _encode_key(key: Any, path: str) -> Any:
    if key is None or isinstance(key, (str, bool, int, float)):
        return key
    if isinstance(key, tuple):
        return {"__tuple__": [_encode_key(k, path) for k in key]}
    raise TypeError(f"{path}: dict key {key!r} is not a str, int, float, bool, None or tuple")


def _decode_tree(node: Any, array: Any) -> Any:
    if isinstance(node, list):
        return [_decode_tree(v, array) for v in node]
    if not isinstance(node, dict):
        return node
    if "__dict__" in node:
        return {_decode_tree(k, array): _decode_tree(v, array) for k, v in node["__dict__"]}
    if "__tuple__" in node:
        return tuple(_decode_tree(v, array) for v in node["__tuple__"])
    if "__array__" in node:
        return array(node["__array__"])
    if "__scalar__" in node:
        return array(node["__scalar__"])[()]
    if "__bytes__" in node:
        return base64.b64decode(node["__bytes__"])
    raise ValueError(f"unknown marker in saved state: {sorted(node)}")


def _rng_states(rng: Any) -> Any:
    if rng is None:
        return None
    if isinstance(rng, Mapping):
        return {name: _rng_state(obj) for name, obj in rng.items()}
    return _rng_state(rng)


def _rng_state(obj: Any) -> dict[str, Any]:
    if hasattr(obj, "bit_generator"):  # numpy Generator
        return {"kind": "numpy.Generator", "state": obj.bit_generator.state}
    if hasattr(obj, "get_state") and hasattr(obj, "set_state"):  # numpy RandomState
        return {"kind": "numpy.RandomState", "state": obj.get_state(legacy=False)}
    if hasattr(obj, "random_raw") and hasattr(obj, "state"):  # numpy BitGenerator
        return {"kind": "numpy.BitGenerator", "state": obj.state}
    if hasattr(obj, "getstate") and hasattr(obj, "setstate"):  # random, random.Random
        return {"kind": "python", "state": obj.getstate()}
    raise TypeError(f"rng: cannot take the state of a {type(obj).__name__}")


def _apply_rng(rng: Any, states: Any) -> None:
    if isinstance(rng, Mapping):
        if not isinstance(states, dict) or set(states) != set(rng):
            raise ValueError(f"rng: saved states are for {sorted(states or ())}, not {sorted(rng)}")
        for name, obj in rng.items():
            _set_rng(obj, states[name])
    else:
        _set_rng(rng, states)


def _set_rng(obj: Any, saved: Any) -> None:
    if not isinstance(saved, dict) or "kind" not in saved:
        raise ValueError("rng: no single RNG state was saved here")
    kind, state = saved["kind"], saved["state"]
    if kind == "numpy.Generator":
        obj.bit_generator.state = state
    elif kind == "numpy.RandomState":
        obj.set_state(state)
    elif kind == "numpy.BitGenerator":
        obj.state = state
    elif kind == "python":
        obj.setstate(state)
    else:
        raise ValueError(f"rng: unknown saved kind {kind!r}")
