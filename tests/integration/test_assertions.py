"""``assert_max_queries`` and ``assert_no_n_plus_one``: pass, fail, and what the failure says.

The messages are asserted line by line: they must be enough to fix the code
from a CI log, without ``-v``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session, selectinload, sessionmaker

import sqlwatch
from sqlwatch import NPlusOneDetected, QueryCountExceeded
from tests.integration.helpers import call_site_below, seeded_sessions
from tests.models import User


@pytest.fixture
def db(engine: Engine) -> sessionmaker[Session]:
    return seeded_sessions(engine)


# -- assert_no_n_plus_one -------------------------------------------------------------


ADDRESS_COLUMNS = (
    r"SELECT addresses\.id(?: AS addresses_id)?, addresses\.email(?: AS addresses_email)?, "
    r"addresses\.user_id(?: AS addresses_user_id)?"
)
"""A lazy load's columns: SQLAlchemy 2.0 labels them (``AS addresses_id``), 2.1 does not."""


def test_no_n_plus_one_passes_with_eager_loading(db: sessionmaker[Session]) -> None:
    with sqlwatch.assert_no_n_plus_one() as w, db() as session:
        users = session.scalars(select(User).options(selectinload(User.addresses))).all()
        assert sum(len(user.addresses) for user in users) == 6

    assert w.query_count == 2


def test_n_plus_one_message(db: sessionmaker[Session]) -> None:
    with (  # noqa: PT012
        pytest.raises(NPlusOneDetected) as raised,
        sqlwatch.assert_no_n_plus_one(),
        db() as session,
    ):
        for user in session.scalars(select(User)).all():
            site = call_site_below()
            _ = user.addresses

    assert isinstance(raised.value, AssertionError)
    lines = str(raised.value).splitlines()
    assert lines[0] == "1 N+1 query pattern detected:"
    assert lines[1].startswith("  1. lazy load of User.addresses, one query per User (3 queries, ")
    assert lines[1].endswith(" ms)")
    assert lines[2] == f"     at {site}"
    assert re.match(ADDRESS_COLUMNS, lines[3].strip())
    assert lines[3].endswith("= addresses.user_id")
    assert lines[4].startswith("     parents loaded by: SELECT users.id, users.name FROM users")
    assert lines[5] == (
        "     fix: Add .options(selectinload(User.addresses)) to the query that loads the "
        "User objects, so all their addresses load in one more query instead of one query "
        "per User."
    )
    assert lines[6] == "(a loop the team has accepted: wrap it in sqlwatch.ignore_n_plus_one(...))"
    assert len(lines) == 7


def test_n_plus_one_message_lists_every_finding(db: sessionmaker[Session], engine: Engine) -> None:
    with (  # noqa: PT012
        pytest.raises(NPlusOneDetected) as raised,
        sqlwatch.assert_no_n_plus_one(name="user page"),
        db() as session,
    ):
        for user in session.scalars(select(User)).all():
            _ = user.hobbies
        with engine.connect() as conn:
            for user_id in (1, 2):
                site = call_site_below()
                conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})

    message = str(raised.value)
    assert message.startswith("2 N+1 query patterns detected in 'user page':\n")
    assert "  1. lazy load of User.hobbies, one query per User (3 queries, " in message
    assert "     fix: Add .options(selectinload(User.hobbies))" in message
    assert "  2. SELECT users repeated with different parameters (2 queries, " in message
    assert f"     at {site}\n     SELECT name FROM users WHERE id = ?\n" in message
    assert "     fix: The same SELECT on users runs once per value from this line" in message


def test_deferred_column_message(db: sessionmaker[Session]) -> None:
    from tests.models import Post

    with (  # noqa: PT012
        pytest.raises(NPlusOneDetected, match=r"column load of Post\.body, one query per Post"),
        sqlwatch.assert_no_n_plus_one(),
        db() as session,
    ):
        for post in session.scalars(select(Post)).all():
            _ = post.body


def test_no_n_plus_one_options(db: sessionmaker[Session]) -> None:
    with sqlwatch.assert_no_n_plus_one(n_plus_one_threshold=4), db() as session:
        for user in session.scalars(select(User)).all():
            _ = user.addresses
    with sqlwatch.assert_no_n_plus_one(ignore=["User.addresses"]), db() as session:
        for user in session.scalars(select(User)).all():
            _ = user.addresses
    with (
        pytest.raises(TypeError, match="unknown sqlwatch option 'threshold'"),
        sqlwatch.assert_no_n_plus_one(threshold=3),
    ):
        pass


def test_ignore_n_plus_one_inside_the_assertion(db: sessionmaker[Session]) -> None:
    with sqlwatch.assert_no_n_plus_one(), db() as session:
        users = session.scalars(select(User)).all()
        with sqlwatch.ignore_n_plus_one("User.addresses", reason="tracked in #42"):
            for user in users:
                _ = user.addresses


