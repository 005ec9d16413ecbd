"""safepoint.testing: power-loss simulation for safepoint and what is built on it.

    from safepoint.testing import FaultFS, explore

    fs = FaultFS("run.sp")                       # records what is durable
    db = safepoint.open("run.sp", fs=fs)
    db.put(b"k", b"v")
    fs.crash("torn_write", seed=7).materialise("after-power-loss.sp")

    result = explore(my_workload)                # crash it everywhere, recover, check
    assert not result.violations, result.summary()

The pieces: ``FaultFS`` (faultfs.py) traces every file operation and knows,
at any moment, what is durable; crash models (crash.py, ``MODELS``) decide
what a power loss keeps of the rest; ``Failures`` (failures.py) injects EIO
on fsync, ENOSPC and short writes; ``explore`` (explorer.py) checks SPEC §3
at every crash point.  LMDB commits are modelled as atomic and durable
(lmdb_model.py).  docs/testing.md is the guide.
"""

from __future__ import annotations

from .crash import MODELS, SECTOR_BYTES, CrashState, crash_state
from .explorer import ExploreResult, Violation, explore
from .failures import Failures
from .faultfs import FaultFile, FaultFS
from .recorder import History, RecordingStore
from .trace import Replay, replay

__all__ = [
    "MODELS",
    "SECTOR_BYTES",
    "CrashState",
    "ExploreResult",
    "Failures",
    "FaultFS",
    "FaultFile",
    "History",
    "RecordingStore",
    "Replay",
    "Violation",
    "crash_state",
    "explore",
    "replay",
]
