"""Dialect lexing in the normalizer and the redactor: every spelling of a literal
is a value, every comment ends where the database ends it, and a shape is
analysed the same whatever statement came first."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import oracle
from sqlglot.dialects.dialect import Dialect, Dialects

from sqlwatch._analysis import StatementAnalyzer, analyze, redact_literals, redact_literals_of_any
from sqlwatch._analysis._dialects import scan_flags
from sqlwatch._analysis._redact import EVERY_LEXER


@pytest.mark.parametrize(
    ("dialect", "statements"),
    [
        # psycopg2 binds client-side, so "DATE %(d)s" runs; sqlglot reads neither it
        # nor "DATE ?", but does read the inlined "DATE '2024-01-01'".
        (
            "postgresql",
            [
                "SELECT * FROM events WHERE day = DATE '2024-01-01'",
                "SELECT * FROM events WHERE day = DATE %(day)s",
            ],
        ),
        ("mysql", ["SELECT _utf8mb4'x' FROM events", "SELECT _utf8mb4 %s FROM events"]),
    ],
)
def test_analysis_of_a_shape_does_not_depend_on_which_statement_came_first(
    dialect: str, statements: list[str]
) -> None:
    """Statements of one shape share a cache entry: its answer (tables, parse_ok)
    must not be whatever the first-seen statement's raw text allowed."""
    for order in (statements, statements[::-1]):
        analyzer = StatementAnalyzer(dialect)
        answers = [analyzer(sql) for sql in order]
        assert answers == [StatementAnalyzer(dialect)(sql) for sql in order]
        assert answers[0] == answers[1]
        assert answers[0].tables == ("events",)
        assert answers[0].parse_ok


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM users WHERE token = $é$hunter2$é$",
        "SELECT * FROM users WHERE token = $日本$hunter2$日本$",
    ],
)
def test_dollar_quoted_strings_with_non_ascii_tags_never_leak(sql: str) -> None:
    """PostgreSQL spells a dollar-quote tag like an identifier, non-ASCII letters
    included; the string's body is a value like any other."""
    info = analyze(sql, "postgresql")
    assert info.normalized == "SELECT * FROM users WHERE token = ?"
    assert info.fingerprint == analyze("SELECT * FROM users WHERE token = 'x'").fingerprint
    assert "hunter2" not in redact_literals(sql, "postgresql")
    assert "hunter2" not in redact_literals_of_any(sql, [None])


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("postgresql", "SELECT * FROM accounts WHERE balance > 1_234_567"),
        ("postgresql", "SELECT * FROM accounts WHERE balance > 1_234.567_8"),
        ("postgresql", "SELECT * FROM accounts WHERE balance > 0b1011_0111"),
        ("postgresql", "SELECT * FROM accounts WHERE balance > 0o1_234_567"),
        ("postgresql", "SELECT * FROM accounts WHERE balance > 0xFFFF_1234"),
        ("mysql", "SELECT * FROM accounts WHERE balance > 0b10110111"),
        ("mssql", "SELECT * FROM accounts WHERE balance > $1234.56"),
    ],
)
def test_every_spelling_of_a_number_is_a_value(dialect: str, sql: str) -> None:
    """PostgreSQL 16 reads 0b, 0o and 0x integers and underscores between digits,
    MySQL 0b integers, T-SQL $ money: values, never to be left in the text."""
    info = analyze(sql, dialect)
    assert info.normalized == "SELECT * FROM accounts WHERE balance > ?"
    assert info.fingerprint == analyze("SELECT * FROM accounts WHERE balance > 5").fingerprint
    for redacted in (redact_literals(sql, dialect), redact_literals_of_any(sql, [None])):
        assert redacted == "SELECT * FROM accounts WHERE balance > ?"


def test_identifiers_with_a_dollar_and_digits_are_names() -> None:
    """``a$1`` is one identifier (PostgreSQL, MySQL, Oracle take ``$`` in names)."""
    first = analyze("SELECT price$1 FROM items", "postgresql")
    second = analyze("SELECT price$2 FROM items", "postgresql")
    assert first.normalized == "SELECT price$1 FROM items"
    assert first.fingerprint != second.fingerprint


