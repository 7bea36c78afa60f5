"""Properties of sqlwatch._analysis that must hold for every input, checked with hypothesis.

Statements are built from token templates, so each property varies exactly one
thing (whitespace, keyword case, literal values, list lengths, comments) and
asserts the fingerprint does not move.
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlglot.tokens import Tokenizer

from sqlwatch._analysis import StatementAnalyzer, analyze, redact_literals_of_any
from sqlwatch._analysis._keywords import RESERVED

DIALECTS = [None, "sqlite", "postgresql", "mysql", "mssql", "oracle"]
SQLISH = st.text(
    alphabet=st.sampled_from(list("'\"`[]$-/*#?%:().,;0123456789eExXnNuU&@\\ \n\tabcSELECTFROM")),
    max_size=80,
)
PROPERTY_SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


# -- never raises ------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(sql=st.text(), dialect=st.sampled_from(DIALECTS))
def test_any_text_is_analyzed(sql: str, dialect: str | None) -> None:
    info = StatementAnalyzer(dialect)(sql)
    assert re.fullmatch(r"[0-9a-f]{16}", info.fingerprint)
    assert info.operation == "OTHER" or re.fullmatch(r"[A-Z][A-Z_]*", info.operation)
    assert 0 < len(info.summary) <= 255
    if not info.parse_ok:
        assert info.tables == ()
        assert info.summary == info.operation


@PROPERTY_SETTINGS
@given(sql=SQLISH, dialect=st.sampled_from(DIALECTS))
def test_sql_punctuation_soup_is_analyzed(sql: str, dialect: str | None) -> None:
    """Quotes, comments and parameter markers in every order: the lexer's corners."""
    info = StatementAnalyzer(dialect)(sql)
    assert len(info.fingerprint) == 16
    assert StatementAnalyzer(dialect)(sql) == info  # deterministic


# -- templates -------------------------------------------------------------------------

# Tokens separated by single spaces; "{}" marks a literal slot.
TEMPLATES = [
    "SELECT users . id , users . name FROM users WHERE users . id = {} AND users . name = {}",
    "SELECT count ( * ) FROM orders JOIN users ON users . id = orders . user_id WHERE total > {}",
    "UPDATE users SET name = {} , visits = visits + {} WHERE id = {}",
    "DELETE FROM sessions WHERE expires_at < {} OR user_id = {}",
    "INSERT INTO events ( kind , payload ) VALUES ( {} , {} )",
    "SELECT * FROM t WHERE a BETWEEN {} AND {} ORDER BY a DESC LIMIT {}",
    "WITH r AS ( SELECT id FROM orders WHERE total > {} ) SELECT * FROM r JOIN users"
    " ON users . id = r . id",
    "SELECT id FROM users WHERE id IN ( SELECT user_id FROM orders WHERE total = {} )",
]
WORDISH = re.compile(r"[\w'\"`?{}]")


def literals(dialect: str | None = None) -> st.SearchStrategy[str]:
    """Literal values and parameters as they appear in SQL; text marked with "zq"."""

    def quoted(text: str) -> str:
        text = ("zq" + text).replace("'", "''")
        if dialect == "mysql":  # the only dialect here whose strings take backslash escapes
            text = text.replace("\\", "\\\\")
        return f"'{text}'"

    return st.one_of(
        st.integers(-(10**12), 10**12).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda f: repr(abs(f))),
        st.text(st.characters(blacklist_categories=["Cs"]), max_size=12).map(quoted),
        st.sampled_from(["?", ":name", "%s", "%(p_1)s", "$1", "?3"]),
    )


def fill(template: str, values: list[str]) -> str:
    return template.format(*values)


def joined(tokens: list[str], separators: list[str]) -> str:
    return "".join(token + separator for token, separator in zip(tokens, separators, strict=True))


@st.composite
def respaced(draw: st.DrawFn, template: str) -> str:
    """The template with every separator redrawn: none where SQL allows it."""
    tokens = template.split(" ")
    separators = []
    for left, right in zip(tokens, [*tokens[1:], ""], strict=True):
        needs_space = bool(WORDISH.search(left[-1:])) and bool(WORDISH.search(right[:1]))
        minimum = 1 if needs_space else 0
        separators.append(draw(st.text(st.sampled_from(" \t\n\r"), min_size=minimum, max_size=3)))
    return draw(st.text(st.sampled_from(" \n"), max_size=2)) + joined(tokens, separators)


