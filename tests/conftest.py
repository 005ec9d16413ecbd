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

import os

import pytest
from hypothesis import HealthCheck, settings

import safepoint
from helpers import SMALL

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
