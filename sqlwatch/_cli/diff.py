"""``sqlwatch diff BASE NEW``: per scope, what changed between two saved reports.

A scope is a test (``pytest --sqlwatch-report``), an endpoint (the middleware)
or a named watch: the ``scopes`` of each report, matched by name. Queries and
query time are compared per run, so that an endpoint hit 100 times in one
run and 120 times in the next compares like for like (a test runs once, so its
figures are its totals). A report without scopes compares as one scope, itself.

``--fail-on-regression`` makes it a CI gate: exit status 1 when a scope's
queries per run grew by more than ``--max-increase`` (default 0), or an N+1
appeared that the base did not have. An N+1 is known by its relationship (or
statement fingerprint) and its call site's file and function, not its line
number, so moving code around does not make an old N+1 look new.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlwatch._cli._options import non_negative_int
from sqlwatch._render import _aligned, _ms, markdown_code, markdown_text
from sqlwatch.records import NPlusOne, ScopeSummary
from sqlwatch.report import Report

__all__ = ["ScopeDiff", "diff_reports", "register", "run"]

FORMATS = ("text", "markdown", "json")

REGRESSED = "regressed"
ADDED = "added"
REMOVED = "removed"
MORE = "more queries"
FEWER = "fewer queries"
FIXED = "N+1 fixed"
SAME = "unchanged"

_ORDER = {REGRESSED: 0, ADDED: 1, MORE: 2, REMOVED: 3, FEWER: 4, FIXED: 5, SAME: 6}


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "diff",
        help="compare two saved reports scope by scope (tests, endpoints); a CI gate",
        description="Per scope (test, endpoint, named watch): queries, N+1 findings and "
        "query time, before and after. Figures are per run (a test runs once).",
    )
    parser.add_argument("base", help="the baseline report (JSON)")
    parser.add_argument("new", help="the report to compare with the baseline (JSON)")
    parser.add_argument("--format", default="text", choices=FORMATS, help="output format")
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit with status 1 when a scope's queries grew by more than --max-increase "
        "or a new N+1 appeared",
    )
    parser.add_argument(
        "--max-increase",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="queries per run a scope may grow by before it is a regression (default 0)",
    )
    parser.add_argument(
        "--all", action="store_true", help="list unchanged scopes too (text and markdown)"
    )
    parser.set_defaults(run=run)


# -- comparing -----------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One scope in one report, per run."""

    runs: int
    queries: float
    query_ms: float
    n_plus_one: tuple[NPlusOne, ...]
    exact_queries: Fraction = Fraction(0)
    """``queries`` as the exact ratio: the gate compares these, because per-run
    floats do not subtract exactly (7/3 - 4/3 is 1.0000000000000002, which a
    ``--max-increase 1`` would call a regression)."""

    @classmethod
    def of(cls, scope: ScopeSummary) -> Side:
        runs = max(scope.runs, 1)
        return cls(
            runs=scope.runs,
            queries=scope.query_count / runs,
            query_ms=scope.total_query_ms / runs,
            n_plus_one=scope.n_plus_one,
            exact_queries=Fraction(scope.query_count, runs),
        )


@dataclass(frozen=True)
class ScopeDiff:
    name: str
    base: Side | None
    new: Side | None
    new_n_plus_one: tuple[NPlusOne, ...] = ()
    fixed_n_plus_one: tuple[NPlusOne, ...] = ()
    status: str = SAME
    reasons: tuple[str, ...] = field(default=())

    @property
    def change(self) -> float | None:
        if self.base is None or self.new is None:
            return None
        return float(self.new.exact_queries - self.base.exact_queries)


_CALL_SITE = re.compile(r"(?P<path>.*):[0-9]+(?P<function> in .*)?", re.DOTALL)
"""``path/to/file.py:42 in func``. The path is greedy: it may hold `` in `` or ``:``
itself (``/home/me/work in progress/app.py``); the line is the last ``:digits``."""


def n_plus_one_key(finding: NPlusOne) -> tuple[str, str]:
    """What makes an N+1 the same one in two reports: line numbers move, code does not."""
    what = finding.relationship or finding.fingerprint
    site = finding.call_site or ""
    match = _CALL_SITE.fullmatch(site)
    if match is None:  # no line number: the site is its own key
        return what, site
    return what, match["path"] + (match["function"] or "")


def _scopes(report: Report) -> dict[str, ScopeSummary]:
    if report.scopes:
        return {scope.name: scope for scope in report.scopes}
    # A report of one watch: the report itself is the scope.
    return {
        report.name: ScopeSummary(
            name=report.name,
            runs=1,
            query_count=report.query_count,
            total_query_ms=report.total_query_ms,
            duration_ms=report.duration_ms,
            queries_per_run={},
            n_plus_one=report.n_plus_one,
        )
    }


