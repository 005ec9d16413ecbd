"""atheris harness for fuzz/targets.py ``recovery`` (see fuzz/README.md).

python fuzz/fuzz_recovery.py WORK_CORPUS fuzz/corpus/recovery [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["safepoint", "targets"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.recovery)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
