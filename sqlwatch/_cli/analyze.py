"""``sqlwatch analyze SQL [--dialect D]``: what sqlwatch makes of one statement."""

from __future__ import annotations

import argparse
import json
from typing import Any

from sqlwatch._analysis import analyze
from sqlwatch.records import record_to_dict


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "analyze", help="operation, tables, fingerprint and normalized SQL of a statement"
    )
    parser.add_argument("sql", help="the SQL statement (quote it)")
    parser.add_argument("--dialect", help="SQL dialect: postgresql, sqlite, mysql, ...")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    info = analyze(args.sql, args.dialect)
    if args.json:
        print(json.dumps(record_to_dict(info), indent=2))
        return 0
    rows = [
        ("operation", info.operation),
        ("tables", ", ".join(info.tables) or "-"),
        ("fingerprint", info.fingerprint),
        ("summary", info.summary),
        ("parsed", "yes" if info.parse_ok else "no (fell back to the leading keyword)"),
        ("normalized", info.normalized),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    return 0