def diff_reports(base: Report, new: Report, *, max_increase: int = 0) -> list[ScopeDiff]:
    """Every scope of either report, regressions first."""
    before, after = _scopes(base), _scopes(new)
    diffs = []
    for name in [*before, *(n for n in after if n not in before)]:
        diffs.append(
            _compare(
                name,
                Side.of(before[name]) if name in before else None,
                Side.of(after[name]) if name in after else None,
                max_increase,
            )
        )
    diffs.sort(key=lambda d: (_ORDER[d.status], -abs(d.change or 0.0), d.name))
    return diffs


def _compare(name: str, base: Side | None, new: Side | None, max_increase: int) -> ScopeDiff:
    known = {n_plus_one_key(f) for f in base.n_plus_one} if base is not None else set()
    current = {n_plus_one_key(f) for f in new.n_plus_one} if new is not None else set()
    appeared = tuple(f for f in new.n_plus_one if n_plus_one_key(f) not in known) if new else ()
    fixed = tuple(f for f in base.n_plus_one if n_plus_one_key(f) not in current) if base else ()
    reasons: list[str] = []
    if base is not None and new is not None:
        grew = new.exact_queries - base.exact_queries
        if grew > max_increase:
            allowance = f" (allowed: +{max_increase})" if max_increase else ""
            reasons.append(f"queries +{_count(grew)}{allowance}")
    for finding in appeared:
        reasons.append(f"new N+1: {_what(finding)}")
    if reasons:
        status = REGRESSED
    elif new is None:
        status = REMOVED
    elif base is None:
        status = ADDED
    elif new.exact_queries > base.exact_queries:
        status = MORE
    elif new.exact_queries < base.exact_queries:
        status = FEWER
    elif fixed:
        status = FIXED
    else:
        status = SAME
    return ScopeDiff(name, base, new, appeared, fixed, status, tuple(reasons))


def _what(finding: NPlusOne) -> str:
    where = f" at {finding.call_site}" if finding.call_site else ""
    return f"{finding.relationship or _clip(finding.normalized, 60)}{where}"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _count(value: float | Fraction) -> str:
    return str(int(value)) if float(value).is_integer() else f"{float(value):.1f}"


# -- output ---------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    base, new = Report.load(args.base), Report.load(args.new)  # checks every value's type
    diffs = diff_reports(base, new, max_increase=args.max_increase)
    regressions = [d for d in diffs if d.status == REGRESSED]
    if args.format == "json":
        print(json.dumps(_json(args, base, new, diffs), indent=2))
    elif args.format == "markdown":
        print(_markdown(args, base, new, diffs))
    else:
        print(_text(args, base, new, diffs))
    return 1 if args.fail_on_regression and regressions else 0


def _headline(base: Report, new: Report, diffs: Sequence[ScopeDiff]) -> str:
    counts: dict[str, int] = {}
    for d in diffs:
        counts[d.status] = counts.get(d.status, 0) + 1
    parts = [f"{counts[s]} {s}" for s in sorted(counts, key=_ORDER.__getitem__)]
    return (
        f"{len(diffs)} scope{'s' if len(diffs) != 1 else ''}: {', '.join(parts) or 'none'}. "
        f"Total: {base.query_count} -> {new.query_count} queries, "
        f"{len(base.n_plus_one)} -> {len(new.n_plus_one)} N+1, "
        f"{_ms(base.total_query_ms)} -> {_ms(new.total_query_ms)} ms"
    )


_HEADERS = ("scope", "status", "queries", "change", "N+1", "query ms")


