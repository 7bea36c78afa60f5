"""The workloads the benchmarks share, so that their ratios describe the same work.

The cached Core select: ``select(items).where(items.c.id == bindparam("id"))`` by
primary key over 1,000 rows, one connection per batch (as a request holds one).

The mixed ORM workload: per unit of work, ``session.get``, a select with a
join, a select of 5 users and a lazy load of each one's addresses, an insert,
an update, a delete and a commit (11 statements), in a new ``Session``; the data
is the same after a unit as before it. SQLite in memory, one engine per variant.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.pool import StaticPool

__all__ = [
    "CORE_SELECT",
    "LAZY_LOADS",
    "N_ITEMS",
    "N_USERS",
    "Address",
    "Base",
    "User",
    "core_engine",
    "core_runner",
    "memory_engine",
    "orm_engine",
    "orm_runner",
    "orm_unit",
]

N_USERS = 200
ADDRESSES_PER_USER = 3
LAZY_LOADS = 5


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    email: Mapped[str] = mapped_column(String(100))
    addresses: Mapped[list[Address]] = relationship(back_populates="user")


class Address(Base):
    __tablename__ = "addresses"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    email: Mapped[str] = mapped_column(String(100))
    user: Mapped[User] = relationship(back_populates="addresses")


def memory_engine() -> Engine:
    return create_engine(
        "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
    )


def orm_engine() -> Engine:
    engine = memory_engine()
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        for uid in range(1, N_USERS + 1):
            user = User(id=uid, name=f"user{uid}", email=f"user{uid}@example.com")
            user.addresses = [
                Address(email=f"a{uid}.{k}@example.com") for k in range(ADDRESSES_PER_USER)
            ]
            session.add(user)
        session.commit()
    return engine


def orm_unit(engine: Engine, i: int) -> None:
    """One unit of work: 11 statements (get, join, select, 5 lazy loads, insert,
    update, delete) and a commit; the data is the same after it as before."""
    uid = i % (N_USERS - LAZY_LOADS) + 1
    with Session(engine) as session:
        user = session.get(User, uid)
        assert user is not None
        session.execute(
            select(User.name, Address.email)
            .join(User.addresses)
            .where(User.id.between(uid, uid + 4))
        ).all()
        others = session.scalars(
            select(User).where(User.id > uid).order_by(User.id).limit(LAZY_LOADS)
        ).all()
        for other in others:
            len(other.addresses)  # lazy load: one SELECT per user
        address = Address(user_id=uid, email=f"new{i}@example.com")
        session.add(address)
        session.flush()
        user.name = f"user{uid}-{i}"
        session.flush()
        session.delete(address)
        session.commit()


def orm_runner(engine: Engine) -> Callable[[int], None]:
    counter = [0]

    def run(n: int) -> None:
        start = counter[0]
        for i in range(start, start + n):
            orm_unit(engine, i)
        counter[0] = start + n

    return run


# -- Core ---------------------------------------------------------------------------

N_ITEMS = 1000
core_metadata = MetaData()
items = Table(
    "items",
    core_metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(50)),
    Column("value", Integer),
)
CORE_SELECT = select(items).where(items.c.id == bindparam("id"))


def core_engine() -> Engine:
    engine = memory_engine()
    core_metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            items.insert(),
            [{"id": k, "name": f"item{k}", "value": k * 7} for k in range(1, N_ITEMS + 1)],
        )
    return engine


def core_runner(engine: Engine) -> Callable[[int], None]:
    counter = [0]

    def run(n: int) -> None:
        start = counter[0]
        with engine.connect() as conn:  # one connection per batch, as a request holds one
            execute = conn.execute
            for i in range(start, start + n):
                execute(CORE_SELECT, {"id": i % N_ITEMS + 1}).one()
        counter[0] = start + n

    return run
