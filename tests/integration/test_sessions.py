"""ORM sessions opened, closed and left open, on file SQLite and PostgreSQL."""

from __future__ import annotations

import gc
import weakref

from sqlalchemy import Engine, event, select, text
from sqlalchemy.orm import Session, sessionmaker

import sqlwatch
from sqlwatch.records import SessionStats
from tests.integration.helpers import call_site_below
from tests.models import Base, User


def seeded(engine: Engine) -> Engine:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([User(name=f"user {i}") for i in range(3)])
        session.commit()
    return engine


def test_a_thousand_sessions_opened_and_closed(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        for _ in range(1000):
            with Session(engine) as session:
                session.scalars(select(User)).all()
    assert w.report.sessions == SessionStats(opened=1000, closed=1000, unclosed=0)
    assert sqlwatch.report().sessions.unclosed == 0
    assert sqlwatch.report().sessions.opened == 1000


def test_three_sessions_left_open(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    sessions = []
    with sqlwatch.watch() as w:
        for _ in range(5):
            with Session(engine) as session:
                session.execute(text("select 1"))
        sites = []
        for _ in range(3):
            session = Session(engine)
            sites.append(call_site_below())
            session.scalars(select(User)).all()
            sessions.append(session)
    stats = w.report.sessions
    assert (stats.opened, stats.closed, stats.unclosed) == (8, 5, 3)
    assert list(stats.unclosed_call_sites) == sites
    for session in sessions:
        session.close()
    assert sqlwatch.report().sessions == SessionStats(opened=8, closed=8, unclosed=0)


def test_a_committed_session_with_objects_is_still_open(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        session = Session(engine)
        user = session.get(User, 1)
        assert user is not None
        user.name = "renamed"
        session.commit()  # the transaction ended, the session still holds the user
    assert w.report.sessions.unclosed == 1
    session.close()
    assert sqlwatch.report().sessions.unclosed == 0
    assert sqlwatch.report().sessions.closed == 1


def test_a_session_closed_after_its_commit(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    factory = sessionmaker(engine)
    with sqlwatch.watch() as w:
        for i in range(10):
            with factory.begin() as session:
                session.add(User(name=f"new {i}"))
    assert w.report.sessions == SessionStats(opened=10, closed=10, unclosed=0)


def test_a_session_reused_after_close_opens_again(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        session = Session(engine)
        for _ in range(3):
            session.execute(text("select 1"))
            session.close()
    assert w.report.sessions == SessionStats(opened=3, closed=3, unclosed=0)


def test_savepoints_are_not_sessions(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w, Session(engine) as session:
        for i in range(3):
            with session.begin_nested():
                session.add(User(name=f"nested {i}"))
        session.commit()
    assert w.report.sessions == SessionStats(opened=1, closed=1, unclosed=0)


def test_sessions_are_held_weakly(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        session = Session(engine)
        session.scalars(select(User)).all()
        probe = weakref.ref(session)
        assert w.report.sessions.unclosed == 1
        del session
        gc.collect()
        assert probe() is None  # sqlwatch did not keep it
    # gone without close: released (its connection is the pool's garbage_collected leak)
    assert w.report.sessions == SessionStats(opened=1, closed=1, unclosed=0)
    assert [leak.kind for leak in w.report.leaks] == ["garbage_collected"]


def test_a_collected_session_whose_id_is_reused_still_counts_as_closed(engine: Engine) -> None:
    """A session dropped without ``close()`` and collected frees its ``id``,
    which CPython soon gives to a new session: the first is closed, not lost."""
    sqlwatch.instrument(engine)
    seen: set[int] = set()
    with sqlwatch.watch() as w:
        while len(seen) < 1000:
            session = Session(engine)
            reused = id(session) in seen
            seen.add(id(session))
            session.execute(text("select 1"))
            del session
            gc.collect()
            if reused:
                break
        assert reused
    dropped = len(seen) + 1
    assert w.report.sessions == SessionStats(opened=dropped, closed=dropped, unclosed=0)
    assert sqlwatch.report().sessions == SessionStats(opened=dropped, closed=dropped, unclosed=0)


def test_a_session_open_across_uninstrument_and_instrument_counts_once(engine: Engine) -> None:
    """The process-wide counts survive ``uninstrument``; a session they count as
    open, used again once the engine is instrumented again, is not opened twice."""
    instrumentation = sqlwatch.instrument(engine)
    session = Session(engine)
    session.execute(text("select 1"))
    instrumentation.uninstrument()
    session.commit()  # unseen: no listener
    sqlwatch.instrument(engine)
    session.execute(text("select 1"))
    assert sqlwatch.report().sessions.unclosed == 1
    session.close()
    assert sqlwatch.report().sessions == SessionStats(opened=1, closed=1, unclosed=0)


def test_a_connection_dropped_inside_a_session_is_not_kept_alive(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    connection = engine.connect()
    probe = weakref.ref(connection.connection)  # the pool's proxy
    del connection
    gc.collect()
    assert probe() is None
    (leak,) = sqlwatch.report().leaks
    assert leak.kind == "garbage_collected"


def test_the_listeners_come_off_with_the_last_engine(engine: Engine) -> None:
    sqlwatch.instrument(engine)
    assert _session_listeners()
    sqlwatch.uninstrument(engine)
    assert _session_listeners() == []
    sqlwatch.instrument(engine)
    sqlwatch.reset()
    assert _session_listeners() == []


def _session_listeners() -> list[str]:
    from sqlwatch._state import STATE

    listener = STATE.sessions
    return [
        name
        for name, fn in (
            ("after_transaction_create", listener._on_create),
            ("after_transaction_end", listener._on_end),
        )
        if event.contains(Session, name, fn)
    ]


def test_the_text_report_shows_sessions(engine: Engine) -> None:
    seeded(engine)
    sqlwatch.instrument(engine)
    with sqlwatch.watch() as w:
        session = Session(engine)
        session.execute(text("select 1"))
    session.close()
    from sqlwatch._render import render_text

    rendered = render_text(w.report)
    assert "Sessions" in rendered
    assert "test_sessions.py" in rendered
