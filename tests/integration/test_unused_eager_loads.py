"""Unused eager loads: loaded up front with an eager loader, never read in the scope."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, inspect, select
from sqlalchemy.engine.interfaces import CacheStats
from sqlalchemy.orm import (
    Session,
    contains_eager,
    joinedload,
    selectinload,
    sessionmaker,
    subqueryload,
)
from sqlalchemy.orm.attributes import InstrumentedAttribute

import sqlwatch
from tests.integration.helpers import call_site_below, seeded_sessions
from tests.models import Address, Base, Employee, Engineer, Post, User, seed


@pytest.fixture
def db(engine: Engine) -> sessionmaker[Session]:
    return seeded_sessions(engine)


LOADERS = [
    pytest.param(selectinload, id="selectinload"),
    pytest.param(joinedload, id="joinedload"),
    pytest.param(subqueryload, id="subqueryload"),
]


@pytest.mark.parametrize("loader", LOADERS)
def test_eager_loaded_and_never_read(db: sessionmaker[Session], loader: Any) -> None:
    with sqlwatch.watch() as w, db() as session:
        site = call_site_below()
        users = session.scalars(select(User).options(loader(User.addresses))).unique().all()
        names = [user.name for user in users]

    assert len(names) == 3
    [unused] = w.report.unused_eager_loads
    assert unused.relationship == "User.addresses"
    assert unused.call_site == site
    assert unused.count >= 1


@pytest.mark.parametrize("loader", LOADERS)
def test_eager_loaded_and_read_from_one_row(db: sessionmaker[Session], loader: Any) -> None:
    with sqlwatch.watch() as w, db() as session:
        users = session.scalars(select(User).options(loader(User.addresses))).unique().all()
        assert len(users[0].addresses) == 2

    assert w.report.unused_eager_loads == ()


def test_many_to_one_joinedload(db: sessionmaker[Session]) -> None:
    query = select(Address).options(joinedload(Address.user))
    with sqlwatch.watch() as unused_watch, db() as session:
        session.scalars(query).all()
    with sqlwatch.watch() as used_watch, db() as session:
        assert {a.user.name for a in session.scalars(query).all()} == {"user0", "user1", "user2"}

    assert [u.relationship for u in unused_watch.report.unused_eager_loads] == ["Address.user"]
    assert used_watch.report.unused_eager_loads == ()


def test_many_to_many_and_several_relationships(db: sessionmaker[Session]) -> None:
    query = select(Post).options(selectinload(Post.tags), joinedload(Post.author))
    with sqlwatch.watch() as w, db() as session:
        for post in session.scalars(query).all():
            _ = post.author.name  # the tags are never read

    assert [u.relationship for u in w.report.unused_eager_loads] == ["Post.tags"]


def test_contains_eager_fills_from_the_applications_own_join(db: sessionmaker[Session]) -> None:
    """No loader added the JOIN: it filters the query, its rows are not a cost to report."""
    query = (
        select(Address)
        .join(Address.user)
        .where(User.name != "nobody")
        .options(contains_eager(Address.user))
    )
    with sqlwatch.watch() as w, db() as session:
        addresses = session.scalars(query).all()
        assert "user" in vars(addresses[0])  # filled by the query's own JOIN

    assert len(addresses) == 6
    assert w.report.unused_eager_loads == ()


def test_contains_eager_beside_a_joined_loader_is_not_reported(
    db: sessionmaker[Session],
) -> None:
    """The joinedload in the same query makes it a query a joined loader added a
    JOIN to; the relationship ``contains_eager`` filled is still not its cost."""
    query = (
        select(User)
        .join(User.addresses)
        .options(contains_eager(User.addresses), joinedload(User.hobbies))
    )
    with sqlwatch.watch() as w, db() as session:
        users = session.scalars(query).unique().all()
        assert all("addresses" in vars(user) for user in users)

    assert len(users) == 3
    assert [u.relationship for u in w.report.unused_eager_loads] == ["User.hobbies"]


def test_a_watched_relationship_still_builds_cached_sql(db: sessionmaker[Session]) -> None:
    """While its reads are watched, ``User.addresses`` still joins, and the
    statement is compiled once and cached (SQLAlchemy warns, and the suite's
    warnings are errors, if the switched attribute class opts out of caching)."""
    query = select(User.name, Address.email).join(User.addresses).where(User.id == 1)
    with sqlwatch.watch() as w, db() as session:
        session.scalars(select(User).options(joinedload(User.addresses))).unique().all()
        assert type(User.addresses) is not InstrumentedAttribute  # watched now
        results = [session.connection().execute(query) for _ in range(2)]
        rows = [result.all() for result in results]
        cache_hits = [result.context.cache_hit for result in results]

    assert rows[0] == rows[1] != []
    assert cache_hits[1] is CacheStats.CACHE_HIT
    assert [u.relationship for u in w.report.unused_eager_loads] == ["User.addresses"]


def test_merge_without_a_load_passes_the_load_listener(db: sessionmaker[Session]) -> None:
    """``merge(load=False)`` fires the ``load`` event with no query behind it."""
    with db() as session:
        user = session.scalars(select(User).options(joinedload(User.addresses))).first()
        assert user is not None
        session.expunge(user)
    with sqlwatch.watch() as w, db() as session:
        merged = session.merge(user, load=False)

    assert merged.name == user.name
    assert w.query_count == 0
    assert w.report.unused_eager_loads == ()


def test_query_that_returned_no_rows_is_never_reported(db: sessionmaker[Session]) -> None:
    query = select(User).where(User.id < 0)
    with sqlwatch.watch() as w, db() as session:
        for loader in (selectinload, joinedload, subqueryload):
            assert session.scalars(query.options(loader(User.hobbies))).unique().all() == []

    assert w.report.unused_eager_loads == ()


def test_polymorphic_subclass_rows(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as unused_watch, db() as session:
        session.scalars(select(Employee).options(selectinload(Employee.reports))).all()
    with sqlwatch.watch() as used_watch, db() as session:
        engineers = session.scalars(select(Engineer).options(joinedload(Engineer.manager))).all()
        assert {e.manager.name for e in engineers if e.manager} == {"boss"}

    assert [u.relationship for u in unused_watch.report.unused_eager_loads] == ["Employee.reports"]
    assert used_watch.report.unused_eager_loads == ()


def test_counts_each_loading_query(db: sessionmaker[Session]) -> None:
    query = select(User).options(joinedload(User.hobbies))
    with sqlwatch.watch() as w, db() as session:
        for _ in range(3):
            session.scalars(query).unique().all()  # one line, three queries

    [unused] = w.report.unused_eager_loads
    assert unused.count == 3


def test_a_read_after_the_scope_does_not_count(db: sessionmaker[Session]) -> None:
    with db() as session, sqlwatch.watch() as outer:
        with sqlwatch.watch() as inner:
            users = session.scalars(select(User).options(selectinload(User.posts))).all()
        _ = users[0].posts  # read in the outer scope only

    assert [u.relationship for u in inner.report.unused_eager_loads] == ["User.posts"]
    assert outer.report.unused_eager_loads == ()


def test_off_when_not_asked_for(db: sessionmaker[Session]) -> None:
    query = select(User).options(selectinload(User.addresses))
    with sqlwatch.watch(detect_unused_eager_loads=False) as w, db() as session:
        session.scalars(query).all()
        assert type(User.__dict__["addresses"]) is InstrumentedAttribute
    with sqlwatch.assert_max_queries(5) as counted, db() as session:
        session.scalars(query).all()

    assert w.report.unused_eager_loads == ()
    assert counted.report.unused_eager_loads == ()
    assert sqlwatch.report().unused_eager_loads == ()  # off process-wide by default


def test_attributes_are_restored_when_the_last_scope_closes(db: sessionmaker[Session]) -> None:
    attribute = User.__dict__["addresses"]
    with sqlwatch.watch(), db() as session:
        users = session.scalars(select(User).options(selectinload(User.addresses))).all()
        assert type(attribute) is not InstrumentedAttribute  # switched while watched...
        assert isinstance(attribute, InstrumentedAttribute)
        assert User.addresses is attribute  # ...but the very same object
        assert type(attribute).__name__ == "InstrumentedAttribute"
        assert "addresses" in inspect(User).all_orm_descriptors

    assert type(attribute) is InstrumentedAttribute
    assert len(users[0].addresses) == 2  # and still a plain relationship afterwards


def test_reset_restores_an_attribute_of_an_open_scope(db: sessionmaker[Session]) -> None:
    watch = sqlwatch.watch()
    with watch, db() as session:
        session.scalars(select(User).options(selectinload(User.hobbies))).all()
        sqlwatch.reset()
        assert type(User.__dict__["hobbies"]) is InstrumentedAttribute


def test_process_wide_when_asked_for(engine: Engine) -> None:
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        seed(session)
    sqlwatch.instrument(engine, exporters=(), detect_unused_eager_loads=True)
    with Session(engine) as session:
        session.scalars(select(User).options(selectinload(User.addresses))).all()
        users = session.scalars(select(User).options(joinedload(User.hobbies))).unique().all()
        _ = users[0].hobbies

    assert [u.relationship for u in sqlwatch.report().unused_eager_loads] == ["User.addresses"]


def test_a_read_through_inspect_counts_one_through_dict_does_not(
    db: sessionmaker[Session],
) -> None:
    """As docs/n-plus-one.md says: ``inspect(obj).attrs.x.value`` goes through the
    class attribute, ``obj.__dict__`` does not (the relationship then looks unread)."""
    query = select(User).options(selectinload(User.addresses))
    with sqlwatch.watch() as seen, db() as session:
        users = session.scalars(query).all()
        assert sum(len(inspect(user).attrs.addresses.value) for user in users) == 6
    assert seen.report.unused_eager_loads == ()

    with sqlwatch.watch() as unseen, db() as session:
        users = session.scalars(query).all()
        assert sum(len(vars(user)["addresses"]) for user in users) == 6
    assert [u.relationship for u in unseen.report.unused_eager_loads] == ["User.addresses"]
