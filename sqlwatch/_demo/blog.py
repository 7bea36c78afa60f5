"""A blog front page, written the way pages often are, and then fixed.

The page as written lists the latest posts with their author, comment count and
tags, reading each relationship in the loop (an N+1 per relationship), asks for
the site's totals twice (a duplicate query), counts the archive with a slow
query, and leaves an audit connection checked out (a pool leak). The fixed page
loads the relationships with the loader options sqlwatch suggests, asks for the
totals once and skips the archive count.

Tables are prefixed ``sqlwatch_demo_`` so that ``--url`` can point at a database
that has tables of its own; the demo drops only its own.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Column, Engine, ForeignKey, String, Table, Text, event, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    joinedload,
    mapped_column,
    relationship,
    selectinload,
)

__all__ = [
    "FIX",
    "FIX_TEXT",
    "SLOW_QUERY_MS",
    "DemoBase",
    "prepare",
    "render_front_page",
    "seed",
]

PAGE_SIZE = 10
SLOW_QUERY_MS = 25.0
"""The demo's ``slow_query_ms``: its archive count takes longer than that."""
PAUSE_MS = 40
ARCHIVE_ROWS = 100_000


class DemoBase(DeclarativeBase):
    pass


post_tags = Table(
    "sqlwatch_demo_post_tags",
    DemoBase.metadata,
    Column("post_id", ForeignKey("sqlwatch_demo_posts.id"), primary_key=True),
    Column("tag_id", ForeignKey("sqlwatch_demo_tags.id"), primary_key=True),
)


class Author(DemoBase):
    __tablename__ = "sqlwatch_demo_authors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    posts: Mapped[list[Post]] = relationship(back_populates="author")


class Post(DemoBase):
    __tablename__ = "sqlwatch_demo_posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    body: Mapped[str] = mapped_column(Text)
    author_id: Mapped[int] = mapped_column(ForeignKey("sqlwatch_demo_authors.id"))
    author: Mapped[Author] = relationship(back_populates="posts")
    comments: Mapped[list[Comment]] = relationship(back_populates="post")
    tags: Mapped[list[Tag]] = relationship(secondary=post_tags)


class Comment(DemoBase):
    __tablename__ = "sqlwatch_demo_comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    post_id: Mapped[int] = mapped_column(ForeignKey("sqlwatch_demo_posts.id"))
    post: Mapped[Post] = relationship(back_populates="comments")


class Tag(DemoBase):
    __tablename__ = "sqlwatch_demo_tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(30))


FIX: tuple[Any, ...] = (
    joinedload(Post.author),
    selectinload(Post.comments),
    selectinload(Post.tags),
)
"""The loader options sqlwatch suggests for the page's N+1s."""
FIX_TEXT = (
    ".options(joinedload(Post.author), selectinload(Post.comments), selectinload(Post.tags))"
)


def seed(session: Session) -> None:
    """Five authors, twelve posts with three comments each, six tags."""
    tags = [Tag(name=name) for name in ("python", "sql", "orm", "testing", "ops", "perf")]
    authors = [Author(name=name) for name in ("Ada", "Brian", "Grace", "Guido", "Linus")]
    for number in range(12):
        post = Post(
            title=f"Post #{number + 1}",
            body="...",
            author=authors[number % len(authors)],
            tags=[tags[number % 6], tags[(number + 2) % 6]],
        )
        post.comments = [Comment(text=f"comment {c}") for c in range(3)]
        session.add(post)
    session.commit()


# -- the page -----------------------------------------------------------------


def site_totals(session: Session) -> tuple[int, int]:
    posts = select(func.count(Post.id)).scalar_subquery()
    comments = select(func.count(Comment.id)).scalar_subquery()
    row = session.execute(select(posts, comments)).one()
    return int(row[0]), int(row[1])


def render_post(post: Post) -> str:
    tags = ", ".join(tag.name for tag in post.tags)
    return f"{post.title} by {post.author.name}, {len(post.comments)} comments [{tags}]"


def archive_size(session: Session) -> int:
    """The archive widget's count: slow on purpose.

    The database pauses ``PAUSE_MS`` as a missing index would make it, so the
    slow query shows on any machine (a big scan would be fast on a fast one).
    """
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        query = text(f"SELECT count(*) + demo_pause({PAUSE_MS}) FROM sqlwatch_demo_posts")
    elif dialect == "postgresql":
        query = text(f"SELECT count(*) FROM sqlwatch_demo_posts, pg_sleep({PAUSE_MS / 1000})")
    else:
        query = text(
            "WITH RECURSIVE counter(n) AS "
            f"(SELECT 1 UNION ALL SELECT n + 1 FROM counter WHERE n < {ARCHIVE_ROWS}) "
            "SELECT count(*) FROM counter"
        )
    return int(session.execute(query).scalar_one())


def prepare(engine: Engine) -> None:
    """Give SQLite connections the ``demo_pause(ms)`` function the archive count uses."""
    if engine.dialect.name != "sqlite":
        return

    def add_pause(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("demo_pause", 1, _pause, deterministic=False)

    event.listen(engine, "connect", add_pause)


def _pause(ms: float) -> int:
    time.sleep(ms / 1000)
    return 0


def open_audit_connection(engine: Engine) -> Connection:
    """An audit log connection the page forgets to close: checked out past the page."""
    connection = engine.connect()
    connection.execute(text("SELECT 1"))
    return connection


def render_front_page(
    engine: Engine, session: Session, *, fixed: bool
) -> tuple[str, Connection | None]:
    """The page's text, and the connection it leaked (``None`` once fixed)."""
    query = select(Post).order_by(Post.id.desc()).limit(PAGE_SIZE)
    if fixed:
        query = query.options(*FIX)
    posts = session.scalars(query).all()
    posts_total, comments_total = site_totals(session)
    lines = [f"The Blog: {posts_total} posts, {comments_total} comments"]
    lines.extend(render_post(post) for post in posts)
    leaked = None
    if fixed:
        lines.append(f"{posts_total} posts in all")
    else:
        lines.append(f"{site_totals(session)[0]} posts in all")  # the totals, again
        lines.append(f"archive: {archive_size(session)} entries")
        leaked = open_audit_connection(engine)
    return "\n".join(lines), leaked
