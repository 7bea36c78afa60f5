"""Joined-table inheritance: a base-class query, then a subclass's own column per row.

``select(Person)`` reads only the base table; each ``Engineer`` then loads its own
table's columns on first access. SQLAlchemy calls that a column load, as for a
deferred column, but the fix is not ``undefer()`` (which changes nothing on that
query): it is loading the subclass's table with the query.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, ForeignKey, String, select
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    load_only,
    mapped_column,
    selectin_polymorphic,
    sessionmaker,
    undefer,
)

import sqlwatch
from tests.integration.helpers import call_site_below


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "polymorphic_people"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(50))

    __mapper_args__ = {"polymorphic_on": "kind", "polymorphic_identity": "person"}


class Engineer(Person):
    __tablename__ = "polymorphic_engineers"

    id: Mapped[int] = mapped_column(ForeignKey("polymorphic_people.id"), primary_key=True)
    language: Mapped[str] = mapped_column(String(20))

    __mapper_args__ = {"polymorphic_identity": "engineer"}


@pytest.fixture
def db(engine: Engine) -> Iterator[sessionmaker[Session]]:
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    make = sessionmaker(engine)
    with make() as session:
        session.add_all([Engineer(name=f"e{i}", language="python") for i in range(3)])
        session.commit()
    sqlwatch.instrument(engine, exporters=())
    yield make
    Base.metadata.drop_all(engine)


def test_subclass_columns_of_a_base_class_query(db: sessionmaker[Session]) -> None:
    with sqlwatch.watch() as w, db() as session:
        for person in session.scalars(select(Person).order_by(Person.id)).all():
            assert isinstance(person, Engineer)
            site = call_site_below()
            assert person.language == "python"

    [finding] = w.n_plus_one
    assert finding.kind == "column_load"
    assert finding.relationship == "Engineer.language"
    assert finding.count == 3
    assert finding.call_site == site
    assert "selectin_polymorphic(Person, [Engineer])" in finding.suggestion
    assert "with_polymorphic(Person, [Engineer])" in finding.suggestion
    assert "undefer" not in finding.suggestion

    # what the suggestion says is the fix, and what it replaces is not
    with sqlwatch.watch() as fixed, db() as session:
        query = select(Person).options(selectin_polymorphic(Person, [Engineer]))
        assert [p.language for p in session.scalars(query).all()] == ["python"] * 3  # type: ignore[attr-defined]
    assert fixed.n_plus_one == []
    with sqlwatch.watch() as still, db() as session:
        query = select(Person).options(undefer(Engineer.language))
        assert [p.language for p in session.scalars(query).all()] == ["python"] * 3  # type: ignore[attr-defined]
    assert [f.relationship for f in still.n_plus_one] == ["Engineer.language"]


def test_subclass_column_left_out_by_load_only_still_says_load_only(
    db: sessionmaker[Session],
) -> None:
    """The parents' query read the subclass's table: ``load_only()`` left it out."""
    with sqlwatch.watch() as w, db() as session:
        query = select(Engineer).options(load_only(Engineer.name))
        for engineer in session.scalars(query).all():
            _ = engineer.language

    [finding] = w.n_plus_one
    assert finding.relationship == "Engineer.language"
    assert "undefer(Engineer.language)" in finding.suggestion
    assert "polymorphic" not in finding.suggestion
