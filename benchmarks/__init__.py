"""safepoint's benchmark suite: ``python -m benchmarks --help``.

One module per workload family (commits, bulk, gets, mixed, reopen, ckpt,
snap, limits); ``run`` drives them and writes benchmarks/results/<date>.md
with a PNG chart.  ``wal_append.py`` is a standalone script (issue 2).
Speed is measured here and never asserted in tests.
"""
