"""The ``sqlwatch`` command line. One module per subcommand.

Bad input (a missing or malformed report file, an unknown format or dialect, a
bad option) is a one-line message on stderr and exit status 2, never a
traceback: the CLI is used in CI gates, where a traceback reads as a crash.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from sqlwatch._cli import analyze, demo, diff, report
from sqlwatch._version import __version__

__all__ = ["UsageError", "main"]

COMMANDS = (demo, report, diff, analyze)


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sqlwatch",
        description="See every SQL statement of a SQLAlchemy application.",
    )
    parser.add_argument("--version", action="version", version=f"sqlwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    for command in COMMANDS:
        command.register(commands)
    return parser


SIGPIPE_STATUS = 141
"""What a shell reports for a process ended by SIGPIPE (128 + 13)."""


def main(argv: Sequence[str] | None = None) -> int:
    _print_what_the_terminal_cannot_encode()
    try:
        args = build_parser().parse_args(argv)
        status: int = args.run(args)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return status
    except UsageError as exc:
        print(f"sqlwatch: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader left (``sqlwatch report r.json | head``): not an error of
        # the input. Silence the interpreter's own flush at exit, and end as a
        # command killed by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return SIGPIPE_STATUS
    except (ValueError, OSError) as exc:  # ReportError is a ValueError
        print(f"sqlwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _print_what_the_terminal_cannot_encode() -> None:
    """SQL names may be any Unicode; an output encoding that cannot spell them
    (``PYTHONIOENCODING=ascii``, a C locale) gets escapes, not a failed command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None and stream.errors == "strict":
            reconfigure(errors="backslashreplace")