@PROPERTY_SETTINGS
@given(data=st.data(), template=st.sampled_from(TEMPLATES), dialect=st.sampled_from(DIALECTS))
def test_whitespace_does_not_change_the_fingerprint(
    data: st.DataObject, template: str, dialect: str | None
) -> None:
    values = ["1", "'x'", "2"]
    reference = analyze(fill(template, values), dialect)
    variant = analyze(fill(data.draw(respaced(template)), values), dialect)
    assert variant.normalized == reference.normalized
    assert variant.fingerprint == reference.fingerprint


@PROPERTY_SETTINGS
@given(data=st.data(), template=st.sampled_from(TEMPLATES), dialect=st.sampled_from(DIALECTS))
def test_keyword_case_does_not_change_the_fingerprint(
    data: st.DataObject, template: str, dialect: str | None
) -> None:
    tokens = template.split(" ")
    recased = [
        data.draw(st.sampled_from([t.lower(), t.upper(), t.capitalize()]))
        if t.upper() in RESERVED
        else t
        for t in tokens
    ]
    values = ["1", "'x'", "2"]
    reference = analyze(fill(template, values), dialect)
    variant = analyze(fill(" ".join(recased), values), dialect)
    assert variant.fingerprint == reference.fingerprint
    assert variant.tables == reference.tables


@PROPERTY_SETTINGS
@given(data=st.data(), template=st.sampled_from(TEMPLATES), dialect=st.sampled_from(DIALECTS))
def test_literal_values_do_not_change_the_fingerprint_and_never_leak(
    data: st.DataObject, template: str, dialect: str | None
) -> None:
    slots = template.count("{}")
    analyzer = StatementAnalyzer(dialect)
    first = analyzer(
        fill(template, data.draw(st.lists(literals(dialect), min_size=slots, max_size=slots)))
    )
    second = analyzer(
        fill(template, data.draw(st.lists(literals(dialect), min_size=slots, max_size=slots)))
    )
    assert second.fingerprint == first.fingerprint
    assert second.tables == first.tables
    assert second.summary == first.summary
    for info in (first, second):
        assert info.parse_ok
        assert "zq" not in info.normalized
        assert "zq" not in info.summary
    assert analyzer.parse_count == 1  # one shape family, one parse


@PROPERTY_SETTINGS
@given(
    lengths=st.lists(st.integers(1, 30), min_size=2, max_size=4),
    data=st.data(),
    dialect=st.sampled_from(DIALECTS),
)
def test_list_lengths_do_not_change_the_fingerprint(
    lengths: list[int], data: st.DataObject, dialect: str | None
) -> None:
    analyzer = StatementAnalyzer(dialect)
    values = data.draw(st.lists(literals(dialect), min_size=60, max_size=60))
    in_lists = {
        analyzer(f"SELECT * FROM t WHERE id IN ({', '.join(values[:n])})").fingerprint
        for n in lengths
    }
    rows = {
        analyzer(
            "INSERT INTO t (a, b) VALUES "
            + ", ".join(f"({values[2 * i]}, {values[2 * i + 1]})" for i in range(n))
        ).fingerprint
        for n in lengths
    }
    assert len(in_lists) == 1
    assert len(rows) == 1
    assert analyzer.parse_count == 2


COMMENT_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=20)


def _comment_body(text: str) -> str:
    """``text`` made a comment's body in every dialect: no ``*/`` to end it, and
    no ``/*`` (nor a final ``/`` that makes one with the closing ``*/``) that
    opens a nested comment where comments nest (PostgreSQL, T-SQL)."""
    while "*/" in text or "/*" in text:
        text = text.replace("*/", "").replace("/*", "")
    return text.rstrip("/")


@st.composite
def commented(draw: st.DrawFn, statement: str) -> str:
    """The statement with comments, of both kinds, dropped between its tokens."""
    tokens = statement.split(" ")
    separators = []
    for _ in tokens:
        kind = draw(st.sampled_from(["space", "block", "line"]))
        if kind == "block":
            separators.append(f" /*{_comment_body(draw(COMMENT_TEXT))}*/ ")
        elif kind == "line":
            body = draw(COMMENT_TEXT).replace("\n", "").replace("\r", "")
            separators.append(f" --{body}\n")
        else:
            separators.append(" ")
    return joined(tokens, separators)


@PROPERTY_SETTINGS
@given(data=st.data(), template=st.sampled_from(TEMPLATES), dialect=st.sampled_from(DIALECTS))
def test_comments_do_not_change_the_fingerprint(
    data: st.DataObject, template: str, dialect: str | None
) -> None:
    values = ["1", "'x'", "2"]
    reference = analyze(fill(template, values), dialect)
    variant = analyze(data.draw(commented(fill(template, values))), dialect)
    assert variant.fingerprint == reference.fingerprint


