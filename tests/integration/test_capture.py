"""Capture on real databases (sync engines): every ``Statement`` field, every way to run SQL.

Each test runs on SQLite and on PostgreSQL (psycopg 3) through the ``engine``
fixture. Statements are read back through the user's entry points: a
``watch()``'s ``queries`` and ``sqlwatch.report()``.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.schema import CreateTable

import sqlwatch
from sqlwatch._state import STATE
from sqlwatch.instrumentation import tracker_for
from tests.integration.helpers import HEX, ISO_UTC, call_site_below, is_sqlite, parse_iso
from tests.integration.pool_helpers import engine_listeners
from tests.models import Address, Base, Hobby, Tag, User, seed


@pytest.fixture
def db(engine: Engine) -> Engine:
    """The backend with the models' tables, seeded (3 users, 2 addresses each)."""
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    return engine


# -- every field of one statement ---------------------------------------------------


def test_orm_select_has_every_statement_field(db: Engine) -> None:
    handle = sqlwatch.instrument(db)
    before = datetime.now(timezone.utc)
    with Session(db) as session, sqlwatch.watch() as w:
        site = call_site_below()
        users = session.scalars(select(User).where(User.name != "nobody").order_by(User.id)).all()
    after = datetime.now(timezone.utc)

    assert len(users) == 3
    [statement] = w.queries
    assert "FROM users" in statement.sql
    assert "nobody" not in statement.sql  # parameterized, as sent to the driver
    assert statement.operation == "SELECT"
    assert statement.tables == ("users",)
    info = sqlwatch.analyze(statement.sql, db.dialect.name)
    assert HEX.match(statement.fingerprint)
    assert statement.fingerprint == info.fingerprint
    assert statement.normalized == info.normalized
    assert "?" in statement.normalized
    assert statement.duration_ms > 0
    # SQLite's cursor does not know how many rows a SELECT returns; psycopg does
    assert statement.rowcount == (None if is_sqlite(db) else 3)
    assert statement.executemany is False
    assert ISO_UTC.match(statement.started_at)
    slack = timedelta(seconds=1)
    assert before - slack <= parse_iso(statement.started_at) <= after + slack
    assert statement.engine == handle.name == db.url.render_as_string(hide_password=True)
    assert statement.call_site == site
    assert statement.relationship is None
    assert statement.error is None
    assert statement.params is None


def test_core_dml_operations_tables_and_rowcounts(db: Engine) -> None:
    sqlwatch.instrument(db)
    with db.begin() as conn, sqlwatch.watch() as w:
        updated = conn.execute(update(User).where(User.id <= 2).values(name="renamed"))
        deleted = conn.execute(delete(Hobby).where(Hobby.user_id == 1))
        conn.execute(insert(Tag).values(name="new"))

    assert (updated.rowcount, deleted.rowcount) == (2, 1)
    upd, dele, ins = w.queries
    assert (upd.operation, upd.tables, upd.rowcount) == ("UPDATE", ("users",), 2)
    assert (dele.operation, dele.tables, dele.rowcount) == ("DELETE", ("hobbies",), 1)
    assert (ins.operation, ins.tables, ins.rowcount) == ("INSERT", ("tags",), 1)
    assert not any(s.executemany for s in w.queries)
    assert "renamed" not in upd.sql


def test_text_statement_with_bound_parameters(db: Engine) -> None:
    sqlwatch.instrument(db)
    with db.connect() as conn, sqlwatch.watch() as w:
        site = call_site_below()
        name = conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": 2}).scalar()

    assert name == "user1"
    [statement] = w.queries
    assert statement.operation == "SELECT"
    assert statement.tables == ("users",)
    assert statement.normalized == "SELECT name FROM users WHERE id = ?"
    assert statement.call_site == site
    assert statement.params is None


def test_text_statements_differing_only_in_literals_share_a_fingerprint(db: Engine) -> None:
    sqlwatch.instrument(db)
    with db.connect() as conn, sqlwatch.watch() as w:
        for user_id in (1, 2, 3):
            conn.execute(text(f"SELECT name FROM users WHERE id = {user_id}"))
        conn.execute(text("SELECT email FROM addresses WHERE id = 1"))

    first, second, third, other = w.queries
    assert first.sql != second.sql
    assert first.fingerprint == second.fingerprint == third.fingerprint
    assert other.fingerprint != first.fingerprint
    [stats] = [f for f in w.report.fingerprints if f.fingerprint == first.fingerprint]
    assert stats.count == 3


