"""The process that tests/crash/test_sigkill.py kills: it commits a
deterministic workload and acknowledges each commit on stdout.

    python child_writer.py STORE serial|checkpoint|threads [THREADS]

* ``serial``: transaction i (continuing after whatever the store holds)
  sets ``counter`` = i and ``k{i % 50}`` = i and deletes ``k{(i + 25) % 50}``.
* ``checkpoint``: the same, while a second thread calls ``db.checkpoint()``
  in a loop, so that kills land inside checkpoints.
* ``threads``: THREADS threads commit at once.  Thread t's transaction n sets
  ``t{t}/counter`` = n, ``t{t}/k{n % 10}`` = n, deletes ``t{t}/k{(n + 5) % 10}``,
  increments the shared ``total`` and sets ``last`` = "t:n".  Per-thread keys
  show each thread's prefix; ``total`` and ``last`` tie the threads to one
  serial order.

The child prints ``ready`` once the store is open, then ``ack i`` (or
``ack t n``) after each commit has returned, flushed at once: with
sync="always" every acknowledged commit must survive the kill.

The parent imports the model functions below, so both sides share one
definition of the workload.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback

SEGMENT_BYTES = 4096  # the smallest the writer accepts: frequent rollovers
CHECKPOINT_BYTES = 6000  # an automatic checkpoint every few dozen commits
KEYS = 50
THREAD_KEYS = 10
OPTIONS = {
    "sync": "always",
    "segment_bytes": SEGMENT_BYTES,
    "checkpoint_bytes": CHECKPOINT_BYTES,
}


# --- the workload, as data ------------------------------------------------------------


def serial_value(i: int) -> bytes:
    """The value transaction ``i`` writes (long enough to fill segments)."""
    return b"%d:" % i * 6


def apply_serial(state: dict[bytes, bytes], i: int) -> None:
    """Serial transaction ``i`` applied to a model state."""
    state[b"counter"] = b"%d" % i
    state[b"k%d" % (i % KEYS)] = serial_value(i)
    state.pop(b"k%d" % ((i + KEYS // 2) % KEYS), None)


def serial_model(j: int) -> dict[bytes, bytes]:
    """The state after serial transactions 1..j."""
    state: dict[bytes, bytes] = {}
    for i in range(1, j + 1):
        apply_serial(state, i)
    return state


def thread_model(t: int, j: int) -> dict[bytes, bytes]:
    """Thread ``t``'s own keys after its transactions 1..j."""
    state: dict[bytes, bytes] = {}
    for n in range(1, j + 1):
        state[b"t%d/counter" % t] = b"%d" % n
        state[b"t%d/k%d" % (t, n % THREAD_KEYS)] = serial_value(n)
        state.pop(b"t%d/k%d" % (t, (n + THREAD_KEYS // 2) % THREAD_KEYS), None)
    return state


# --- the child ------------------------------------------------------------------------------

_out_lock = threading.Lock()


def say(line: str) -> None:
    """One whole line on stdout, flushed before the caller goes on."""
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def commit_serial(db, i: int) -> None:  # type: ignore[no-untyped-def]
    """Commit serial transaction ``i`` as one record (see ``apply_serial``)."""
    with db.transaction() as txn:
        txn.put(b"counter", b"%d" % i)
        txn.put(b"k%d" % (i % KEYS), serial_value(i))
        txn.delete(b"k%d" % ((i + KEYS // 2) % KEYS))


def run_serial(db) -> None:  # type: ignore[no-untyped-def]
    i = int(db.get(b"counter", b"0"))
    while True:
        i += 1
        commit_serial(db, i)
        say(f"ack {i}")


def checkpoint_forever(db) -> None:  # type: ignore[no-untyped-def]
    while True:
        db.checkpoint()


def run_thread(db, t: int) -> None:  # type: ignore[no-untyped-def]
    n = int(db.get(b"t%d/counter" % t, b"0"))
    while True:
        n += 1
        with db.transaction() as txn:
            txn.put(b"total", b"%d" % (int(txn.get(b"total", b"0")) + 1))
            txn.put(b"t%d/counter" % t, b"%d" % n)
            txn.put(b"t%d/k%d" % (t, n % THREAD_KEYS), serial_value(n))
            txn.delete(b"t%d/k%d" % (t, (n + THREAD_KEYS // 2) % THREAD_KEYS))
            txn.put(b"last", b"%d:%d" % (t, n))
        say(f"ack {t} {n}")


def fatal_on_error(target, *args):  # type: ignore[no-untyped-def]
    """Run ``target``; any exception ends the whole process with status 3, so
    that the parent sees a failure instead of a child that stopped committing."""
    try:
        target(*args)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


def spawn(target, *args) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=fatal_on_error, args=(target, *args), daemon=True)
    t.start()
    return t


def main(argv: list[str]) -> None:
    import safepoint

    path, mode = argv[1], argv[2]
    db = safepoint.open(path, **OPTIONS)
    say("ready")
    if mode == "serial":
        fatal_on_error(run_serial, db)
    elif mode == "checkpoint":
        spawn(checkpoint_forever, db)
        fatal_on_error(run_serial, db)
    elif mode == "threads":
        for w in [spawn(run_thread, db, t) for t in range(int(argv[3]))]:
            w.join()
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv)
