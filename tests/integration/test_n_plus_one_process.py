"""N+1 in the process-wide report (``sqlwatch.report()``): judged per unit of work.

The process-wide scope lives as long as the process; counting "the same
relationship for two parents" across it would flag every request that lazily
loads one object. Its unit of work is the outermost open scope (a request, a
test, a watch), or, outside any scope, the ORM Session of the load.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

import sqlwatch
from tests.models import Base, User, seed


@pytest.fixture
def make_session(engine: Engine) -> sessionmaker[Session]:
    Base.metadata.create_all(engine)
    make = sessionmaker(engine)
    with make() as session:
        seed(session, users=4)
    return make


def request(make_session: sessionmaker[Session], user_id: int) -> int:
    """One 'request': load one user, read its addresses once."""
    with make_session() as session:
        user = session.get(User, user_id)
        assert user is not None
        return len(user.addresses)


def loop_request(make_session: sessionmaker[Session]) -> None:
    with make_session() as session:
        for user in session.scalars(select(User)).all():
            _ = user.addresses


def test_one_lazy_load_per_request_is_not_an_n_plus_one(
    engine: Engine, make_session: sessionmaker[Session]
) -> None:
    sqlwatch.instrument(engine, exporters=())
    for user_id in (1, 2, 3, 4):
        with sqlwatch.watch("GET /users/{id}"):
            request(make_session, user_id)
    for user_id in (1, 2, 3, 4):  # and without any scope: one Session per request
        request(make_session, user_id)

    report = sqlwatch.report()
    assert [s.relationship for s in report.statements].count("User.addresses") == 8
    assert report.n_plus_one == ()


def test_core_statement_once_per_request_outside_scopes(
    engine: Engine, make_session: sessionmaker[Session]
) -> None:
    sqlwatch.instrument(engine, exporters=())
    for user_id in (1, 2, 3):
        with engine.connect() as conn:
            conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})

    assert sqlwatch.report().n_plus_one == ()


def test_a_loop_inside_one_request_is_found(
    engine: Engine, make_session: sessionmaker[Session]
) -> None:
    sqlwatch.instrument(engine, exporters=())
    with sqlwatch.watch("GET /users"):
        loop_request(make_session)
    with sqlwatch.watch("GET /users"):
        loop_request(make_session)

    [finding] = sqlwatch.report().n_plus_one
    assert finding.relationship == "User.addresses"
    assert finding.count == 8  # two requests of four lazy loads each
    [summary] = sqlwatch.report().scopes
    assert summary.runs == 2
    assert [f.relationship for f in summary.n_plus_one] == ["User.addresses"]


def test_a_loop_in_one_session_outside_any_scope_is_found(
    engine: Engine, make_session: sessionmaker[Session]
) -> None:
    sqlwatch.instrument(engine, exporters=())
    loop_request(make_session)

    [finding] = sqlwatch.report().n_plus_one
    assert finding.relationship == "User.addresses"
    assert finding.count == 4
    assert finding.loaded_by is None  # outside a scope, the parents' query is not followed


def test_a_core_loop_inside_a_scope_is_found_process_wide(
    engine: Engine, make_session: sessionmaker[Session]
) -> None:
    sqlwatch.instrument(engine, exporters=())
    with sqlwatch.watch(), engine.connect() as conn:
        for user_id in (1, 2, 3):
            conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})

    [finding] = sqlwatch.report().n_plus_one
    assert finding.kind == "repeated_statement"
    assert finding.count == 3


def test_engine_options_judge_the_process_wide_scope(
    engine: Engine, make_session: sessionmaker[Session]
) -> None:
    sqlwatch.instrument(engine, exporters=(), n_plus_one_threshold=5, ignore=["User.hobbies"])
    with sqlwatch.watch() as w, make_session() as session:
        for user in session.scalars(select(User)).all():
            _ = user.addresses
            _ = user.hobbies

    # the watch has its own options (defaults); the process-wide scope the engine's
    assert {f.relationship for f in w.n_plus_one} == {"User.addresses", "User.hobbies"}
    assert sqlwatch.report().n_plus_one == ()


def test_process_wide_warning_is_logged_once(
    engine: Engine, make_session: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    sqlwatch.instrument(engine)  # the logging exporter, as by default
    with caplog.at_level(logging.WARNING, logger="sqlwatch"):
        for _ in range(3):
            with sqlwatch.watch():
                loop_request(make_session)

    warnings = [r for r in caplog.records if "N+1" in r.getMessage()]
    assert len(warnings) == 1
    assert "User.addresses" in warnings[0].getMessage()
    assert "selectinload(User.addresses)" in warnings[0].getMessage()
    assert sqlwatch.report().n_plus_one[0].count == 12


def test_ignore_n_plus_one_outside_scopes(
    engine: Engine, make_session: sessionmaker[Session]
) -> None:
    sqlwatch.instrument(engine, exporters=())
    with sqlwatch.ignore_n_plus_one("User.addresses"):
        loop_request(make_session)

    assert sqlwatch.report().n_plus_one == ()