def test_oracle_binds_of_non_ascii_and_quoted_names_are_parameters() -> None:
    """SQLAlchemy names binds after columns (``:été_1``) and quotes the names
    Oracle would not take bare (``:"été_1"``); an expanding IN list of them must
    collapse like any other, or each length is another fingerprint."""
    table = sa.table("t", sa.column("été"), sa.column("id"))
    fingerprints = set()
    for length in (1, 2, 3):
        statement = sa.select(table.c.id).where(table.c["été"].in_(list(range(length))))
        compiled = statement.compile(
            dialect=oracle.dialect(), compile_kwargs={"render_postcompile": True}
        )
        info = analyze(str(compiled), "oracle")
        assert info.normalized == 'SELECT t.id FROM t WHERE t."été" IN (?)'
        fingerprints.add(info.fingerprint)
    assert len(fingerprints) == 1
    equal = str(sa.select(table.c.id).where(table.c["été"] == 5).compile(dialect=oracle.dialect()))
    assert ':"été_1"' in equal
    assert analyze(equal, "oracle").normalized == 'SELECT t.id FROM t WHERE t."été" = ?'


@pytest.mark.parametrize(
    "literal", ["q'{it's hunter2}'", "Q'[it's hunter2]'", "nq'!it's hunter2!'", "q'<hunter2>'"]
)
def test_oracle_alternative_quoting_never_leaks(literal: str) -> None:
    """Oracle's ``q'{...}'`` takes quotes as text: the literal ends at ``}'``."""
    sql = f"SELECT * FROM users WHERE note = {literal} AND id = 1"
    info = analyze(sql, "oracle")
    assert info.normalized == "SELECT * FROM users WHERE note = ? AND id = ?"
    assert info.tables == ("users",)
    plain = analyze("SELECT * FROM users WHERE note = 'x' AND id = 2")
    assert info.fingerprint == plain.fingerprint
    for redacted in (
        redact_literals(sql, "oracle"),
        redact_literals_of_any(sql, [None]),
        redact_literals_of_any(sql, ["oracle", "postgresql"]),
    ):
        assert "hunter2" not in redacted
    assert redact_literals(sql, "oracle").endswith("? AND id = ?")


@pytest.mark.parametrize(
    ("sql", "summary"),
    [
        ("SELECT * FROM a; DELETE FROM b", "SELECT a DELETE b"),
        (
            "DELETE FROM a; INSERT INTO b VALUES (1); UPDATE c SET x = 1",
            "DELETE a INSERT b UPDATE c",
        ),
        ("INSERT INTO a VALUES (1); COMMIT", "INSERT a COMMIT"),
    ],
)
def test_each_statement_of_a_script_is_summarized_with_its_own_operation(
    sql: str, summary: str
) -> None:
    """psycopg and Alembic's ``op.execute`` send several statements in one text;
    the span name must not call a DELETE a SELECT."""
    assert analyze(sql, "postgresql").summary == summary


NESTED = "SELECT id FROM users /* old: /* v1 */ don't filter */ WHERE token = 'hunter2'"


@pytest.mark.parametrize("dialect", ["postgresql", "mssql"])
def test_nested_comments_end_where_the_database_ends_them(dialect: str) -> None:
    """PostgreSQL and T-SQL nest block comments: the first ``*/`` above ends the
    inner one only, and the apostrophe after it is comment, not a string."""
    info = analyze(NESTED, dialect)
    assert info.normalized == "SELECT id FROM users WHERE token = ?"
    assert info.tables == ("users",)
    assert (
        info.fingerprint == analyze("SELECT id FROM users WHERE token = 'x'", dialect).fingerprint
    )
    assert "hunter2" not in redact_literals(NESTED, dialect)
    assert redact_literals(NESTED, dialect).endswith("WHERE token = ?")


def test_comments_do_not_nest_where_the_database_does_not_nest_them() -> None:
    """In MySQL the first ``*/`` ends the comment: what follows is SQL."""
    info = analyze("SELECT 1 /* a /* b */ FROM t", "mysql")
    assert info.normalized == "SELECT ? FROM t"
    assert info.tables == ("t",)


@pytest.mark.parametrize("dialects", [[None], ["postgresql", "mysql"], ["nonesuch"]])
def test_redaction_for_unknown_dialects_covers_nested_comments(dialects: list[str | None]) -> None:
    assert "hunter2" not in redact_literals_of_any(NESTED, dialects)


def test_redaction_for_unknown_dialects_tries_the_rules_of_every_sqlglot_dialect() -> None:
    """An unknown dialect may be any of them: each one's lexical rules are a candidate."""
    candidates = set(EVERY_LEXER)
    for name in Dialects:
        assert scan_flags(Dialect.get_or_raise(name.value or None)) in candidates, name
