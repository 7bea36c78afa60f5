"""From the dialect name an engine reports to what the scanner and sqlglot need.

SQLAlchemy and sqlglot name dialects differently (``postgresql`` vs ``postgres``,
``mssql`` vs ``tsql``). Engines can report any third-party dialect name, so the
capture path must never fail on one: unknown names quietly mean "generic SQL".
Only the public ``sqlwatch.analyze`` is strict, because there a typo is a user
error worth reporting.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot.dialects.dialect import Dialect, Dialects

__all__ = ["ScanFlags", "known_dialect_names", "scan_flags", "sqlglot_dialect_name"]

# SQLAlchemy (and popular third-party) dialect names whose sqlglot name differs or
# which are close enough to a sqlglot dialect to be read by it.
_SQLALCHEMY_TO_SQLGLOT: dict[str, str] = {
    "postgresql": "postgres",
    "cockroachdb": "postgres",
    "mssql": "tsql",
    "sybase": "tsql",
    "mariadb": "mysql",
    "awsathena": "athena",
    "teradatasql": "teradata",
}

_SQLGLOT_NAMES: frozenset[str] = frozenset(d.value for d in Dialects if d.value)


def known_dialect_names() -> tuple[str, ...]:
    """Every name ``sqlwatch.analyze`` accepts, sorted, for error messages."""
    return tuple(sorted(_SQLGLOT_NAMES | _SQLALCHEMY_TO_SQLGLOT.keys()))


def sqlglot_dialect_name(dialect: str | None) -> str | None:
    """The sqlglot name for ``dialect``; ``""`` (generic) when unknown, ``None`` for None."""
    if dialect is None:
        return None
    name = dialect.strip().lower()
    name = _SQLALCHEMY_TO_SQLGLOT.get(name, name)
    return name if name in _SQLGLOT_NAMES else ""


@dataclass(frozen=True, slots=True)
class ScanFlags:
    """The lexical quirks the literal scanner must know to not misread a dialect.

    Misreading is not cosmetic: treating a MySQL ``'it\\'s'`` as ending at the
    backslash would leak the rest of the string into ``normalized``.
    """

    backslash_escapes: bool = False
    double_quoted_strings: bool = False
    bracket_identifiers: bool = False
    hash_comments: bool = False
    nested_comments: bool = False
    """``/* a /* b */ c */`` is one comment (PostgreSQL, T-SQL, standard SQL)."""
    q_quotes: bool = False
    """Oracle's alternative quoting: ``q'[it's]'``, ``nq'!x!'``."""


def scan_flags(dialect: Dialect) -> ScanFlags:
    """Derive the scanner's flags from sqlglot's own tokenizer settings.

    Reading them from sqlglot keeps the two lexers in agreement about what is a
    string, an identifier or a comment in each dialect.
    """
    tokenizer = dialect.tokenizer_class
    quotes = _starts(getattr(tokenizer, "QUOTES", ["'"]))
    identifiers = _starts(getattr(tokenizer, "IDENTIFIERS", ['"']))
    comments = _starts(getattr(tokenizer, "COMMENTS", ["--"]))
    escapes = set(getattr(tokenizer, "STRING_ESCAPES", ["'"]))
    raw_strings = _starts(getattr(tokenizer, "RAW_STRINGS", []))
    return ScanFlags(
        backslash_escapes="\\" in escapes,
        double_quoted_strings='"' in quotes and '"' not in identifiers,
        bracket_identifiers="[" in identifiers,
        hash_comments="#" in comments,
        nested_comments=bool(getattr(tokenizer, "NESTED_COMMENTS", False)),
        q_quotes=any(start[:2].lower() == "q'" for start in raw_strings),
    )


def _starts(delimiters: object) -> set[str]:
    """The opening delimiters of a sqlglot tokenizer setting (strings or pairs)."""
    if isinstance(delimiters, dict):
        delimiters = list(delimiters)
    starts: set[str] = set()
    if isinstance(delimiters, (list, tuple, set, frozenset)):
        for item in delimiters:
            if isinstance(item, str):
                starts.add(item)
            elif isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
                starts.add(item[0])
    return starts