def test_exec_driver_sql_with_and_without_parameters(db: Engine) -> None:
    sqlwatch.instrument(db)
    placeholder = "?" if is_sqlite(db) else "%s"
    with db.connect() as conn, sqlwatch.watch() as w:
        # no parameters at all: the do_execute_no_params hook
        plain = conn.execution_options(no_parameters=True)
        count = plain.exec_driver_sql("SELECT count(*) FROM addresses").scalar()
        one = conn.exec_driver_sql(
            f"SELECT email FROM addresses WHERE id = {placeholder}", (1,)
        ).scalar()

    assert count == 6
    assert one == "u0a0@example.com"
    no_params, with_params = w.queries
    assert no_params.sql == "SELECT count(*) FROM addresses"
    assert (no_params.operation, no_params.tables) == ("SELECT", ("addresses",))
    assert with_params.normalized == "SELECT email FROM addresses WHERE id = ?"


def test_executemany_is_one_statement(db: Engine) -> None:
    sqlwatch.instrument(db)
    rows = [{"name": f"tag-{i}"} for i in range(3)]
    with db.begin() as conn, sqlwatch.watch() as w:
        conn.execute(insert(Tag), rows)

    [statement] = w.queries
    assert statement.executemany is True
    assert statement.operation == "INSERT"
    assert statement.tables == ("tags",)
    assert statement.rowcount == 3


def test_insertmanyvalues_bulk_insert(db: Engine) -> None:
    """ORM bulk INSERT ... RETURNING: SQLAlchemy sends one multi-row VALUES statement."""
    sqlwatch.instrument(db)
    with Session(db) as session, sqlwatch.watch() as w:
        site = call_site_below()
        three = session.scalars(insert(User).returning(User.id), [{"name": "a"}] * 3).all()
        five = session.scalars(insert(User).returning(User.id), [{"name": "b"}] * 5).all()
        session.commit()

    assert (len(three), len(five)) == (3, 5)
    small, large = w.queries
    assert small.executemany is large.executemany is True
    assert small.operation == "INSERT"
    assert small.tables == ("users",)
    assert small.call_site == site
    assert small.sql != large.sql  # three and five rows of VALUES ...
    assert small.fingerprint == large.fingerprint  # ... are one statement shape
    # psycopg counts the rows of an INSERT ... RETURNING; pysqlite does not know
    # them until they are fetched, and sqlwatch says "unknown" rather than 0
    assert (small.rowcount, large.rowcount) == ((None, None) if is_sqlite(db) else (3, 5))


def test_orm_flush_statements_point_at_the_users_line(db: Engine) -> None:
    sqlwatch.instrument(db)
    with Session(db) as session, sqlwatch.watch() as w:
        session.add_all([Tag(name="x"), Tag(name="y")])
        site = call_site_below()
        session.commit()

    inserts = [s for s in w.queries if s.operation == "INSERT"]
    assert inserts
    assert {s.call_site for s in inserts} == {site}


def test_ddl_statements(engine: Engine) -> None:
    metadata = MetaData()
    Table("ddl_probe", metadata, Column("id", Integer, primary_key=True), Column("x", String(5)))
    sqlwatch.instrument(engine)
    try:
        with sqlwatch.watch() as w:
            metadata.create_all(engine)
            metadata.drop_all(engine)
    finally:
        metadata.drop_all(engine)

    ddl = [(s.operation, s.tables) for s in w.queries if s.operation in ("CREATE", "DROP")]
    assert ddl == [("CREATE", ("ddl_probe",)), ("DROP", ("ddl_probe",))]
    create = next(s for s in w.queries if s.operation == "CREATE")
    assert create.rowcount is None
    assert create.normalized.startswith("CREATE TABLE ddl_probe")


