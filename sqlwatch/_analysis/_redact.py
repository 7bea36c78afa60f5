"""Redaction for any set of dialects: no literal value of any of them survives.

A literal is a literal only as a dialect lexes it: ``"tok"`` is a string in
MySQL and a quoted identifier in PostgreSQL; ``'C:\\' AND t = 'x'`` is one
string where backslashes escape quotes and two elsewhere. Redacting with the
wrong dialect's rules leaks values, and redacting with a lexer that merely
accepts more (backslash escapes everywhere) is no fix: it can misplace a
string's end and leave the next string's body outside any string.

So a text whose dialect is one of several (or unknown) is lexed by each
candidate, and every character that any of them reads as part of a literal or
comment is replaced. Runs of such characters become one mark, the strongest of
theirs (``?'`` for an unterminated string, then `` /*``, ``?``, a space).
Reports use it (``Report.redacted``); it is not on the per-statement path.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import product
from typing import Final

from sqlglot.dialects.dialect import Dialect

from sqlwatch._analysis._dialects import ScanFlags, scan_flags, sqlglot_dialect_name
from sqlwatch._analysis._shape import Shaper
from sqlwatch._guard import report_internal_error

__all__ = ["redact_literals_of_any"]

EVERY_LEXER: Final = (
    *(ScanFlags(*bits) for bits in product((False, True), repeat=5)),
    ScanFlags(q_quotes=True),
)
"""Every combination of the lexical rules the scanner knows: what an unknown
dialect (a third-party one sqlglot has never heard of, too) may follow. Oracle's
``q'...'`` strings come with Oracle's other rules only: no dialect has them
with another combination, and each lexer more costs every redaction."""

_STRENGTH: Final = {" ": 0, "?": 1, " /*": 2, "?'": 3}

_shapers: dict[ScanFlags, Shaper] = {}
_flags: dict[str, ScanFlags] = {}


def redact_literals_of_any(sql: str, dialects: Iterable[str | None]) -> str:
    """``sql`` with every literal value as ``?`` whichever of ``dialects`` ran it.

    ``dialects`` are SQLAlchemy or sqlglot names; ``None``, or a name sqlglot
    does not know, stands for every lexical rule there is. For one known
    dialect this is ``redact_literals(sql, dialect)``. Never raises: an
    unreadable statement is dropped.
    """
    try:
        lexers = _relevant(_lexers(dialects), sql)
        if len(lexers) == 1:
            return _shaper(lexers.pop()).redact(sql)
        return _redact_spans(sql, [s for f in lexers for s in _shaper(f).redacted_spans(sql)])
    except Exception as exc:
        report_internal_error("redaction", exc)
        return ""


def _lexers(dialects: Iterable[str | None]) -> set[ScanFlags]:
    lexers: set[ScanFlags] = set()
    for dialect in dialects:
        name = sqlglot_dialect_name(dialect) if isinstance(dialect, str) else None
        if not name:
            return set(EVERY_LEXER)
        flags = _flags.get(name)
        if flags is None:
            flags = _flags[name] = scan_flags(Dialect.get_or_raise(name))
        lexers.add(flags)
    return lexers or set(EVERY_LEXER)


def _relevant(lexers: set[ScanFlags], sql: str) -> set[ScanFlags]:
    """``lexers`` without the rules ``sql`` gives no occasion to apply.

    A rule whose characters are absent lexes the text as its absence would, so
    lexers differing only in such rules agree: most texts need a few of the
    candidates, not all of them.
    """
    occasions = (
        "\\" in sql,
        '"' in sql,
        "[" in sql,
        "#" in sql,
        sql.count("/*") > 1,
        "q'" in sql or "Q'" in sql,
    )
    kept = {
        (
            flags.backslash_escapes and occasions[0],
            flags.double_quoted_strings and occasions[1],
            flags.bracket_identifiers and occasions[2],
            flags.hash_comments and occasions[3],
            flags.nested_comments and occasions[4],
            flags.q_quotes and occasions[5],
        )
        for flags in lexers
    }
    return {ScanFlags(*rules) for rules in kept}


def _shaper(flags: ScanFlags) -> Shaper:
    shaper = _shapers.get(flags)
    if shaper is None:
        shaper = _shapers[flags] = Shaper(flags)
    return shaper


def _redact_spans(sql: str, spans: list[tuple[int, int, str]]) -> str:
    """``sql`` with the union of ``spans`` replaced, one mark per overlapping run."""
    pieces: list[str] = []
    done = 0
    start = end = -1
    mark = ""
    for span_start, span_end, span_mark in sorted(spans):
        if span_start < end:
            end = max(end, span_end)
            mark = max(mark, span_mark, key=_STRENGTH.__getitem__)
            continue
        if end >= 0:
            pieces += [sql[done:start], mark]
            done = end
        start, end, mark = span_start, span_end, span_mark
    if end >= 0:
        pieces += [sql[done:start], mark]
        done = end
    pieces.append(sql[done:])
    return "".join(pieces)
