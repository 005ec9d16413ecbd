"""atheris harness for fuzz/targets.py ``wal_engine`` (see fuzz/README.md).

python fuzz/fuzz_wal_engine.py WORK_CORPUS fuzz/corpus/wal_engine [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["safepoint", "targets"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.wal_engine)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
