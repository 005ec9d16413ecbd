"""atheris harness for fuzz/targets.py ``scan`` (see fuzz/README.md).

python fuzz/fuzz_scan.py WORK_CORPUS fuzz/corpus/scan [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["safepoint", "targets"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.scan)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
