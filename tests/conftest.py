"""Shared pytest configuration.

Hypothesis profiles, chosen with HYPOTHESIS_PROFILE (default "dev"):

* ``dev``: quick, for the edit-test loop.
* ``ci``: what .ci/run uses: ten times as many examples.  Tests that need
  more scale from ``settings.default.max_examples`` (the main codec agreement
  test runs 10x: 10,000 examples under ``ci``).

No deadline in either: a loaded 2-core CI machine makes per-example timing
meaningless, and a slow example is not a wrong one.
"""

from __future__ import annotations

import logging
import os

import pytest
from hypothesis import HealthCheck, settings

import safepoint
from helpers import SMALL
from safepoint.testing import FaultFS

settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
)
settings.register_profile(
    "ci",
    max_examples=1000,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture
def path(tmp_path):
    """Where a test's store lives (not created)."""
    return tmp_path / "store.sp"


@pytest.fixture
def db(path):
    """An open store with small segments, closed after the test."""
    store = safepoint.open(path, **SMALL)
    yield store
    store.close()


@pytest.fixture
def quiet_store_log(caplog):
    """Silence safepoint's own log (tests that make it fail on purpose)."""
    caplog.set_level(logging.CRITICAL, logger="safepoint")


@pytest.fixture
def root(tmp_path):
    """The directory of a store opened on a FaultFS (not created)."""
    return tmp_path / "store"


@pytest.fixture
def fs(root):
    """A FaultFS over ``root``: every file operation traced, faults on demand."""
    f = FaultFS(root)
    yield f
    f.close()


@pytest.fixture
def wal(tmp_path):
    """A log on the native engine, with room for a record of a few MB
    (test_wal_yield, test_wal_syncer)."""
    from test_wal_native import new_writer

    writer = new_writer(tmp_path, "native", segment_bytes=16 << 20)
    try:
        yield writer
    finally:
        writer.close()
