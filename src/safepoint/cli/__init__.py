"""The ``safepoint`` command line (docs/cli.md).

``main`` is the console script's entry point (``safepoint.cli:main``).
Modules: ``main`` (parsing, dispatch, exit codes), ``info``, ``verify``,
``walcmd``, ``dumpformat`` (dump and load), ``storecmds`` (checkpoint,
recover, snapshots), ``logscan`` and ``baseread`` (read-only file access
shared by the inspection commands), ``common``.
"""

from __future__ import annotations

from .main import main

__all__ = ["main"]
