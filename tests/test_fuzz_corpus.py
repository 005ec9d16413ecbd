"""The fuzz corpus replays cleanly through the plain targets (fuzz/targets.py).

Every input in fuzz/corpus/<target>/ (hand-made seeds, and inputs that once
found a bug) runs through its target exactly as the atheris harness runs
it; a finding raises.  The targets' own checks are shown to bite on inputs
built to break them.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from safepoint import _records_py as reference
from safepoint._records_common import encode_payload
from safepoint.format import OP_PUT

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"
sys.path.insert(0, str(FUZZ))
import targets  # noqa: E402

INPUTS = sorted(p for p in (FUZZ / "corpus").glob("*/*") if p.is_file())
HANG_SECONDS = 60


@pytest.fixture
def no_hang():
    def alarm(signum, frame):
        raise TimeoutError(f"a corpus input ran for more than {HANG_SECONDS} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_corpus_input_runs_clean_through_its_target(path, no_hang):
    targets.TARGETS[path.parent.name](path.read_bytes())


def test_every_target_has_a_harness_and_a_corpus():
    for name in targets.TARGETS:
        assert (FUZZ / f"fuzz_{name}.py").is_file()
        assert any((FUZZ / "corpus" / name).iterdir()), name
    assert {p.parent.name for p in INPUTS} == set(targets.TARGETS)


def test_recipes_build_logs_of_valid_records():
    seed = reference.store_seed(b"\x01" * 16)
    recipe = (FUZZ / "corpus" / "scan" / "seed-recipe-clean").read_bytes()[14:]
    log = targets.build_log(recipe, seed, 5)
    res = reference.scan(log, seed, 5)
    assert len(res.records) == recipe[0] and res.offset == len(log)


# Error paths


def one_record(seed):
    return reference.encode_record(seed, 1, 0, encode_payload([(OP_PUT, b"k", b"v")]))


def test_scan_check_rejects_a_record_accepted_with_a_bad_crc():
    rec = bytearray(one_record(7))
    good = reference.scan(bytes(rec), 7, 1)
    rec[-1] ^= 1  # the scan result below still claims the record is valid
    with pytest.raises(AssertionError, match="bad CRC"):
        targets.check_scan(bytes(rec), 7, 1, 0, good)


def test_scan_check_rejects_a_clean_end_before_a_header():
    rec = one_record(7) + b"\x01" + bytes(40)
    res = reference.scan(rec, 7, 1)._replace(status=1, offset=len(one_record(7)))
    with pytest.raises(AssertionError, match="clean end"):
        targets.check_scan(rec, 7, 1, 0, res)
