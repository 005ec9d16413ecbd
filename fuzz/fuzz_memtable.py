"""atheris harness for fuzz/targets.py ``memtable`` (fuzz/memtable_target.py) (see fuzz/README.md).

python fuzz/fuzz_memtable.py WORK_CORPUS fuzz/corpus/memtable [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["safepoint", "targets", "memtable_target"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.memtable)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