def test_savepoints(db: Engine) -> None:
    sqlwatch.instrument(db)
    with Session(db) as session, sqlwatch.watch() as w:
        with session.begin_nested():
            session.add(Tag(name="kept"))
        nested = session.begin_nested()
        session.add(Tag(name="rolled back"))
        session.flush()
        nested.rollback()
        session.commit()

    operations = [s.operation for s in w.queries]
    assert operations == [
        "SAVEPOINT",
        "INSERT",
        "RELEASE",
        "SAVEPOINT",
        "INSERT",
        "ROLLBACK",
    ]
    savepoint = w.queries[0]
    assert savepoint.sql.startswith("SAVEPOINT ")
    assert w.queries[3].fingerprint == savepoint.fingerprint  # savepoint names are literals
    with Session(db) as session:
        names = set(session.scalars(select(Tag.name)))
    assert "kept" in names
    assert "rolled back" not in names


def test_streaming_results(db: Engine) -> None:
    sqlwatch.instrument(db)
    with db.connect() as conn, sqlwatch.watch() as w:
        streamed = conn.execution_options(stream_results=True, max_row_buffer=2)
        partitions = list(streamed.execute(select(Address.email)).partitions(2))
    with Session(db) as session, sqlwatch.watch() as w2:
        query = select(Address).execution_options(yield_per=2)
        emails = [a.email for a in session.scalars(query)]

    assert sum(len(p) for p in partitions) == 6
    assert len(emails) == 6
    for watch in (w, w2):
        [statement] = watch.queries
        assert (statement.operation, statement.tables) == ("SELECT", ("addresses",))


def test_lazy_load_names_the_relationship(db: Engine) -> None:
    sqlwatch.instrument(db)
    with Session(db) as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        with sqlwatch.watch() as w:
            for user in users:
                site = call_site_below()
                assert len(user.addresses) == 2
            again = session.scalars(select(Address).where(Address.user_id == 1)).all()

    assert len(again) == 2
    lazy, explicit = w.queries[:3], w.queries[3]
    assert [s.relationship for s in lazy] == ["User.addresses"] * 3
    assert {s.call_site for s in lazy} == {site}
    assert len({s.fingerprint for s in lazy}) == 1
    assert explicit.relationship is None


# -- errors ---------------------------------------------------------------------------


def _duplicate_user(engine: Engine) -> IntegrityError:
    with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
        conn.execute(insert(User).values(id=1, name="duplicate"))
    return caught.value


def test_failing_statement_reaches_the_app_untouched(db: Engine) -> None:
    bare_engine = create_engine(db.url)
    try:
        bare = _duplicate_user(bare_engine)
    finally:
        bare_engine.dispose()

    seen_by_sqlalchemy: list[BaseException] = []

    @event.listens_for(db, "handle_error")
    def _remember(context: object) -> None:
        seen_by_sqlalchemy.append(context.original_exception)  # type: ignore[attr-defined]

    sqlwatch.instrument(db)
    with sqlwatch.watch() as w:
        watched = _duplicate_user(db)

    # same exception type, same driver exception type and message as without sqlwatch
    assert type(watched) is type(bare)
    assert type(watched.orig) is type(bare.orig)
    assert str(watched.orig) == str(bare.orig)
    # the very exception object the driver raised is the one the application holds
    assert seen_by_sqlalchemy == [watched.orig]

    [statement] = w.queries
    assert statement.error == type(watched.orig).__name__
    assert statement.operation == "INSERT"
    assert statement.rowcount is None
    assert w.report.errors == {statement.error: 1}


def test_error_in_a_connection_keeps_later_statements_counted(db: Engine) -> None:
    sqlwatch.instrument(db)
    with sqlwatch.watch() as w, db.connect() as conn:
        with pytest.raises(Exception, match="no_such_table"):
            conn.execute(text("SELECT * FROM no_such_table"))
        conn.rollback()
        assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 3

    failed, ok = w.queries
    assert failed.error is not None
    assert ok.error is None
    assert w.report.errors == {failed.error: 1}
    assert w.query_count == 2


# -- engine names ---------------------------------------------------------------------


def test_engine_name_masks_the_password_without_connecting() -> None:
    engine = create_engine("postgresql+psycopg://scott:tiger-secret@db.example.com:5432/app")
    handle = sqlwatch.instrument(engine)
    assert handle.name == "postgresql+psycopg://scott:***@db.example.com:5432/app"
    assert "tiger-secret" not in repr(handle)


