"""N+1 detection with a sync ``Session`` and Core, on SQLite and PostgreSQL.

Each case is the loop (or the non-loop) a user writes; the expectations are on
what ``watch().n_plus_one`` reports, through the public API only.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import (
    Session,
    joinedload,
    load_only,
    selectinload,
    sessionmaker,
    subqueryload,
)

import sqlwatch
from sqlwatch import NPlusOne
from sqlwatch.exporters.base import Exporter
from tests.integration.helpers import call_site_below, seeded_sessions
from tests.models import (
    Address,
    Base,
    Employee,
    Engineer,
    File,
    Folder,
    Link,
    Post,
    User,
)


@pytest.fixture
def db(engine: Engine) -> sessionmaker[Session]:
    return seeded_sessions(engine)


def only(findings: list[NPlusOne], relationship: str | None = None) -> NPlusOne:
    matching = [f for f in findings if f.relationship == relationship]
    assert len(matching) == 1, findings
    return matching[0]


# -- the classic shapes ----------------------------------------------------------


def test_one_to_many_loop_is_one_finding_with_the_fix(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        users = session.scalars(select(User).order_by(User.id)).all()
        for user in users:
            site = call_site_below()
            _ = user.addresses

    finding = only(w.n_plus_one, "User.addresses")
    assert finding.kind == "lazy_load"
    assert finding.count == 3
    assert finding.call_site == site
    assert finding.tables == ("addresses",)
    assert "addresses" in finding.example_sql
    assert finding.normalized.startswith("SELECT addresses.id")
    assert finding.loaded_by is not None
    assert finding.loaded_by.startswith("SELECT users.id, users.name FROM users")
    assert "selectinload(User.addresses)" in finding.suggestion
    assert "query that loads the User objects" in finding.suggestion
    assert finding.total_ms >= 0
    assert len(w.n_plus_one) == 1


def test_many_to_one_suggests_joinedload(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        addresses = session.scalars(select(Address).order_by(Address.id)).all()
        names = [address.user.name for address in addresses]

    assert len(set(names)) == 3
    finding = only(w.n_plus_one, "Address.user")
    # the second address of each user finds it in the identity map: no SQL, no count
    assert finding.count == 3
    assert "joinedload(Address.user)" in finding.suggestion
    assert finding.tables == ("users",)


def test_many_to_many(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        for post in session.scalars(select(Post)).all():
            _ = post.tags

    finding = only(w.n_plus_one, "Post.tags")
    assert finding.count == 3
    assert "selectinload(Post.tags)" in finding.suggestion
    assert set(finding.tables) == {"tags", "post_tags"}


def test_self_referential_collection(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        for employee in session.scalars(select(Employee)).all():
            _ = employee.reports

    finding = only(w.n_plus_one, "Employee.reports")
    assert finding.count == 3
    assert "selectinload(Employee.reports)" in finding.suggestion


def test_identity_map_hits_are_not_queries_nor_findings(db: sessionmaker[Session]) -> None:
    """Both engineers have the same manager: one load, then the identity map."""
    with sqlwatch.watch() as w, db() as session:
        engineers = session.scalars(select(Engineer)).all()
        managers = {engineer.manager.name for engineer in engineers if engineer.manager}

    assert managers == {"boss"}
    assert [s.relationship for s in w.queries] == [None, "Employee.manager"]
    assert w.n_plus_one == []


def test_polymorphic_rows_count_as_one_relationship(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        employees = session.scalars(select(Employee)).all()
        assert {type(e).__name__ for e in employees} == {"Manager", "Engineer"}
        for employee in employees:
            _ = employee.reports

    finding = only(w.n_plus_one, "Employee.reports")
    assert finding.count == 3
    assert finding.loaded_by is not None
    assert "FROM employees" in finding.loaded_by


def test_deferred_column_in_a_loop(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        for post in session.scalars(select(Post)).all():
            site = call_site_below()
            _ = post.body

    finding = only(w.n_plus_one, "Post.body")
    assert finding.kind == "column_load"
    assert finding.count == 3
    assert finding.call_site == site
    assert "undefer(Post.body)" in finding.suggestion
    assert "load_only" in finding.suggestion


def test_column_left_out_by_load_only(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        for user in session.scalars(select(User).options(load_only(User.id))).all():
            _ = user.name

    finding = only(w.n_plus_one, "User.name")
    assert finding.kind == "column_load"
    assert "undefer(User.name)" in finding.suggestion


def test_nested_loop_names_the_chain(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        for user in session.scalars(select(User)).all():
            for post in user.posts:
                _ = post.tags

    outer = only(w.n_plus_one, "User.posts")
    inner = only(w.n_plus_one, "Post.tags")
    assert outer.count == inner.count == 3
    assert inner.loaded_by == outer.normalized
    assert "selectinload(User.posts).selectinload(Post.tags)" in inner.suggestion


def render_addresses(users: list[User]) -> tuple[list[int], str]:
    """A helper of the 'view' below: the loop, and so the line to fix, is here."""
    counts = []
    site = call_site_below(2)
    for user in users:
        counts.append(len(user.addresses))  # the line sqlwatch must point at
    return counts, site


def view(session: Session) -> tuple[list[int], str]:
    users = list(session.scalars(select(User)).all())
    return render_addresses(users)


def test_loop_in_a_helper_called_from_a_view_points_at_the_loop(
    db: sessionmaker[Session],
) -> None:
    with sqlwatch.watch() as w, db() as session:
        counts, site = view(session)

    assert counts == [2, 2, 2]
    finding = only(w.n_plus_one, "User.addresses")
    assert finding.call_site == site
    assert finding.call_site is not None
    assert finding.call_site.endswith("in render_addresses")


# -- Core and raw SQL -------------------------------------------------------------


def test_core_select_per_row_from_one_line(db: sessionmaker[Session], engine: Engine) -> None:
    users = User.__table__
    with sqlwatch.watch() as w, engine.connect() as conn:
        for user_id in (1, 2, 3):
            site = call_site_below()
            conn.execute(select(users.c.name).where(users.c.id == user_id)).all()

    finding = only(w.n_plus_one, None)
    assert finding.kind == "repeated_statement"
    assert finding.count == 3
    assert finding.call_site == site
    assert finding.tables == ("users",)
    assert finding.loaded_by is None
    assert "IN (...)" in finding.suggestion
    assert "JOIN" in finding.suggestion


def test_raw_sql_per_row(db: sessionmaker[Session], engine: Engine) -> None:
    with sqlwatch.watch() as w, engine.connect() as conn:
        for user_id in (1, 2, 3):
            conn.execute(text("SELECT email FROM addresses WHERE user_id = :u"), {"u": user_id})

    finding = only(w.n_plus_one, None)
    assert finding.count == 3
    assert finding.tables == ("addresses",)


def test_session_get_in_a_loop_is_a_repeated_statement(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        names = [session.get(User, user_id).name for user_id in (1, 2, 3)]  # type: ignore[union-attr]

    assert names == ["user0", "user1", "user2"]
    assert only(w.n_plus_one, None).count == 3


def test_different_call_sites_each_under_the_threshold(
    db: sessionmaker[Session], engine: Engine
) -> None:
    query = text("SELECT name FROM users WHERE id = :id")
    with sqlwatch.watch() as w, engine.connect() as conn:
        conn.execute(query, {"id": 1}).all()
        conn.execute(query, {"id": 2}).all()
        conn.execute(query, {"id": 3}).all()

    assert w.query_count == 3
    assert w.n_plus_one == []


def test_identical_parameters_are_duplicates_not_n_plus_one(
    db: sessionmaker[Session], engine: Engine
) -> None:
    query = text("SELECT name FROM users WHERE id = :id")
    with sqlwatch.watch() as w, engine.connect() as conn:
        for _ in range(3):
            conn.execute(query, {"id": 1}).all()

    assert w.n_plus_one == []
    [duplicate] = w.report.duplicates
    assert duplicate.count == 3
    assert duplicate.sql == w.queries[0].sql  # the parameterized SQL, no value in it
    assert "1" not in duplicate.sql.replace("$1", "")
    assert duplicate.call_sites == (w.queries[0].call_site,)


def test_executemany_and_inserts_in_a_loop_are_not_n_plus_one(
    db: sessionmaker[Session], engine: Engine
) -> None:
    hobbies = Base.metadata.tables["hobbies"]
    with sqlwatch.watch() as w, engine.begin() as conn:
        conn.execute(insert(hobbies), [{"name": f"h{i}", "user_id": 1} for i in range(5)])
        for i in range(3):
            conn.execute(insert(hobbies).values(name=f"one{i}", user_id=2))

    assert w.query_count >= 4
    assert w.n_plus_one == []


def test_savepoints_and_transaction_control_are_not_n_plus_one(
    db: sessionmaker[Session], engine: Engine
) -> None:
    hobbies = Base.metadata.tables["hobbies"]
    with sqlwatch.watch() as w, engine.connect() as conn, conn.begin():
        for i in range(4):
            with conn.begin_nested():
                conn.execute(insert(hobbies).values(name=f"s{i}", user_id=1))

    operations = w.report.operations
    assert operations.get("SAVEPOINT") == 4
    assert w.n_plus_one == []


# -- what the ORM does for itself -------------------------------------------------


def test_batched_inserts_of_a_flush(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        session.add_all([User(name=f"new{i}") for i in range(5)])
        session.add_all([Address(email=f"x{i}@example.com", user_id=1) for i in range(5)])
        session.commit()

    assert w.report.operations.get("INSERT", 0) >= 2
    assert w.n_plus_one == []


def test_cascade_deletes_and_flush_loads_are_not_n_plus_one(
    db: sessionmaker[Session],
) -> None:
    with db() as session:
        for i in range(3):
            session.add(
                Folder(
                    name=f"folder{i}",
                    files=[File(name="a"), File(name="b")],
                    links=[Link(url="https://example.com")],
                )
            )
        session.commit()

    with sqlwatch.watch() as w, db() as session:
        for folder in session.scalars(select(Folder)).all():
            session.delete(folder)  # loads folder.files to cascade the delete
        session.commit()  # the flush loads folder.links to set their folder_id to NULL

    relationships = {s.relationship for s in w.queries if s.relationship}
    assert relationships == {"Folder.files", "Folder.links"}
    assert w.report.operations.get("DELETE", 0) >= 2
    assert w.n_plus_one == []


# -- loops that interleave, stream, or repeat ----------------------------------------


def test_interleaved_loops_give_one_finding_per_relationship(
    db: sessionmaker[Session],
) -> None:
    with sqlwatch.watch() as w, db() as session:
        for user in session.scalars(select(User)).all():
            _ = user.addresses
            _ = user.hobbies

    assert {f.relationship for f in w.n_plus_one} == {"User.addresses", "User.hobbies"}
    assert all(f.count == 3 for f in w.n_plus_one)


def test_streaming_does_not_hide_an_n_plus_one(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        for user in session.scalars(select(User).execution_options(yield_per=1)):
            _ = user.addresses

    assert only(w.n_plus_one, "User.addresses").count == 3


def test_streaming_with_selectinload_is_not_an_n_plus_one(db: sessionmaker[Session]) -> None:
    """yield_per(1) runs the selectin loader once per batch: fetches, not a loop."""
    query = select(User).options(selectinload(User.addresses)).execution_options(yield_per=1)
    with sqlwatch.watch() as w, db() as session:
        total = sum(len(user.addresses) for user in session.scalars(query))

    assert total == 6
    eager = [s for s in w.queries if "addresses" in s.tables]
    assert len(eager) >= 2  # one selectin statement per batch
    assert w.n_plus_one == []


def test_stream_results_with_core(db: sessionmaker[Session], engine: Engine) -> None:
    users = User.__table__
    with sqlwatch.watch() as w, engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=1).execute(
            select(users)
        )
        rows = [row for partition in result.partitions(1) for row in partition]

    assert len(rows) == 3
    assert w.query_count == 1
    assert w.n_plus_one == []


@pytest.mark.parametrize(
    ("option", "queries"),
    [
        (selectinload(User.addresses), 2),
        (joinedload(User.addresses), 1),
        (subqueryload(User.addresses), 2),
    ],
    ids=["selectinload", "joinedload", "subqueryload"],
)
def test_eager_loading_is_not_an_n_plus_one(
    db: sessionmaker[Session], option: Any, queries: int
) -> None:
    with sqlwatch.watch() as w, db() as session:
        users = session.scalars(select(User).options(option)).unique().all()
        total = sum(len(user.addresses) for user in users)

    assert total == 6
    assert w.query_count == queries  # the users, and all their addresses at once
    assert w.n_plus_one == []


def test_one_instance_lazy_load_is_not_a_finding(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        user = session.scalars(select(User).limit(1)).one()
        _ = user.addresses
        session.expire(user, ["addresses"])
        _ = user.addresses  # the same parent twice: still one parent

    assert [s.relationship for s in w.queries].count("User.addresses") == 2
    assert w.n_plus_one == []


# -- options ------------------------------------------------------------------------


def test_threshold_option(db: sessionmaker[Session]) -> None:
    def loop(threshold: int) -> list[NPlusOne]:
        with sqlwatch.watch(n_plus_one_threshold=threshold) as w, db() as session:
            for user in session.scalars(select(User)).all():
                _ = user.addresses
        return w.n_plus_one

    assert loop(4) == []
    assert only(loop(3), "User.addresses").count == 3


def users_loop(session: Session) -> None:
    for user in session.scalars(select(User)).all():
        _ = user.addresses
        _ = user.hobbies


@pytest.mark.parametrize(
    ("ignore", "left"),
    [
        (("User.addresses",), {"User.hobbies"}),
        (("User.*",), set()),
        (("hobbies",), {"User.addresses"}),
        (("HOBBIES", "addresses"), set()),
        (("tests/integration/*",), set()),
        (("*/test_n_plus_one.py:*",), set()),
        (("app/legacy/*",), {"User.addresses", "User.hobbies"}),
    ],
)
def test_ignore_option(db: sessionmaker[Session], ignore: tuple[str, ...], left: set[str]) -> None:
    with sqlwatch.watch(ignore=ignore) as w, db() as session:
        users_loop(session)

    assert {f.relationship for f in w.n_plus_one} == left


def test_ignore_option_for_a_table_of_core_sql(db: sessionmaker[Session], engine: Engine) -> None:
    with sqlwatch.watch(ignore=["users"]) as w, engine.connect() as conn:
        for user_id in (1, 2, 3):
            conn.execute(text("SELECT name FROM users WHERE id = :id"), {"id": user_id})

    assert w.n_plus_one == []


def test_ignore_n_plus_one_block(db: sessionmaker[Session]) -> None:
    with (
        sqlwatch.watch() as w,
        db() as session,
        sqlwatch.ignore_n_plus_one(reason="legacy report, fixed in #123"),
    ):
        users_loop(session)

    assert w.query_count == 7
    assert w.n_plus_one == []


def test_ignore_n_plus_one_with_patterns_and_nesting(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        with sqlwatch.ignore_n_plus_one("User.hobbies"):
            users_loop(session)
            with sqlwatch.ignore_n_plus_one("User.addresses"):
                session.expire_all()
                users_loop(session)
        session.expire_all()
        users_loop(session)  # outside the blocks: both count again

    findings = {f.relationship: f.count for f in w.n_plus_one}
    assert findings == {"User.addresses": 6, "User.hobbies": 3}


def test_ignore_n_plus_one_validates_its_patterns() -> None:
    with pytest.raises(TypeError, match="non-empty strings"), sqlwatch.ignore_n_plus_one(3):  # type: ignore[arg-type]
        pass
    with pytest.raises(TypeError, match="reason"), sqlwatch.ignore_n_plus_one(reason=1):  # type: ignore[arg-type]
        pass


# -- reporting ------------------------------------------------------------------------


class Collector(Exporter):
    def __init__(self) -> None:
        self.findings: list[tuple[NPlusOne, str]] = []

    def on_n_plus_one(self, finding: NPlusOne, scope: str) -> None:
        self.findings.append((finding, scope))


def test_emitted_once_when_crossing_then_counted_at_the_end(
    db: sessionmaker[Session],
) -> None:
    collector = Collector()
    with sqlwatch.watch("page", exporters=[collector]) as w, db() as session:
        users = session.scalars(select(User)).all()
        for number, user in enumerate(users, 1):
            _ = user.addresses
            live = w.n_plus_one
            if number == 1:
                assert live == []
                assert collector.findings == []
            else:
                assert only(live, "User.addresses").count == number

    [(emitted, scope)] = collector.findings
    assert scope == "page"
    assert emitted.relationship == "User.addresses"
    assert emitted.count == 2  # the threshold, when it was crossed
    assert only(w.n_plus_one, "User.addresses").count == 3


def test_nested_watches_each_see_the_loop(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as outer, db() as session:
        users = session.scalars(select(User)).all()
        with sqlwatch.watch() as inner:
            for user in users:
                _ = user.addresses

    assert only(inner.n_plus_one, "User.addresses").count == 3
    assert only(outer.n_plus_one, "User.addresses").count == 3


def test_findings_survive_the_json_report(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        users_loop(session)

    loaded = sqlwatch.Report.from_dict(w.report.to_dict())
    assert loaded.n_plus_one == w.report.n_plus_one
    assert {f.kind for f in loaded.n_plus_one} == {"lazy_load"}


def test_expired_objects_reloaded_in_a_loop(db: sessionmaker[Session]) -> None:
    """After commit(), each object reloads its expired attributes on first access:
    a column load to SQLAlchemy, whose fix is not undefer() but not expiring them."""
    with sqlwatch.watch() as w, db() as session:
        users = session.scalars(select(User)).all()
        session.commit()  # expire_on_commit
        for user in users:
            site = call_site_below()
            _ = user.name

    [finding] = w.n_plus_one
    assert finding.kind == "column_load"
    assert finding.relationship is not None
    assert "User.name" in finding.relationship
    assert finding.count == 3
    assert finding.call_site == site
    assert finding.suggestion.startswith("These User objects were expired (by commit()")
    assert "expire_on_commit=False" in finding.suggestion
    assert "undefer" not in finding.suggestion


def test_bookkeeping_loads_stay_apart_from_the_applications_loops(
    db: sessionmaker[Session],
) -> None:
    """The same relationships, loaded by the application's loop (an N+1) and by the
    ORM for a delete cascade and a flush (not one), in one process, several times:
    what the call-site walk learned from one kind never labels the other."""
    for round_ in range(3):
        with db() as session:
            for i in range(3):
                session.add(Folder(name=f"f{round_}.{i}", files=[File(name="a")], links=[]))
            session.commit()
        with sqlwatch.watch() as loop, db() as session:
            folders = session.scalars(select(Folder)).all()
            for folder in folders:
                len(folder.files)
        with sqlwatch.watch() as cleanup, db() as session:
            for folder in session.scalars(select(Folder)).all():
                session.delete(folder)
            session.commit()

        assert [f.relationship for f in loop.n_plus_one] == ["Folder.files"]
        assert cleanup.n_plus_one == []
