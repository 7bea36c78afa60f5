"""Reports as a terminal table or Markdown (for a PR comment).

Both formats come from one list of sections, so they never disagree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlwatch.report import Report

__all__ = [
    "Section",
    "markdown_code",
    "markdown_text",
    "render_markdown",
    "render_text",
    "report_sections",
]

_SQL_WIDTH = 80


@dataclass(frozen=True)
class Section:
    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]


def _ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _clip(text: str, width: int = _SQL_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _pool_size(size: int | None, max_overflow: int | None) -> str:
    """``5+10`` for a QueuePool, ``5`` where there is no overflow, ``-`` for none."""
    if size is None:
        return "-"
    base = "unlimited" if size == 0 else str(size)  # QueuePool(pool_size=0): no limit
    if max_overflow is None or size == 0:
        return base
    return f"{base}+{'unlimited' if max_overflow < 0 else max_overflow}"


def _counted(items: Sequence[str]) -> str:
    """``a.py:3 in f (x2), b.py:9 in g``: repeated entries once, with their count."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return ", ".join(f"{item} (x{n})" if n > 1 else item for item, n in counts.items())


def report_sections(report: Report, *, top: int = 10) -> list[Section]:
    sections = [
        Section(
            "Top statements by total time",
            ("count", "total ms", "mean ms", "p95 ms", "max ms", "statement"),
            [
                (
                    str(s.count),
                    _ms(s.total_ms),
                    _ms(s.mean_ms),
                    _ms(s.p95_ms),
                    _ms(s.max_ms),
                    _clip(s.normalized),
                )
                for s in report.fingerprints[:top]
            ],
        ),
        Section(
            "Slow queries",
            ("ms", "call site", "statement"),
            [
                (_ms(s.duration_ms), s.call_site or "-", _clip(s.normalized))
                for s in sorted(report.slow_queries, key=lambda s: -s.duration_ms)[:top]
            ],
        ),
        Section(
            "N+1 queries",
            ("count", "total ms", "relationship / statement", "call site", "fix"),
            [
                (
                    str(f.count),
                    _ms(f.total_ms),
                    f.relationship or _clip(f.normalized, 60),
                    f.call_site or "-",
                    f.suggestion,
                )
                for f in report.n_plus_one
            ],
        ),
        Section(
            "Duplicate queries (same SQL, same parameters)",
            ("count", "call sites", "statement"),
            [
                (str(d.count), ", ".join(d.call_sites) or "-", _clip(d.sql))
                for d in report.duplicates[:top]
            ],
        ),
        Section(
            "Unused eager loads",
            ("count", "relationship", "call site"),
            [
                (str(u.count), u.relationship, u.call_site or "-")
                for u in report.unused_eager_loads
            ],
        ),
        Section(
            "Statements by operation",
            ("operation", "count"),
            [(op, str(n)) for op, n in report.operations.items()],
        ),
        Section(
            "Statements by table",
            ("table", "count"),
            [(table, str(n)) for table, n in list(report.tables.items())[:top]],
        ),
        Section(
            "Connection pools",
            (
                "engine",
                "pool",
                "size",
                "out",
                "peak",
                "checkouts",
                "invalidated",
                "timeouts",
                "wait p95 ms",
                "wait max ms",
                "hold p95 ms",
            ),
            [
                (
                    name,
                    p.pool_class,
                    _pool_size(p.size, p.max_overflow),
                    str(p.checked_out),
                    str(p.peak_checked_out),
                    str(p.checkouts),
                    str(p.invalidations),
                    "-" if p.timeouts is None else str(p.timeouts),
                    _ms(p.wait_ms.get("p95", 0.0)),
                    _ms(p.wait_ms.get("max", 0.0)),
                    _ms(p.hold_ms.get("p95", 0.0)),
                )
                for name, p in report.pools.items()
            ],
        ),
        Section(
            "Connection leaks",
            ("kind", "held ms", "checked out at", "engine"),
            [(k.kind, _ms(k.held_ms), k.call_site or "-", k.engine) for k in report.leaks],
        ),
        Section(
            "Errors",
            ("error", "count"),
            [(name, str(n)) for name, n in report.errors.items()],
        ),
        Section(
            "Scopes with the most queries",
            ("scope", "runs", "queries", "query ms", "N+1"),
            [
                (
                    s.name,
                    str(s.runs),
                    str(s.query_count),
                    _ms(s.total_query_ms),
                    str(len(s.n_plus_one)),
                )
                for s in sorted(report.scopes, key=lambda s: -s.query_count)[:top]
            ],
        ),
    ]
    sessions = report.sessions
    if sessions.opened or sessions.unclosed:
        sections.append(
            Section(
                "Sessions",
                ("opened", "closed", "unclosed", "unclosed, first used at"),
                [
                    (
                        str(sessions.opened),
                        str(sessions.closed),
                        str(sessions.unclosed),
                        _counted(sessions.unclosed_call_sites) or "-",
                    )
                ],
            )
        )
    return [s for s in sections if s.rows]


