"""One ORM model set for the whole suite: the classic N+1 shapes.

one-to-many (User.addresses), many-to-one (Address.user), many-to-many
(Post.tags), self-referential (Employee.manager / Employee.reports),
polymorphic (Engineer and Manager are Employees), a deferred column (Post.body).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, String, Table, Text
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column, relationship


class Base(AsyncAttrs, DeclarativeBase):
    """``AsyncAttrs``: ``await user.awaitable_attrs.addresses`` for the async tests."""


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    addresses: Mapped[list[Address]] = relationship(back_populates="user")
    hobbies: Mapped[list[Hobby]] = relationship(back_populates="user")
    posts: Mapped[list[Post]] = relationship(back_populates="author")


class Address(Base):
    __tablename__ = "addresses"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    user: Mapped[User] = relationship(back_populates="addresses")


class Hobby(Base):
    __tablename__ = "hobbies"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    user: Mapped[User] = relationship(back_populates="hobbies")


post_tags = Table(
    "post_tags",
    Base.metadata,
    Column("post_id", ForeignKey("posts.id"), primary_key=True),
    Column("tag_id", ForeignKey("tags.id"), primary_key=True),
)


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = deferred(mapped_column(Text, default=""))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    author: Mapped[User] = relationship(back_populates="posts")
    tags: Mapped[list[Tag]] = relationship(secondary=post_tags, back_populates="posts")


class Tag(Base):
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    posts: Mapped[list[Post]] = relationship(secondary=post_tags, back_populates="tags")


class Employee(Base):
    __tablename__ = "employees"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    type: Mapped[str] = mapped_column(String(20))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("employees.id"))
    manager: Mapped[Employee | None] = relationship(
        remote_side="Employee.id", back_populates="reports"
    )
    reports: Mapped[list[Employee]] = relationship(back_populates="manager")

    __mapper_args__ = {"polymorphic_on": "type", "polymorphic_identity": "employee"}


class Engineer(Employee):
    __mapper_args__ = {"polymorphic_identity": "engineer"}


class Manager(Employee):
    __mapper_args__ = {"polymorphic_identity": "manager"}


def seed(session: object, users: int = 3, addresses_each: int = 2) -> None:
    """Users with addresses, hobbies and posts with tags: enough rows for a loop."""
    from sqlalchemy.orm import Session

    assert isinstance(session, Session)
    tags = [Tag(name=f"tag{i}") for i in range(3)]
    for i in range(users):
        user = User(name=f"user{i}")
        user.addresses = [Address(email=f"u{i}a{j}@example.com") for j in range(addresses_each)]
        user.hobbies = [Hobby(name=f"hobby{i}")]
        user.posts = [Post(title=f"post{i}", body=f"body {i}", tags=tags[: i % 3 + 1])]
        session.add(user)
    boss = Manager(name="boss")
    session.add_all(
        [boss, Engineer(name="eng1", manager=boss), Engineer(name="eng2", manager=boss)]
    )
    session.commit()


class Folder(Base):
    """Cascades: ``files`` are deleted with their folder (loaded by ``Session.delete``),
    ``links`` are detached at flush (their foreign key set to NULL)."""

    __tablename__ = "folders"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    files: Mapped[list[File]] = relationship(back_populates="folder", cascade="all, delete-orphan")
    links: Mapped[list[Link]] = relationship(back_populates="folder")


class File(Base):
    __tablename__ = "files"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    folder_id: Mapped[int] = mapped_column(ForeignKey("folders.id"))
    folder: Mapped[Folder] = relationship(back_populates="files")


class Link(Base):
    __tablename__ = "links"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(100))
    folder_id: Mapped[int | None] = mapped_column(ForeignKey("folders.id"))
    folder: Mapped[Folder | None] = relationship(back_populates="links")