@PROPERTY_SETTINGS
@given(table=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True))
def test_other_tables_change_the_fingerprint(table: str) -> None:
    # sqlglot's own keywords (``xor``, ``glob``) are no table names to it unquoted.
    assume(table.upper() not in RESERVED and table.upper() not in Tokenizer.KEYWORDS)
    assume(table != "users")
    reference = analyze("SELECT id FROM users WHERE id = 1")
    other = analyze(f"SELECT id FROM {table} WHERE id = 1")
    assert other.fingerprint != reference.fingerprint
    assert other.tables == (table,)
    assert other.summary == f"SELECT {table}"


# -- redaction ---------------------------------------------------------------------


def written_literals(dialect: str | None) -> st.SearchStrategy[str]:
    """String literals as ``dialect`` writes them, their text marked "zq": MySQL
    escapes with backslashes and also quotes strings with ``"``; the others
    double the quote, and a backslash is an ordinary character."""
    text = st.text(st.sampled_from(list("ab'\"\\ %?:$-/*#[]`\n")), max_size=10)

    def single(body: str) -> str:
        if dialect == "mysql":
            return "'zq" + body.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return "'zq" + body.replace("'", "''") + "'"

    def double(body: str) -> str:
        return '"zq' + body.replace("\\", "\\\\").replace('"', '\\"') + '"'

    written = [text.map(single), st.integers(0, 10**6).map(lambda n: f"{n}2718")]
    if dialect == "mysql":
        written.append(text.map(double))
    return st.one_of(written)


@PROPERTY_SETTINGS
@given(
    data=st.data(),
    template=st.sampled_from(TEMPLATES),
    dialect=st.sampled_from(DIALECTS),
    others=st.lists(st.sampled_from([*DIALECTS, "unknown-dialect"]), max_size=3),
)
def test_redaction_for_any_set_of_dialects_leaves_no_value_of_any(
    data: st.DataObject, template: str, dialect: str | None, others: list[str | None]
) -> None:
    """A report redacts a statement whose dialect is one of several (or unknown)
    as each of them would lex it: no value survives, whichever ran it."""
    slots = template.count("{}")
    values = data.draw(st.lists(written_literals(dialect), min_size=slots, max_size=slots))
    sql = fill(template, values)
    candidates = data.draw(st.permutations([dialect or "sqlite", *others]))
    for redacted in (redact_literals_of_any(sql, candidates), redact_literals_of_any(sql, [None])):
        assert "zq" not in redacted
        assert "2718" not in redacted


# -- history --------------------------------------------------------------------------

# Letters whose Unicode case mapping lands on ASCII ones: the long s U+017F
# upper-cases to "S", the dotless i U+0131 to "I", the ligature U+FB06 to "ST";
# Python's re.IGNORECASE matches the Kelvin sign U+212A with "k". No database
# reads "\u017felect" as SELECT.
LOOKALIKES = {
    "s": "\u017f",
    "i": "\u0131",
    "I": "\u0130",
    "k": "\u212a",
    "ff": "\ufb00",
    "st": "\ufb06",
}
STATEMENT_WORDS = [
    *("select", "insert", "into", "values", "update", "set", "delete", "from", "where"),
    *("in", "like", "offset", "distinct", "exists", "array", "savepoint", "release"),
    *("begin", "commit", "rollback", "to", "with", "as", "users", "t", "SELECT", "VALUES"),
    *("1", "'a'", "?", "(", ")", "[", "]", ",", "=", ";", "."),
]


@st.composite
def twins(draw: st.DrawFn) -> tuple[str, str]:
    """A statement, and the same with some letters swapped for Unicode look-alikes."""
    words = draw(st.lists(st.sampled_from(STATEMENT_WORDS), min_size=1, max_size=10))
    plain = twin = " ".join(words)
    for letter, lookalike in LOOKALIKES.items():
        if draw(st.booleans()):
            twin = twin.replace(letter, lookalike)
    return plain, twin


@PROPERTY_SETTINGS
@given(
    pair=st.one_of(twins(), st.tuples(st.text(), st.text()), st.tuples(SQLISH, SQLISH)),
    swap=st.booleans(),
    dialect=st.sampled_from(DIALECTS),
)
def test_analysis_does_not_depend_on_what_was_analyzed_before(
    pair: tuple[str, str], swap: bool, dialect: str | None
) -> None:
    """The caches are keyed by what each step produced: two strings meeting
    there must have the same answer, or the second gets the first's."""
    first, second = reversed(pair) if swap else pair
    analyzer = StatementAnalyzer(dialect)
    analyzer(first)
    assert analyzer(second) == StatementAnalyzer(dialect)(second)
