"""The ``safepoint`` command: argument parsing, dispatch and error handling.

Every failure ends as one line on stderr and an exit code (0 ok, 1 damage
found, 2 usage error or a command that could not run); ``--debug`` adds the
traceback and the store's debug log.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from ..errors import CorruptionError, Error
from . import dumpformat, info, storecmds, verify, walcmd
from .common import EXIT_DAMAGE, EXIT_OK, EXIT_USAGE, UsageError

RECOVERY_MODES = ("tolerate_tail", "strict", "point_in_time")


def _run_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; docs/cli.md describes each command."""
    from .. import __version__

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error and the store's debug log",
    )
    parser = argparse.ArgumentParser(
        prog="safepoint",
        description="Inspect, check and repair safepoint stores; `safepoint demo` shows "
        "a crash and its recovery.",
        epilog="Exit codes: 0 ok, 1 damage found, 2 usage error. Docs: docs/cli.md",
    )
    parser.add_argument("--version", action="version", version=f"safepoint {__version__}")
    parser.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text, parents=[common])

    p = command("demo", "run a simulation, kill it with SIGKILL, recover, resume, compare")
    p.add_argument("--path", help="store directory to use (must not exist; kept afterwards)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store afterwards")
    p.add_argument("--steps", type=int, default=1000, help="simulation steps (default 1000)")
    p.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    p.add_argument(
        "--kill-at", type=int, default=None, help="SIGKILL after this step is acknowledged"
    )
    p.set_defaults(func=_run_demo)

    p = command("info", "LSN, sizes, segments, snapshots, last checkpoint")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=info.run)

    p = command("verify", "check every CRC of the log and the base image")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--strict", action="store_true", help="count a torn tail as damage")
    p.set_defaults(func=verify.run)

    p = command("dump", "write the store's entries as JSON lines")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--prefix", help="only keys starting with this (UTF-8) text")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.set_defaults(func=dumpformat.run_dump)

    p = command("load", "read JSON lines (from dump) into a new or existing store")
    p.add_argument("path", metavar="PATH")
    p.add_argument("input", metavar="FILE", nargs="?", default="-", help="default: stdin")
    p.add_argument("--batch", type=int, default=1000, help="entries per transaction")
    p.set_defaults(func=dumpformat.run_load)

    p = command("wal", "list the log's records (like pg_waldump)")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--from-lsn", type=int, default=0, help="start at this LSN")
    p.add_argument("--limit", type=int, default=None, help="list at most this many records")
    p.add_argument("--json", action="store_true", help="one JSON object per record")
    p.set_defaults(func=walcmd.run)

    p = command("checkpoint", "fold the log into the base image now")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=storecmds.run_checkpoint)

    p = command("recover", "open with a recovery mode and report what recovery did")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--mode", choices=RECOVERY_MODES, default="tolerate_tail")
    p.set_defaults(func=storecmds.run_recover)

    p = command("snapshots", "list the store's snapshots")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=storecmds.run_snapshots)

    p = command("save", "save a named snapshot")
    p.add_argument("path", metavar="PATH")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--step", type=int, default=None)
    p.add_argument("--metric", action="append", default=[], metavar="NAME=NUMBER")
    p.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--overwrite", action="store_true", help="replace a snapshot of that name")
    p.set_defaults(func=storecmds.run_save)

    p = command("restore", "roll the store back to a snapshot")
    p.add_argument("path", metavar="PATH")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=storecmds.run_restore)

    p = command("delete-snapshot", "delete a named snapshot")
    p.add_argument("path", metavar="PATH")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=storecmds.run_delete_snapshot)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    if debug:
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    name = f"safepoint {args.command}"
    try:
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (`safepoint dump ... | head`): not an error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except CorruptionError as exc:
        return _fail(name, str(exc), EXIT_DAMAGE, debug)
    except (UsageError, Error, ValueError, TypeError) as exc:
        return _fail(name, str(exc), EXIT_USAGE, debug)
    except KeyError as exc:
        return _fail(name, str(exc.args[0]) if exc.args else "missing key", EXIT_USAGE, debug)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(name, f"{where}{exc.strerror or exc}", EXIT_USAGE, debug)
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line, not a trace
        return _fail(
            name,
            f"unexpected {type(exc).__name__}: {exc} (a bug: please report it with --debug)",
            EXIT_USAGE,
            debug,
        )


def _fail(name: str, message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"{name}: error: {message}", file=sys.stderr)
    return code