def test_an_exception_in_the_block_passes_through(db: sessionmaker[Session]) -> None:
    with pytest.raises(KeyError, match="boom"), sqlwatch.assert_no_n_plus_one(), db() as session:  # noqa: PT012
        for user in session.scalars(select(User)).all():
            _ = user.addresses
        raise KeyError("boom")


# -- assert_max_queries ---------------------------------------------------------------


def test_max_queries_at_the_limit(db: sessionmaker[Session]) -> None:
    with sqlwatch.assert_max_queries(2) as w, db() as session:
        session.scalars(select(User).options(selectinload(User.addresses))).all()

    assert w.query_count == 2


def test_max_queries_message(db: sessionmaker[Session]) -> None:
    with (  # noqa: PT012
        sqlwatch.watch() as seen,
        pytest.raises(QueryCountExceeded) as raised,
        sqlwatch.assert_max_queries(1),
        db() as session,
    ):
        first = call_site_below()
        users = session.scalars(select(User).order_by(User.id)).all()
        second = call_site_below()
        _ = users[0].addresses

    one, two = seen.queries  # the same statements, seen by an enclosing watch
    assert isinstance(raised.value, AssertionError)
    assert str(raised.value) == (
        "expected at most 1 queries, 2 ran (transaction control not counted):\n"
        f"  1. SELECT users at {first}\n"
        f"     {one.normalized}\n"
        f"  2. SELECT addresses at {second}\n"
        f"     {two.normalized}"
    )
    assert one.normalized == "SELECT users.id, users.name FROM users ORDER BY users.id"
    assert re.match(ADDRESS_COLUMNS, two.normalized)


def test_transaction_control_is_left_out_unless_asked(
    db: sessionmaker[Session], engine: Engine
) -> None:
    def work() -> None:
        with engine.connect() as conn, conn.begin():
            for _ in range(2):
                with conn.begin_nested():
                    conn.execute(text("SELECT 1"))

    with sqlwatch.assert_max_queries(2) as w:
        work()
    assert w.report.operations.get("SAVEPOINT") == 2

    with (
        pytest.raises(QueryCountExceeded, match=r"expected at most 2 queries, \d+ ran:\n"),
        sqlwatch.assert_max_queries(2, include_tcl=True),
    ):
        work()


def test_count_one_engine_or_all(
    db: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> None:
    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    sqlwatch.instrument(other, exporters=())
    try:

        def work() -> None:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            with other.connect() as conn:
                conn.execute(text("SELECT 2"))
                conn.execute(text("SELECT 3"))

        with sqlwatch.assert_max_queries(1, engines=engine):
            work()
        with sqlwatch.assert_max_queries(2, engines=[other]):
            work()
        with (
            pytest.raises(QueryCountExceeded, match="expected at most 2 queries, 3 ran"),
            sqlwatch.assert_max_queries(2),
        ):
            work()
    finally:
        other.dispose()


def test_max_queries_counts_past_max_statements(db: sessionmaker[Session], engine: Engine) -> None:
    with (  # noqa: PT012
        pytest.raises(QueryCountExceeded) as raised,
        sqlwatch.assert_max_queries(3, name="many"),
        engine.connect() as conn,
    ):
        for i in range(12_000):
            conn.execute(text("SELECT :i"), {"i": i})

    message = str(raised.value)
    assert message.startswith("expected at most 3 queries in 'many', 12000 ran")
    assert message.endswith("  ... and 2000 more not kept (max_statements)")


def test_max_queries_validates_n() -> None:
    for bad in (-1, 1.5, True, "3"):
        with (
            pytest.raises(ValueError, match="needs an integer n >= 0"),
            sqlwatch.assert_max_queries(bad),  # type: ignore[arg-type]
        ):
            pass


def test_assertions_decorate_functions(db: sessionmaker[Session]) -> None:
    def emails() -> list[str]:
        with db() as session:
            users = session.scalars(select(User)).all()
            return [address.email for user in users for address in user.addresses]

    with pytest.raises(QueryCountExceeded, match="expected at most 1 queries, 4 ran"):
        sqlwatch.assert_max_queries(1)(emails)()
    with pytest.raises(NPlusOneDetected, match=r"lazy load of User\.addresses"):
        sqlwatch.assert_no_n_plus_one()(emails)()
    checked = sqlwatch.assert_no_n_plus_one()(sqlwatch.ignore_n_plus_one()(emails))
    assert len(checked()) == 6
    assert len(checked()) == 6  # each call a block of its own


def test_decorating_a_generator_function_is_refused() -> None:
    """Its body runs as it is iterated, after the call: a block around the call
    would check nothing."""

    def rows() -> Iterator[int]:
        yield 1

    async def async_rows() -> AsyncIterator[int]:
        yield 1

    for helper in (
        sqlwatch.assert_max_queries(1),
        sqlwatch.assert_no_n_plus_one(),
        sqlwatch.ignore_n_plus_one(),
    ):
        for fn in (rows, async_rows):
            with pytest.raises(TypeError, match="cannot decorate the generator function"):
                helper(fn)