def _rows(diffs: Iterable[ScopeDiff]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for d in diffs:
        change = d.change
        rows.append(
            (
                d.name,
                d.status,
                f"{_side(d.base, 'queries')} -> {_side(d.new, 'queries')}",
                "" if change is None or change == 0 else f"{change:+.{_digits(change)}f}",
                f"{_nplus(d.base)} -> {_nplus(d.new)}",
                f"{_side(d.base, 'query_ms')} -> {_side(d.new, 'query_ms')}",
            )
        )
    return rows


def _digits(value: float) -> int:
    return 0 if float(value).is_integer() else 1


def _side(side: Side | None, attribute: str) -> str:
    if side is None:
        return "-"
    value: float = getattr(side, attribute)
    return _count(value) if attribute == "queries" else _ms(value)


def _nplus(side: Side | None) -> str:
    return "-" if side is None else str(len(side.n_plus_one))


def _shown(args: argparse.Namespace, diffs: Sequence[ScopeDiff]) -> list[ScopeDiff]:
    return list(diffs) if args.all else [d for d in diffs if d.status != SAME]


def _details(diffs: Iterable[ScopeDiff]) -> list[tuple[str, str, list[str]]]:
    """Each regressed scope: its name, why, and the fixes of its new N+1s."""
    return [
        (d.name, "; ".join(d.reasons), [f.suggestion for f in d.new_n_plus_one if f.suggestion])
        for d in diffs
        if d.status == REGRESSED
    ]


def _text(args: argparse.Namespace, base: Report, new: Report, diffs: list[ScopeDiff]) -> str:
    lines = [f"sqlwatch diff {args.base} -> {args.new}", _headline(base, new, diffs)]
    shown = _shown(args, diffs)
    if shown:
        lines.append("")
        lines.extend(_aligned(_HEADERS, _rows(shown)))
    hidden = len(diffs) - len(shown)
    if hidden:
        lines.append(f"({hidden} unchanged scope{'s' if hidden != 1 else ''} not shown: --all)")
    details = _details(diffs)
    if details:
        lines += ["", "Regressions:"]
        for name, why, fixes in details:
            lines.append(f"  {name}: {why}")
            lines.extend(f"      fix: {fix}" for fix in fixes)
    lines.append(_verdict(args, diffs))
    return "\n".join(lines)


def _markdown(args: argparse.Namespace, base: Report, new: Report, diffs: list[ScopeDiff]) -> str:
    lines = ["### sqlwatch: SQL per test and endpoint", "", _headline(base, new, diffs)]
    shown = _shown(args, diffs)
    if shown:
        lines += ["", "| " + " | ".join(_HEADERS) + " |", "|" + "---|" * len(_HEADERS)]
        for name, *cells in _rows(shown):
            row = [markdown_code(name), *(markdown_text(c) for c in cells)]
            lines.append("| " + " | ".join(row) + " |")
    hidden = len(diffs) - len(shown)
    if hidden:
        lines += ["", f"{hidden} unchanged scope{'s' if hidden != 1 else ''} not shown."]
    details = _details(diffs)
    if details:
        lines += ["", "#### Regressions", ""]
        for name, why, fixes in details:
            lines.append(f"- {markdown_code(name, in_table=False)}: {markdown_text(why)}")
            lines.extend(f"  - fix: {markdown_text(fix)}" for fix in fixes)
    lines += ["", _verdict(args, diffs)]
    return "\n".join(lines)


def _verdict(args: argparse.Namespace, diffs: Sequence[ScopeDiff]) -> str:
    regressions = sum(d.status == REGRESSED for d in diffs)
    if not regressions:
        return "No regression."
    noun = "scope regressed" if regressions == 1 else "scopes regressed"
    if args.fail_on_regression:
        return f"{regressions} {noun} (max increase {args.max_increase}): failing."
    return f"{regressions} {noun} (max increase {args.max_increase})."


def _json(
    args: argparse.Namespace, base: Report, new: Report, diffs: list[ScopeDiff]
) -> dict[str, Any]:
    def side(s: Side | None) -> dict[str, Any] | None:
        if s is None:
            return None
        return {
            "runs": s.runs,
            "queries": s.queries,
            "query_ms": round(s.query_ms, 4),
            "n_plus_one": len(s.n_plus_one),
        }

    def finding(f: NPlusOne) -> dict[str, Any]:
        return {
            "relationship": f.relationship,
            "normalized": f.normalized,
            "call_site": f.call_site,
            "count": f.count,
            "suggestion": f.suggestion,
        }

    return {
        "base": args.base,
        "new": args.new,
        "max_increase": args.max_increase,
        "regressions": sum(d.status == REGRESSED for d in diffs),
        "totals": {
            "queries": {"before": base.query_count, "after": new.query_count},
            "n_plus_one": {"before": len(base.n_plus_one), "after": len(new.n_plus_one)},
            "query_ms": {"before": base.total_query_ms, "after": new.total_query_ms},
        },
        "scopes": [
            {
                "name": d.name,
                "status": d.status,
                "reasons": list(d.reasons),
                "before": side(d.base),
                "after": side(d.new),
                "change": d.change,
                "new_n_plus_one": [finding(f) for f in d.new_n_plus_one],
                "fixed_n_plus_one": [finding(f) for f in d.fixed_n_plus_one],
            }
            for d in diffs
        ],
    }
