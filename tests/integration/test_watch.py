"""``watch()`` with sync code: context manager, decorator, nesting, narrowing, reports."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Generator, Iterator

import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.orm import Session

import sqlwatch
from sqlwatch import Statement
from tests.models import Address, Base, User


@pytest.fixture
def db(engine: Engine) -> Engine:
    """An instrumented backend, connected once so set-up statements are behind us."""
    sqlwatch.instrument(engine)
    with engine.connect() as conn:
        conn.execute(text("SELECT 0"))
    return engine


def run(engine: Engine, *statements: str) -> None:
    with engine.connect() as conn:
        for sql in statements:
            conn.execute(text(sql))


def sqls(statements: list[Statement]) -> list[str]:
    return [s.sql for s in statements]


def test_context_manager_sees_only_its_block(db: Engine) -> None:
    run(db, "SELECT 'before'")
    with sqlwatch.watch() as w:
        run(db, "SELECT 1", "SELECT 2")
    run(db, "SELECT 'after'")

    assert w.query_count == 2
    assert sqls(w.queries) == ["SELECT 1", "SELECT 2"]
    assert all(isinstance(s, Statement) for s in w.queries)
    assert w.report.query_count == 2
    assert w.report.name == "watch"


def test_report_is_live_while_open_and_final_after(db: Engine) -> None:
    with db.connect() as conn:
        with sqlwatch.watch("page") as w:
            assert w.report.query_count == 0
            conn.execute(text("SELECT 1"))
            live = w.report
            assert live.query_count == 1
            assert w.query_count == 1
            conn.execute(text("SELECT 2"))
            assert w.report.query_count == 2
            assert live.query_count == 1  # a snapshot does not change under you
        final = w.report
        conn.execute(text("SELECT 3"))  # after exit: not this watch's

    assert final.query_count == 2
    assert w.report is final
    assert w.query_count == 2
    assert sqls(w.queries) == ["SELECT 1", "SELECT 2"]
    assert final.name == "page"
    assert final.duration_ms > 0


def test_exception_in_block_propagates_and_closes_the_watch(db: Engine) -> None:
    w = sqlwatch.watch()

    def app_code() -> None:
        with w:
            run(db, "SELECT 1")
            raise KeyError("app error")

    with pytest.raises(KeyError, match="app error"):
        app_code()
    run(db, "SELECT 2")
    assert sqls(w.queries) == ["SELECT 1"]


def test_nested_watches_count_in_every_enclosing_watch(db: Engine) -> None:
    with sqlwatch.watch("outer") as outer:
        run(db, "SELECT 1")
        with sqlwatch.watch("middle") as middle:
            run(db, "SELECT 2")
            with sqlwatch.watch("inner") as inner:
                run(db, "SELECT 3")
            run(db, "SELECT 4")
        run(db, "SELECT 5")

    assert sqls(inner.queries) == ["SELECT 3"]
    assert sqls(middle.queries) == ["SELECT 2", "SELECT 3", "SELECT 4"]
    assert sqls(outer.queries) == [f"SELECT {i}" for i in range(1, 6)]
    assert sqlwatch.report().query_count == 6  # + the fixture's warm-up statement
    # a named watch is summarised in the reports of the scopes around it
    assert {s.name for s in outer.report.scopes} == {"middle", "inner"}
    inner_summary = next(s for s in outer.report.scopes if s.name == "inner")
    assert (inner_summary.runs, inner_summary.query_count) == (1, 1)


def test_an_open_watch_cannot_be_entered_again(db: Engine) -> None:
    w = sqlwatch.watch()
    with w, pytest.raises(RuntimeError, match="already open"), w:
        pass


def test_a_watch_object_can_run_again_after_closing(db: Engine) -> None:
    w = sqlwatch.watch()
    with w:
        run(db, "SELECT 1")
    with w:
        run(db, "SELECT 2", "SELECT 3")
    assert sqls(w.queries) == ["SELECT 2", "SELECT 3"]


def test_decorator_watches_each_call(db: Engine) -> None:
    watcher = sqlwatch.watch("load_users")

    @watcher
    def load_users(n: int) -> str:
        run(db, *[f"SELECT {i}" for i in range(n)])
        return f"{n} loaded"

    assert load_users.__name__ == "load_users"
    assert load_users(3) == "3 loaded"
    assert watcher.query_count == 3
    assert watcher.report.name == "load_users"
    assert load_users(1) == "1 loaded"
    assert watcher.query_count == 1  # the latest call's
    assert sqls(watcher.queries) == ["SELECT 0"]
    summary = next(s for s in sqlwatch.report().scopes if s.name == "load_users")
    assert (summary.runs, summary.query_count) == (2, 4)


def test_decorator_without_a_name_uses_the_qualified_function_name(db: Engine) -> None:
    @sqlwatch.watch()
    def checkout() -> None:
        run(db, "SELECT 1")

    checkout()
    assert checkout.__qualname__ in {s.name for s in sqlwatch.report().scopes}


def test_decorated_function_exceptions_pass_through(db: Engine) -> None:
    watcher = sqlwatch.watch()

    @watcher
    def broken() -> None:
        run(db, "SELECT 1")
        raise ValueError("from the app")

    with pytest.raises(ValueError, match="from the app"):
        broken()
    assert watcher.query_count == 1
    run(db, "SELECT 2")
    assert watcher.query_count == 1  # closed despite the exception


def test_decorated_calls_nest_in_an_open_watch(db: Engine) -> None:
    @sqlwatch.watch()
    def step() -> None:
        run(db, "SELECT 1")

    with sqlwatch.watch() as outer:
        step()
        step()
    assert outer.query_count == 2


def test_engines_narrows_the_watch(db: Engine, tmp_path: object) -> None:
    other = create_engine("sqlite://")
    sqlwatch.instrument(other)
    with sqlwatch.watch(engines=[db]) as only_db, sqlwatch.watch(engines=other) as only_other:
        run(db, "SELECT 'db'")
        run(other, "SELECT 'other'")
    with sqlwatch.watch() as both:
        run(db, "SELECT 'db'")
        run(other, "SELECT 'other'")

    assert sqls(only_db.queries) == ["SELECT 'db'"]
    assert sqls(only_other.queries) == ["SELECT 'other'"]
    assert both.query_count == 2
    other.dispose()


def test_engines_instruments_an_engine_not_yet_instrumented() -> None:
    engine = create_engine("sqlite://")
    with sqlwatch.watch(engines=[engine]) as w:
        run(engine, "SELECT 1")
    assert sqls(w.queries) == ["SELECT 1"]
    engine.dispose()


def test_watch_without_instrumented_engines_sees_nothing() -> None:
    engine = create_engine("sqlite://")
    with sqlwatch.watch() as w:
        run(engine, "SELECT 1")
    assert w.query_count == 0
    assert w.queries == []
    assert w.report.query_count == 0
    engine.dispose()


def test_watch_rejects_bad_options() -> None:
    with pytest.raises(TypeError, match="max_statement"):
        sqlwatch.watch(max_statement=5)
    with pytest.raises(ValueError, match="slow_query_ms"):
        sqlwatch.watch(slow_query_ms=-1)
    with pytest.raises(ValueError, match="n_plus_one_threshold"):
        sqlwatch.watch(n_plus_one_threshold=1)


def test_watch_report_before_entering_is_empty() -> None:
    w = sqlwatch.watch("never")
    assert w.query_count == 0
    assert w.queries == []
    assert w.report.query_count == 0
    assert w.report.name == "never"


def test_params_captured_by_a_watch_stay_in_that_watch(db: Engine) -> None:
    """capture_params is the watch's opt-in: the process-wide report and an
    enclosing watch that did not opt in never show the values."""
    with (
        sqlwatch.watch() as outer,
        sqlwatch.watch(capture_params=True) as inner,
        db.connect() as conn,
    ):
        conn.execute(text("SELECT :secret"), {"secret": "hunter2"})

    assert inner.queries[-1].params is not None
    assert "hunter2" in repr(inner.queries[-1].params)
    assert outer.queries[-1].params is None
    process = sqlwatch.report()
    assert all(s.params is None for s in process.statements)
    assert "hunter2" not in process.to_json()
    assert "hunter2" not in outer.report.to_json()


def test_decorated_generator_counts_the_statements_of_its_body(db: Engine) -> None:
    """The body of a generator runs while it is iterated, after the call has
    returned: the watch follows the iteration, and only the body's statements
    count, not those the caller runs between two items."""
    watcher = sqlwatch.watch("rows")

    @watcher
    def rows(n: int) -> Iterator[int]:
        for i in range(n):
            run(db, f"SELECT {i}")
            yield i
        run(db, "SELECT 'end'")

    assert inspect.isgeneratorfunction(rows)  # pytest fixtures and frameworks check this
    items = []
    for item in rows(3):
        run(db, "SELECT 'caller'")
        items.append(item)

    assert items == [0, 1, 2]
    assert sqls(watcher.queries) == ["SELECT 0", "SELECT 1", "SELECT 2", "SELECT 'end'"]
    summary = next(s for s in sqlwatch.report().scopes if s.name == "rows")
    assert (summary.runs, summary.query_count) == (1, 4)


def test_decorated_generator_leaves_the_callers_watches_alone(db: Engine) -> None:
    """A watch the caller opens between two items still counts what follows
    after the generator finishes inside it."""
    watcher = sqlwatch.watch()

    @watcher
    def rows() -> Iterator[int]:
        run(db, "SELECT 'first'")
        yield 1
        run(db, "SELECT 'second'")
        yield 2

    iterator = rows()
    next(iterator)
    with sqlwatch.watch() as caller:
        assert list(iterator) == [2]
        run(db, "SELECT 'caller'")

    assert sqls(caller.queries) == ["SELECT 'second'", "SELECT 'caller'"]
    assert sqls(watcher.queries) == ["SELECT 'first'", "SELECT 'second'"]


def test_decorated_generator_closed_early_or_thrown_into_closes_its_watch(db: Engine) -> None:
    watcher = sqlwatch.watch()

    @watcher
    def rows() -> Generator[int, int | None, str]:
        try:
            sent = yield 1
            run(db, f"SELECT {sent}")
            yield 2
        finally:
            run(db, "SELECT 'cleanup'")
        return "done"

    iterator = rows()
    next(iterator)
    assert iterator.send(7) == 2
    iterator.close()
    assert sqls(watcher.queries) == ["SELECT 7", "SELECT 'cleanup'"]

    iterator = rows()
    next(iterator)
    with pytest.raises(KeyError, match="from the caller"):
        iterator.throw(KeyError("from the caller"))
    assert sqls(watcher.queries) == ["SELECT 'cleanup'"]
    run(db, "SELECT 'after'")
    assert watcher.query_count == 1  # closed


def test_decorator_report_is_live_inside_the_call(db: Engine) -> None:
    watcher = sqlwatch.watch()

    @watcher
    def handler(n: int) -> int:
        run(db, *[f"SELECT {i}" for i in range(n)])
        return watcher.query_count

    assert handler(2) == 2
    assert handler(3) == 3  # this call's, not the previous one's

    @watcher
    def recursive(depth: int) -> int:
        run(db, "SELECT 1")
        if depth:
            recursive(depth - 1)
        return watcher.query_count

    assert recursive(2) == 3  # the outermost call saw its inner calls' statements


def test_decorated_generator_is_one_unit_of_work_across_its_items(
    sqlite_engine: Engine,
) -> None:
    """A lazy load per yielded item is an N+1 in the generator's watch, and in
    the process-wide report as it was before the generator was watched: its
    steps are one unit of work, not one per item."""
    Base.metadata.create_all(sqlite_engine)
    with Session(sqlite_engine) as session:
        session.add_all(
            [User(name=f"u{i}", addresses=[Address(email=f"{i}@example.com")]) for i in range(3)]
        )
        session.commit()
    sqlwatch.instrument(sqlite_engine)
    watcher = sqlwatch.watch()

    @watcher
    def emails(session: Session) -> Iterator[list[str]]:
        for user in session.scalars(select(User)).all():
            yield [address.email for address in user.addresses]

    with Session(sqlite_engine) as session:
        assert len(list(emails(session))) == 3

    assert [(f.relationship, f.count) for f in watcher.n_plus_one] == [("User.addresses", 3)]
    process = sqlwatch.report().n_plus_one
    assert [(f.relationship, f.count) for f in process] == [("User.addresses", 3)]


def test_scope_names_past_the_limit_count_under_one_name(
    db: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Names made from raw URLs would grow the table for ever: past the limit, their
    runs still count, under one name, and the logger says so once."""
    from sqlwatch import scope

    monkeypatch.setattr(scope, "MAX_CHILD_SCOPES", 3)
    with caplog.at_level(logging.WARNING, logger="sqlwatch"):
        for n in range(6):
            with sqlwatch.watch(f"GET /users/{n}"):
                run(db, "SELECT 1")
    summaries = {s.name: (s.runs, s.query_count) for s in sqlwatch.report().scopes}
    assert summaries == {
        "GET /users/0": (1, 1),
        "GET /users/1": (1, 1),
        "GET /users/2": (1, 1),
        scope.OTHER_SCOPES: (3, 3),
    }
    warnings = [r for r in caplog.records if r.name == "sqlwatch"]
    assert len(warnings) == 1
    assert "counted under '(other scopes)'" in warnings[0].getMessage()
