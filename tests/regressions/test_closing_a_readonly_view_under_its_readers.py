"""Regression: closing a read-only view while other threads iterated it
crashed the process (SIGSEGV).

A view pins one LMDB read transaction for its life and every reader uses
it.  ``BaseImage.close`` aborted that transaction while a reader thread was
inside an LMDB cursor call on it (py-lmdb releases the GIL there).  Close
now drops its reference instead: the transaction is aborted by its last
user, or invalidated when the environment closes, and the readers end with
ClosedError as a writer's do.  The race runs in a child process so that a
crash fails this test instead of killing the test run.
"""

from __future__ import annotations

import subprocess
import sys

import safepoint

CHILD = r"""
import sys, threading, time
import safepoint

outcomes = set()
for _ in range(40):
    view = safepoint.open(sys.argv[1], readonly=True)

    def read():
        try:
            while True:
                for _ in view.items():
                    pass
        except safepoint.ClosedError:
            outcomes.add("ClosedError")
        except BaseException as exc:
            outcomes.add(repr(exc))

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    time.sleep(0.002)
    view.close()
    for t in readers:
        t.join()
print(sorted(outcomes))
"""


def test_closing_a_readonly_view_under_iterating_threads_ends_them_with_closed_error(tmp_path):
    path = tmp_path / "store.sp"
    with safepoint.open(path) as db:
        db.update({b"k%04d" % i: b"v" * 50 for i in range(2000)})
        db.checkpoint()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, f"child died ({child.returncode}): {child.stderr[-2000:]}"
    assert child.stdout.strip() == "['ClosedError']"
