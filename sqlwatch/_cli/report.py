"""``sqlwatch report PATH [--format text|markdown|json]``."""

from __future__ import annotations

import argparse
from typing import Any

from sqlwatch._cli._options import non_negative_int
from sqlwatch._render import render_markdown, render_text
from sqlwatch.report import Report

FORMATS = ("text", "markdown", "json")


def register(commands: Any) -> None:
    parser = commands.add_parser("report", help="print a saved JSON report")
    parser.add_argument("path", help="a report written by sqlwatch (JSON)")
    parser.add_argument("--format", default="text", choices=FORMATS, help="output format")
    parser.add_argument(
        "--top",
        type=non_negative_int,
        default=10,
        metavar="N",
        help="rows to list of the statements, slow queries, duplicates, tables and scopes "
        "(default 10)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    report = Report.load(args.path)
    if args.format == "json":
        print(report.to_json())
    elif args.format == "markdown":
        print(render_markdown(report, top=args.top))
    else:
        print(render_text(report, top=args.top))
    return 0