def test_engine_name_masks_credentials_given_in_the_query_string() -> None:
    engine = create_engine(
        "postgresql+psycopg://scott@db.example.com/app"
        "?password=tiger-secret&sslpassword=key-secret&application_name=shop"
    )
    handle = sqlwatch.instrument(engine)
    assert "secret" not in handle.name
    assert "password=***" in handle.name
    assert "sslpassword=***" in handle.name
    assert "application_name=shop" in handle.name  # the rest stays readable


@pytest.mark.postgres
def test_statements_never_carry_the_password(postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    # the test server trusts local connections: any password connects
    url = make_url(postgres_url).set(password="pw-not-to-leak")
    engine = create_engine(url)
    try:
        sqlwatch.instrument(engine)
        with sqlwatch.watch() as w, engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        # the first connection's dialect set-up statements are counted too
        statement = w.queries[-1]
        assert statement.sql == "SELECT 1"
        assert statement.engine == url.render_as_string(hide_password=True)
        assert "***" in statement.engine
        assert "pw-not-to-leak" not in w.report.to_json()
        assert "pw-not-to-leak" not in sqlwatch.report().to_json()
    finally:
        engine.dispose()


def test_instrument_name_replaces_the_url(db: Engine) -> None:
    handle = sqlwatch.instrument(db, name="primary")
    other = create_engine("sqlite://")
    second = sqlwatch.instrument(other, name="primary")
    with sqlwatch.watch() as w:
        with db.connect() as conn:
            conn.execute(text("SELECT 1"))
        with other.connect() as conn:
            conn.execute(text("SELECT 2"))

    assert handle.name == "primary"
    assert second.name != "primary"  # two engines never share a name
    assert [s.engine for s in w.queries] == ["primary", second.name]


# -- parameters -------------------------------------------------------------------------


def test_parameters_are_kept_only_with_capture_params(db: Engine) -> None:
    sqlwatch.instrument(db)
    query = text("SELECT name FROM users WHERE id = :id")
    with db.connect() as conn:
        with sqlwatch.watch() as default:
            conn.execute(query, {"id": 3})
        with sqlwatch.watch(capture_params=True) as capturing:
            conn.execute(query, {"id": 3})

    [hidden] = default.queries
    assert hidden.params is None
    assert "params" not in default.report.to_dict()["statements"][0]
    [shown] = capturing.queries
    values = list(shown.params.values()) if isinstance(shown.params, dict) else list(shown.params)
    assert values == [3]
    assert capturing.report.to_dict()["statements"][0]["params"] is not None


def test_capture_params_on_instrument_fills_the_process_report(db: Engine) -> None:
    sqlwatch.instrument(db, capture_params=True)
    with db.connect() as conn:
        conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": 2})

    [statement] = sqlwatch.report().statements
    values = (
        list(statement.params.values())
        if isinstance(statement.params, dict)
        else list(statement.params)
    )
    assert values == [2]


def test_literal_values_never_reach_the_report_by_default(db: Engine) -> None:
    sqlwatch.instrument(db)
    with sqlwatch.watch() as w, db.connect() as conn:
        conn.execute(text("SELECT id FROM users WHERE name = :name"), {"name": "secret-name"})
    assert "secret-name" not in json.dumps(w.report.to_dict())
    assert "secret-name" not in sqlwatch.report().to_json()


# -- instrument / uninstrument ------------------------------------------------------------


def test_instrument_twice_returns_the_same_handle_and_counts_once(db: Engine) -> None:
    first = sqlwatch.instrument(db)
    second = sqlwatch.instrument(db, slow_query_ms=1.0)  # options of a repeat are ignored
    assert second is first
    with sqlwatch.watch() as w, db.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert w.query_count == 1
    assert sqlwatch.report().query_count == 1


def test_a_repeated_instrument_checks_its_options_and_says_which_it_ignores(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """The usual trap: ``watch(engines=[db])`` instruments the engine first, without
    exporters, and the application's ``instrument(db)`` then changes nothing."""
    with sqlwatch.watch(engines=[db]):
        pass
    with pytest.raises(TypeError, match="slow_query"):
        sqlwatch.instrument(db, slow_query=5)  # a typo is an error on every call
    with caplog.at_level(logging.WARNING, logger="sqlwatch"):
        handle = sqlwatch.instrument(db, exporters=["logging"], slow_query_ms=500.0)
    warnings = [r.getMessage() for r in caplog.records if r.name == "sqlwatch"]
    assert len(warnings) == 1
    assert "ignores these: exporters (uninstrument() it first" in warnings[0]
    assert "slow_query_ms" not in warnings[0]  # the value it has already
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sqlwatch"):
        assert sqlwatch.instrument(db) is handle  # no options: nothing to say
    assert not [r for r in caplog.records if r.name == "sqlwatch"]


def test_a_stale_handle_leaves_a_newer_instrumentation_alone(db: Engine) -> None:
    stale = sqlwatch.instrument(db)
    sqlwatch.uninstrument(db)
    current = sqlwatch.instrument(db)
    stale.uninstrument()
    assert tracker_for(db) is not None
    with sqlwatch.watch() as w, db.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert w.query_count == 1
    current.uninstrument()
    assert tracker_for(db) is None


def test_an_engine_with_other_execution_options_is_its_parent_for_sqlwatch(db: Engine) -> None:
    """``engine.execution_options(...)`` shares the parent's dialect and pool:
    instrumenting both, or watching either, counts each statement once."""
    autocommit = db.execution_options(isolation_level="AUTOCOMMIT")
    first = sqlwatch.instrument(db)
    assert sqlwatch.instrument(autocommit) is first
    assert sqlwatch.instrument(autocommit.execution_options(logging_token="x")) is first
    with sqlwatch.watch(engines=[autocommit]) as w:
        for engine in (db, autocommit):
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
    assert w.query_count == 2
    assert sqlwatch.report().query_count == 2
    assert list(sqlwatch.report().pools) == [first.name]


DIALECT_HOOKS = {"do_execute", "do_executemany", "do_execute_no_params"}


def test_uninstrument_removes_every_listener(db: Engine) -> None:
    handle = sqlwatch.instrument(db)
    tracker = tracker_for(db)
    assert tracker is not None
    assert set(vars(db.dialect)) >= DIALECT_HOOKS  # on the engine's own dialect instance
    registrations = [(ref(), name, fn) for ref, name, fn in tracker._registrations]
    assert registrations  # the pool tracker's events
    for target, identifier, fn in registrations:
        assert event.contains(target, identifier, fn)

    handle.uninstrument()

    assert not DIALECT_HOOKS & set(vars(db.dialect))  # the class's methods show through
    assert engine_listeners(db) == []
    for target, identifier, fn in registrations:
        assert not event.contains(target, identifier, fn), identifier
    assert not event.contains(Session, "after_transaction_create", STATE.sessions._on_create)
    assert not event.contains(Session, "after_transaction_end", STATE.sessions._on_end)
    assert tracker_for(db) is None
    before = sqlwatch.report().query_count
    with sqlwatch.watch() as w, Session(db) as session:
        session.scalars(select(User)).all()
    assert w.query_count == 0
    assert sqlwatch.report().query_count == before


def _passing_through(dialect: Any, calls: list[str]) -> Callable[..., None]:
    """Another tool's wrapper on the dialect instance: notes each statement."""
    inner = dialect.do_execute

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        calls.append(statement)
        inner(cursor, statement, parameters, context)

    return do_execute


def test_a_dialect_shadowed_already_is_listened_to_through_its_events(db: Engine) -> None:
    dialect = db.dialect
    calls: list[str] = []
    theirs = _passing_through(dialect, calls)
    dialect.do_execute = theirs  # type: ignore[method-assign]
    try:
        handle = sqlwatch.instrument(db)
        assert vars(dialect)["do_execute"] is theirs
        with sqlwatch.watch() as w, db.connect() as conn:
            assert conn.execute(text("SELECT 42")).scalar() == 42
        assert w.query_count == 1
        assert calls == ["SELECT 42"]  # the other tool's wrapper still ran, once

        handle.uninstrument()
        assert vars(dialect)["do_execute"] is theirs
        assert engine_listeners(db) == []
        with sqlwatch.watch() as w, db.connect() as conn:
            assert conn.execute(text("SELECT 43")).scalar() == 43
        assert w.query_count == 0
        assert calls == ["SELECT 42", "SELECT 43"]
    finally:
        del dialect.do_execute


def test_a_wrapper_put_over_sqlwatchs_keeps_working_and_nothing_is_kept(
    db: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    handle = sqlwatch.instrument(db)
    dialect = db.dialect
    calls: list[str] = []
    theirs = _passing_through(dialect, calls)
    dialect.do_execute = theirs  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING, logger="sqlwatch"):
            handle.uninstrument()
        assert "another wrapper was put over it" in caplog.text
        assert vars(dialect)["do_execute"] is theirs
        before = sqlwatch.report().query_count
        with sqlwatch.watch() as w, db.connect() as conn:
            assert conn.execute(text("SELECT 44")).scalar() == 44
        assert calls == ["SELECT 44"]
        assert w.query_count == 0
        assert sqlwatch.report().query_count == before
    finally:
        del dialect.do_execute


def test_uninstrument_then_instrument_again_counts_once(db: Engine) -> None:
    sqlwatch.instrument(db)
    sqlwatch.uninstrument(db)
    sqlwatch.uninstrument(db)  # a second uninstrument is harmless
    sqlwatch.instrument(db)
    with sqlwatch.watch() as w, db.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert w.query_count == 1


def test_instrument_rejects_what_is_not_an_engine() -> None:
    with pytest.raises(TypeError, match=r"Engine or AsyncEngine, got object"):
        sqlwatch.instrument(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"got str"):
        sqlwatch.instrument("sqlite://")  # type: ignore[arg-type]


def test_a_failed_instrument_leaves_nothing_attached(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlwatch import instrumentation

    def failing_extension(tracker: object, engine: Engine) -> None:
        raise RuntimeError("an extension that cannot attach")

    extensions = [*instrumentation.ENGINE_EXTENSIONS, failing_extension]
    monkeypatch.setattr(instrumentation, "ENGINE_EXTENSIONS", extensions)
    with pytest.raises(RuntimeError, match="cannot attach"):
        sqlwatch.instrument(engine)
    assert not DIALECT_HOOKS & set(vars(engine.dialect))
    assert "connect" not in vars(engine.pool)  # the pool tracker's wrapper came off too
    assert tracker_for(engine) is None


def test_instrument_rejects_bad_options_and_leaves_the_engine_alone(engine: Engine) -> None:
    with pytest.raises(TypeError, match="slow_query"):
        sqlwatch.instrument(engine, slow_query=5)
    with pytest.raises(ValueError, match="max_statements"):
        sqlwatch.instrument(engine, max_statements=-1)
    assert tracker_for(engine) is None
    with sqlwatch.watch() as w, engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert w.query_count == 0


# -- the call site of every execution API --------------------------------------------
# The walk starts a fixed number of frames above the listener (the frames every API
# passes through are SQLAlchemy's): each public way of running SQL must still be
# reported at the application's own line, not one frame too far up.

CALL_SITE_APIS = (
    "exec_driver_sql",
    "exec_driver_sql, no_parameters",
    "execute(text)",
    "execute(select)",
    "scalar(select)",
    "executemany",
    "DDL construct",
)


def run_api(connection: Connection, api: str) -> str:
    """Run ``api``; return the call site of the line that ran it."""
    users = User.__table__
    if api == "exec_driver_sql":
        site = call_site_below()
        connection.exec_driver_sql("SELECT 1")
    elif api == "exec_driver_sql, no_parameters":
        raw = connection.execution_options(no_parameters=True)
        site = call_site_below()
        raw.exec_driver_sql("SELECT 2")
    elif api == "execute(text)":
        site = call_site_below()
        connection.execute(text("SELECT name FROM users WHERE id = :id"), {"id": 1})
    elif api == "execute(select)":
        site = call_site_below()
        connection.execute(select(users))
    elif api == "scalar(select)":
        site = call_site_below()
        connection.scalar(select(users.c.id).limit(1))
    elif api == "executemany":
        site = call_site_below()
        connection.execute(insert(Tag.__table__), [{"name": "a"}, {"name": "b"}])
    else:
        table = Table("call_site_ddl", MetaData(), Column("id", Integer))
        site = call_site_below()
        connection.execute(CreateTable(table, if_not_exists=True))
    return site


@pytest.mark.parametrize("api", CALL_SITE_APIS)
def test_every_execution_api_reports_the_line_that_ran_it(db: Engine, api: str) -> None:
    sqlwatch.instrument(db)
    with db.connect() as connection:
        connection.exec_driver_sql("SELECT 0")  # begins the transaction outside the watch
        with sqlwatch.watch() as w:
            site = run_api(connection, api)

    assert [s.call_site for s in w.queries] == [site]


def test_call_sites_stay_exact_when_execution_paths_alternate(db: Engine) -> None:
    """The walk learns where each code path leaves SQLAlchemy; paths of other
    lengths, through other APIs and from other lines must never borrow an exit."""
    sqlwatch.instrument(db)
    expected: list[str] = []

    def nested(session: Session) -> None:
        expected.append(call_site_below())
        session.execute(text("SELECT 3"))

    with db.connect() as connection, Session(db) as session, sqlwatch.watch() as w:
        for i in range(12):
            expected.append(call_site_below())
            connection.exec_driver_sql("SELECT 1")
            if i % 3 == 0:
                expected.append(call_site_below())
                session.execute(text("SELECT 2"))
            nested(session)
            expected.append(call_site_below())
            connection.execute(select(User.__table__.c.id).limit(1))

    sites = [s.call_site for s in w.queries if s.operation == "SELECT"]
    assert sites == expected


def test_one_sql_string_from_paths_that_take_turns_keeps_each_call_site(db: Engine) -> None:
    """The finder tries first the exit that matched last time for the same SQL: the
    same string reached through other APIs, at other depths and from other lines,
    in turns, must still get the line that ran it each time."""
    sqlwatch.instrument(db)
    expected: list[str] = []

    def deeper(session: Session) -> None:
        expected.append(call_site_below())
        session.execute(text("SELECT 5"))

    with db.connect() as connection, Session(db) as session, sqlwatch.watch() as w:
        for i in range(9):
            if i % 3 == 0:
                expected.append(call_site_below())
                connection.exec_driver_sql("SELECT 5")
            elif i % 3 == 1:
                expected.append(call_site_below())
                session.execute(text("SELECT 5"))
            else:
                deeper(session)
            expected.append(call_site_below())
            session.scalars(select(User).limit(1)).all()  # another path and SQL between

    assert [s.call_site for s in w.queries if s.sql == "SELECT 5"] == expected[::2]
    assert [s.call_site for s in w.queries if s.sql != "SELECT 5"] == expected[1::2]


def test_functions_made_at_run_time_each_get_their_own_line(db: Engine) -> None:
    """Call sites are cached by code object and instruction offset: a function that
    is gone must never lend its line to a new one (template engines and ``exec``
    make such functions, and a freed object's ``id`` is soon reused)."""
    sqlwatch.instrument(db)
    with db.connect() as connection, sqlwatch.watch() as w:
        for blank_lines in range(12):
            source = "def run(c):\n" + "\n" * blank_lines + "    c.exec_driver_sql('SELECT 9')\n"
            namespace: dict[str, Any] = {}
            exec(compile(source, "<generated>", "exec"), namespace)
            namespace["run"](connection)
            del namespace
            gc.collect()

    assert [s.call_site for s in w.queries] == [
        f"<generated>:{blank_lines + 2} in run" for blank_lines in range(12)
    ]


def test_reset_keeps_no_mapped_class_alive() -> None:
    """Test suites define models per test and call reset() between tests: what
    sqlwatch learnt of a model (its relationships, the call sites of its loads)
    must not keep the classes alive."""
    import weakref

    from sqlalchemy import ForeignKey, Integer
    from sqlalchemy.orm import DeclarativeBase, mapped_column, relationship

    def one_test() -> weakref.ref[type]:
        class LocalBase(DeclarativeBase):
            pass

        class Parent(LocalBase):
            __tablename__ = "parent"
            id = mapped_column(Integer, primary_key=True)
            children = relationship("Child")

        class Child(LocalBase):
            __tablename__ = "child"
            id = mapped_column(Integer, primary_key=True)
            parent_id = mapped_column(Integer, ForeignKey("parent.id"))

        engine = create_engine("sqlite://")
        LocalBase.metadata.create_all(engine)
        sqlwatch.instrument(engine, exporters=())
        with Session(engine) as session:
            session.add_all([Parent(id=1), Parent(id=2)])
            session.commit()
            for parent in session.scalars(select(Parent)).all():
                len(parent.children)  # lazy loads: sqlwatch describes the relationship
        assert sqlwatch.report().n_plus_one
        engine.dispose()
        return weakref.ref(Parent)

    parent_class = one_test()
    sqlwatch.reset()
    gc.collect()
    assert parent_class() is None
