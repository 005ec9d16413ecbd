"""``python -m benchmarks``: run the suite (see benchmarks/run.py)."""

import sys

from .run import main

if __name__ == "__main__":  # not when a spawned child re-imports this module
    sys.exit(main())
