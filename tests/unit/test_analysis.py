"""sqlwatch._analysis: table-driven from SQL fixture files, plus real SQLAlchemy SQL.

The fixture files under tests/fixtures/ carry the semantics (what each statement
is, which statements share a fingerprint); this module reads them, in the
spirit of sqlglot's tests/helpers.py. Property tests live in
test_analysis_properties.py, caches and limits in test_analysis_caches.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import pytest
import sqlglot
from sqlalchemy import (
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect as SQLAlchemyDialect
from sqlalchemy.schema import CreateIndex, CreateTable, DropTable
from sqlalchemy.sql.expression import ClauseElement

from sqlwatch._analysis import (
    TRANSACTION_CONTROL,
    StatementAnalyzer,
    analyze,
    analyzer_for,
    redact_literals,
    redact_literals_of_any,
)
from sqlwatch.records import StatementInfo

FIXTURES = Path(__file__).parent.parent / "fixtures"


# -- fixture files -------------------------------------------------------------


@dataclass
class Case:
    sql: str
    dialect: str | None
    line: int
    expected: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"line{self.line}"


def _unescape(line: str) -> str:
    return line.replace("{nl}", "\n").replace("{tab}", "\t")


def _blocks(path: Path) -> Iterator[tuple[int, str | None, list[str]]]:
    """(first line number, dialect, lines) of each blank-line separated block."""
    lines: list[str] = []
    start = 0
    dialect: str | None = None
    numbered = [*enumerate(path.read_text(encoding="utf-8").splitlines(), 1), (0, "")]
    for number, line in numbered:
        if not line.strip():
            if lines:
                yield start, dialect, lines
            lines, dialect = [], None
        elif line.startswith("# dialect:"):
            dialect = line.split(":", 1)[1].strip()
        elif not line.startswith("#"):
            start = start if lines else number
            lines.append(line)


def analysis_cases() -> list[Case]:
    cases = []
    for line, dialect, lines in _blocks(FIXTURES / "analysis.sql"):
        case = Case(_unescape(lines[0]), dialect, line)
        for expectation in lines[1:]:
            assert expectation.startswith("> "), f"analysis.sql:{line}: bad line {expectation!r}"
            key, _, value = expectation[2:].partition(":")
            case.expected[key.strip()] = value.strip()
        cases.append(case)
    return cases


def groups(name: str) -> list[tuple[int, str | None, list[str]]]:
    return [(line, d, [_unescape(s) for s in sqls]) for line, d, sqls in _blocks(FIXTURES / name)]


def _actual(info: StatementInfo, key: str) -> str:
    value = getattr(info, key)
    if isinstance(value, tuple):
        return ", ".join(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


@pytest.mark.parametrize("case", analysis_cases(), ids=lambda case: case.id)
def test_analysis_fixture(case: Case) -> None:
    info = analyze(case.sql, case.dialect)
    actual = {key: _actual(info, key) for key in case.expected}
    assert actual == case.expected, f"analysis.sql:{case.line}: {case.sql!r}"


@pytest.mark.parametrize(
    ("line", "dialect", "sqls"), groups("fingerprint_equal.sql"), ids=lambda v: str(v)
)
def test_fingerprint_equal(line: int, dialect: str | None, sqls: list[str]) -> None:
    infos = [analyze(sql, dialect) for sql in sqls]
    assert len(sqls) > 1
    assert {i.normalized for i in infos} == {infos[0].normalized}, f"group at line {line}"
    assert {i.fingerprint for i in infos} == {infos[0].fingerprint}, f"group at line {line}"


@pytest.mark.parametrize(
    ("line", "dialect", "sqls"), groups("fingerprint_distinct.sql"), ids=lambda v: str(v)
)
def test_fingerprint_distinct(line: int, dialect: str | None, sqls: list[str]) -> None:
    infos = [analyze(sql, dialect) for sql in sqls]
    assert len(sqls) > 1
    same = [
        (a, b)
        for (a, x), (b, y) in combinations(zip(sqls, infos, strict=True), 2)
        if x.fingerprint == y.fingerprint
    ]
    assert same == [], f"group at line {line}"


def test_fixture_files_are_read() -> None:
    """A broken fixture parser would make the table-driven tests vacuous."""
    assert len(analysis_cases()) > 60
    assert len(groups("fingerprint_equal.sql")) > 15
    assert len(groups("fingerprint_distinct.sql")) > 10
    assert any(dialect == "postgresql" for _, dialect, _ in groups("fingerprint_equal.sql"))


# -- the record ----------------------------------------------------------------


def test_fingerprint_is_a_stable_hex_digest() -> None:
    """Stable across processes: blake2b of the normalized text, not hash()."""
    info = analyze("SELECT id FROM users WHERE id = 1")
    assert info.fingerprint == "8120daaf9a4d5ef2"
    assert info.normalized == "SELECT id FROM users WHERE id = ?"


def test_summary_is_capped_at_whole_names() -> None:
    names = [f"table_with_a_rather_long_name_{i:03}" for i in range(20)]
    info = analyze("SELECT * FROM " + ", ".join(names))
    assert len(info.tables) == 20
    assert len(info.summary) <= 255
    assert info.summary.startswith("SELECT table_with_a_rather_long_name_000 ")
    assert info.summary.split(" ")[-1] in names  # never a cut name


def test_transaction_control_operations() -> None:
    assert {"BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE"} <= TRANSACTION_CONTROL
    for sql in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT x", "RELEASE SAVEPOINT x"):
        assert analyze(sql).operation in TRANSACTION_CONTROL
    for sql in ("SELECT 1", "SET x = 1", "INSERT INTO t VALUES (1)"):
        assert analyze(sql).operation not in TRANSACTION_CONTROL


# -- dialect names ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["sqlite", "postgresql", "postgres", "PostgreSQL", "mysql", "mariadb", "mssql", "tsql"]
)
def test_analyze_accepts_sqlalchemy_and_sqlglot_names(name: str) -> None:
    assert analyze("SELECT a FROM b", name).tables == ("b",)


def test_analyze_rejects_an_unknown_dialect_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^unknown dialect 'postgress'; expected one of: ") as e:
        analyze("SELECT 1", "postgress")
    message = str(e.value)
    assert "\n" not in message
    assert "postgresql" in message
    assert "tsql" in message


def test_analyzer_for_shares_one_analyzer_per_dialect() -> None:
    assert analyzer_for("postgresql") is analyzer_for("postgresql")
    assert analyzer_for("postgresql") is analyzer_for("postgres")
    assert analyzer_for("sqlite") is not analyzer_for("postgresql")


def test_unknown_dialects_fall_back_to_generic_sql_silently() -> None:
    analyzer = analyzer_for("some_third_party_dialect")
    assert analyzer is analyzer_for(None)
    assert analyzer.dialect == ""
    assert StatementAnalyzer("nonsense")("SELECT a FROM b").tables == ("b",)


def test_dialects_lex_differently() -> None:
    """A double-quoted text is a string in MySQL, an identifier elsewhere."""
    assert analyze('SELECT "x" FROM t', "mysql").normalized == "SELECT ? FROM t"
    assert analyze('SELECT "x" FROM t', "postgresql").normalized == 'SELECT "x" FROM t'
    assert analyze("SELECT [x] FROM t", "mssql").normalized == "SELECT [x] FROM t"
    assert analyze("SELECT a[1] FROM t", "postgresql").normalized == "SELECT a[?] FROM t"


# -- never raises -------------------------------------------------------------------

NASTY = {
    "empty": "",
    "whitespace": " \n\t ",
    "only a comment": "-- nothing here",
    "only a block comment": "/* nothing */",
    "unterminated block comment": "SELECT 1 /* no end",
    "unterminated string": "SELECT 'abc",
    "unterminated identifier": 'SELECT "abc FROM t',
    "unterminated dollar quote": "SELECT $a$ text",
    "trailing backslash": "SELECT 'abc\\",
    "nul bytes": "SELECT \x00 FROM \x00t WHERE a = '\x00'",
    "lone surrogate": "SELECT '\ud800' FROM t\udfff",
    "only punctuation": "(((,,,)))",
    "unbalanced": ")))(((",
    "semicolons": ";;;",
    "question marks": "????",
    "unicode": "SELECT ñame, 名前 FROM ユーザー WHERE x = '✓'",
    "emoji identifiers": 'SELECT "🙂" FROM "📦"',
    "keyword only": "WITH",
    "bad with": "WITH x AS (",
    "lonely in": "IN (",
    "lonely values": "VALUES",
    "values without rows": "INSERT INTO t VALUES",
    "array without end": "SELECT ARRAY[1, 2",
    "long word": "x" * 100_000,
    "deep nesting": "SELECT " + "(" * 5000 + "1" + ")" * 5000,
    "deep subqueries": "SELECT * FROM " + "(SELECT * FROM " * 600 + "t" + ") x" * 600,
    "deep in lists": "SELECT * FROM t WHERE a IN (" * 200 + "1" + ")" * 200,
    "long expression chain": "SELECT " + " + ".join(["a"] * 20_000),
}


@pytest.mark.parametrize("dialect", [None, "sqlite", "postgresql", "mysql", "mssql"])
@pytest.mark.parametrize("sql", NASTY.values(), ids=NASTY.keys())
def test_nasty_input_never_raises(sql: str, dialect: str | None) -> None:
    info = StatementAnalyzer(dialect)(sql)
    assert isinstance(info, StatementInfo)
    assert info.operation == info.operation.upper()
    assert info.operation
    assert len(info.summary) <= 255
    assert len(info.fingerprint) == 16


def test_non_string_input_never_raises() -> None:
    analyzer = StatementAnalyzer("sqlite")
    assert analyzer(b"SELECT a FROM b").tables == ("b",)  # type: ignore[arg-type]
    assert analyzer(["unhashable"]).parse_ok is False  # type: ignore[arg-type]


def test_deep_nesting_is_not_parsed() -> None:
    """sqlglot recurses per bracket level: past a depth it is not even tried."""
    analyzer = StatementAnalyzer("postgresql")
    info = analyzer(NASTY["deep subqueries"])
    assert analyzer.parse_count == 0
    assert info.parse_ok is False
    assert info.operation == "SELECT"


# -- sqlglot's logging -------------------------------------------------------------


def test_sqlglot_fallback_warnings_are_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    """sqlglot warns when it falls back to a Command; for sqlwatch that is data."""
    with caplog.at_level(logging.DEBUG, logger="sqlglot"):
        info = StatementAnalyzer("postgresql")("VACUUM ANALYZE users")
    assert info.operation == "VACUUM"
    assert info.parse_ok is False
    assert caplog.records == []


def test_sqlglot_warnings_outside_sqlwatch_still_reach_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="sqlglot"):
        sqlglot.parse_one("VACUUM ANALYZE users", read="postgres")
    assert any("unsupported syntax" in r.getMessage() for r in caplog.records)


# -- real SQLAlchemy SQL ---------------------------------------------------------------

metadata = MetaData()
users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
)
addresses = Table(
    "addresses",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", ForeignKey("users.id")),
    Column("email", String(100)),
)
user_table = Table("user", metadata, Column("id", Integer, primary_key=True), schema="public")

DIALECTS: dict[str, SQLAlchemyDialect] = {
    "sqlite": create_engine("sqlite://").dialect,
    "postgresql": postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
}


def compiled(statement: ClauseElement, dialect: SQLAlchemyDialect, **kwargs: object) -> str:
    return str(
        statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True, **kwargs})
    )


SQLALCHEMY_CASES = [
    (select(users).where(users.c.id == 5), "SELECT", ("users",), "SELECT users"),
    (
        select(users.c.name, addresses.c.email).join_from(users, addresses),
        "SELECT",
        ("users", "addresses"),
        "SELECT users addresses",
    ),
    (
        select(users).where(users.c.id.in_(select(addresses.c.user_id))).limit(10),
        "SELECT",
        ("users", "addresses"),
        "SELECT users SELECT addresses",
    ),
    (select(func.count()).select_from(users), "SELECT", ("users",), "SELECT users"),
    (select(user_table).where(user_table.c.id == 1), "SELECT", ("public.user",), None),
    (insert(users).values(name="x"), "INSERT", ("users",), "INSERT users"),
    (update(users).where(users.c.id == 1).values(name="z"), "UPDATE", ("users",), "UPDATE users"),
    (delete(users).where(users.c.id == 1), "DELETE", ("users",), "DELETE users"),
    (CreateTable(addresses), "CREATE", ("addresses",), "CREATE TABLE addresses"),
    (
        CreateIndex(Index("ix_addresses_email", addresses.c.email)),
        "CREATE",
        ("addresses",),
        "CREATE INDEX ix_addresses_email",
    ),
    (DropTable(users), "DROP", ("users",), "DROP TABLE users"),
]


@pytest.mark.parametrize("dialect_name", DIALECTS)
@pytest.mark.parametrize(
    ("statement", "operation", "tables", "summary"),
    SQLALCHEMY_CASES,
    ids=[f"{case[1]}-{i}" for i, case in enumerate(SQLALCHEMY_CASES)],
)
def test_sqlalchemy_statements(
    dialect_name: str,
    statement: ClauseElement,
    operation: str,
    tables: tuple[str, ...],
    summary: str | None,
) -> None:
    info = analyze(compiled(statement, DIALECTS[dialect_name]), dialect_name)
    assert info.parse_ok
    assert info.operation == operation
    assert info.tables == tables
    if summary is not None:
        assert info.summary == summary


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_sqlalchemy_in_lists_of_any_length_share_a_fingerprint(dialect_name: str) -> None:
    dialect = DIALECTS[dialect_name]
    sqls = [
        compiled(select(addresses).where(addresses.c.user_id.in_(list(range(n)))), dialect)
        for n in (1, 2, 3, 50)
    ]
    assert len(set(sqls)) == 4
    assert len({analyze(sql, dialect_name).fingerprint for sql in sqls}) == 1


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_sqlalchemy_multi_row_inserts_share_a_fingerprint(dialect_name: str) -> None:
    dialect = DIALECTS[dialect_name]
    sqls = [
        compiled(insert(users).values([{"name": str(i)} for i in range(n)]), dialect)
        for n in (2, 3, 20)
    ]
    assert len(set(sqls)) == 3
    assert len({analyze(sql, dialect_name).fingerprint for sql in sqls}) == 1


def test_sqlalchemy_inlined_literals_share_the_bound_fingerprint() -> None:
    dialect = DIALECTS["sqlite"]
    bound = compiled(select(users).where(users.c.name == "ann"), dialect)
    inlined = [
        compiled(select(users).where(users.c.name == name), dialect, literal_binds=True)
        for name in ("ann", "bob's")
    ]
    assert "'bob''s'" in inlined[1]
    fingerprints = {analyze(sql, "sqlite").fingerprint for sql in [bound, *inlined]}
    assert len(fingerprints) == 1


def test_sqlalchemy_savepoints_share_a_fingerprint() -> None:
    """SQLAlchemy numbers savepoints; each number must not make a new fingerprint."""
    names = [f"sa_savepoint_{n}" for n in (1, 2, 17)]
    for template in ("SAVEPOINT {}", "RELEASE SAVEPOINT {}", "ROLLBACK TO SAVEPOINT {}"):
        infos = [analyze(template.format(name), "postgresql") for name in names]
        assert len({info.fingerprint for info in infos}) == 1
        assert all("sa_savepoint" not in info.normalized for info in infos)


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE name = 'hunter2'", "SELECT * FROM t WHERE name = ?"),
        ("SELECT * FROM t WHERE id = 42 AND x = :x", "SELECT * FROM t WHERE id = ? AND x = :x"),
        (
            "SELECT * FROM t WHERE id = %(id_1)s::INTEGER",
            "SELECT * FROM t WHERE id = %(id_1)s::INTEGER",
        ),
        (
            'SELECT "it\'s" FROM t WHERE a = $1 AND b = $$x$$',
            'SELECT "it\'s" FROM t WHERE a = $1 AND b = ?',
        ),
        ("SELECT t1.c2 FROM t1 WHERE c = ?", "SELECT t1.c2 FROM t1 WHERE c = ?"),
        ("SELECT 1 /* 'secret' */", "SELECT ?  "),
    ],
)
def test_redact_literals_keeps_the_statement_but_not_its_values(sql: str, expected: str) -> None:
    assert redact_literals(sql) == expected


MYSQL_STRING = "SELECT id FROM users WHERE token = \"tok_SECRET\" AND note = 'it\\'s SECRET'"
PG_BACKSLASH = "SELECT \"user\".id FROM \"user\" WHERE path = 'C:\\' AND token = 'SECRET'"
SQLITE_BRACKET = "SELECT [it's] FROM t WHERE token = 'SECRET'"


@pytest.mark.parametrize(
    ("sql", "dialects", "expected"),
    [
        (MYSQL_STRING, ["mysql"], "SELECT id FROM users WHERE token = ? AND note = ?"),
        (MYSQL_STRING, ["mariadb"], "SELECT id FROM users WHERE token = ? AND note = ?"),
        (
            PG_BACKSLASH,
            ["postgresql"],
            'SELECT "user".id FROM "user" WHERE path = ? AND token = ?',
        ),
        (SQLITE_BRACKET, ["sqlite"], "SELECT [it's] FROM t WHERE token = ?"),
        # one of several, or unknown: whatever any of them reads as a value goes
        (
            MYSQL_STRING,
            ["postgresql", "mysql"],
            "SELECT id FROM users WHERE token = ? AND note = ?'",
        ),
        (PG_BACKSLASH, ["postgresql", "mysql"], "SELECT ?.id FROM ? WHERE path = ?'"),
        (PG_BACKSLASH, [None], "SELECT ?.id FROM ? WHERE path = ?'"),
        (SQLITE_BRACKET, ["a-third-party-dialect"], "SELECT [it?'"),
        (SQLITE_BRACKET, [], "SELECT [it?'"),
        ("SELECT a #>> ? FROM t -- x", [None], "SELECT a  "),
    ],
)
def test_redact_literals_of_any_leaves_no_value_of_any_dialect(
    sql: str, dialects: list[str | None], expected: str
) -> None:
    """With its own dialect's rules each statement above is redacted readably; with
    another's, "SECRET" leaked (a MySQL string is a PostgreSQL identifier, a
    PostgreSQL 'C:\\' a MySQL string running on to the next quote)."""
    assert redact_literals_of_any(sql, dialects) == expected
    assert "SECRET" not in redact_literals_of_any(sql, [None])
    if len(dialects) == 1 and dialects[0] in ("mysql", "postgresql", "sqlite"):
        assert redact_literals_of_any(sql, dialects) == redact_literals(sql, dialects[0])