def _headline(report: Report) -> str:
    return (
        f"{report.query_count} queries in {_ms(report.total_query_ms)} ms "
        f"(scope {report.name!r}, {_ms(report.duration_ms)} ms, "
        f"started {report.started_at or '-'})"
    )


def _dropped_note(report: Report) -> str | None:
    """Why the report's ``statements`` are not all of them. A scope over
    ``max_statements`` keeps the first ones; a report that keeps none was made so on
    purpose (the pytest plugin's: one scope per test instead) or with
    ``max_statements=0``."""
    dropped = report.dropped_statements
    if not dropped:
        return None
    if report.statements:
        return f"({dropped} statements beyond max_statements: aggregated only)"
    return f"(statements are not kept one by one in this report: all {dropped} are aggregated)"


def render_text(report: Report, *, top: int = 10) -> str:
    lines = [f"sqlwatch report: {_headline(report)}"]
    note = _dropped_note(report)
    if note:
        lines.append(note)
    for section in report_sections(report, top=top):
        lines.append("")
        lines.append(section.title)
        lines.extend(_aligned(section.headers, section.rows))
    return "\n".join(lines)


def _aligned(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


_MARKDOWN_SPECIAL = re.compile(r"[\\`*~<|]|_+|&(?=#?\w+;)")
"""Code, emphasis, strikethrough, HTML, a table's cell border; underscores; an
entity (``&lt;``)."""
_LINE_BREAK = re.compile(r"[\r\n]+")


def _escaped(match: re.Match[str]) -> str:
    found = match.group()
    if found[0] == "_":
        text, start, end = match.string, match.start(), match.end()
        if start > 0 and end < len(text) and text[start - 1].isalnum() and text[end].isalnum():
            return found  # inside a word (``sleep_ms``): never emphasis
    return "".join("\\" + c for c in found)


def markdown_text(text: str) -> str:
    """``text`` as literal Markdown (GitHub's): in a table cell or a list item.

    SQL and file paths are full of what Markdown reads as markup:
    ``SELECT t.*, u.* FROM t JOIN u ...`` would show in italics with its stars
    gone, ``app/__init__.py`` as ``app/init.py`` in bold, ``|`` would end the
    cell and a line break the table.
    """
    return _MARKDOWN_SPECIAL.sub(_escaped, _LINE_BREAK.sub(" ", text))


def markdown_code(text: str, *, in_table: bool = True) -> str:
    """``text`` as a Markdown code span: fenced by more backticks than it holds in
    a row (a MySQL identifier is quoted with them), padded where it starts or ends
    with one. In a table, ``|`` is escaped: GitHub splits a table's cells before it
    reads code spans (elsewhere the backslash would show)."""
    text = _LINE_BREAK.sub(" ", text)
    if in_table:
        text = text.replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def render_markdown(report: Report, *, top: int = 10) -> str:
    lines = [f"### sqlwatch: {markdown_text(_headline(report))}"]
    note = _dropped_note(report)
    if note:
        lines += ["", note]
    for section in report_sections(report, top=top):
        lines += ["", f"#### {section.title}", ""]
        lines.append("| " + " | ".join(section.headers) + " |")
        lines.append("|" + "|".join("---" for _ in section.headers) + "|")
        for row in section.rows:
            lines.append("| " + " | ".join(markdown_text(c) for c in row) + " |")
    return "\n".join(lines)
