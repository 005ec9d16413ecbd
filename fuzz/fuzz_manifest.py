"""atheris harness for fuzz/targets.py ``manifest`` (see fuzz/README.md).

python fuzz/fuzz_manifest.py WORK_CORPUS fuzz/corpus/manifest [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["safepoint", "targets"]):
    import targets


def main() -> None:
    atheris.Setup(sys.argv, targets.manifest)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
