"""atheris harness for fuzz/targets.py ``payload`` (see fuzz/README.md).

python fuzz/fuzz_payload.py WORK_CORPUS fuzz/corpus/payload [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["safepoint", "targets"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.payload)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
