"""``sqlwatch demo [--url URL] [--json PATH]``: what sqlwatch finds, in one command.

A small blog (``sqlwatch._demo.blog``) renders its front page twice under
``sqlwatch.watch()``: as written (N+1s, a duplicate query, a slow query, a
leaked connection), then with the loader options sqlwatch suggests. The demo
prints the findings and the query counts before and after. It runs on a
temporary SQLite file unless ``--url`` names another database, where it creates
and then drops its own ``sqlwatch_demo_*`` tables.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from sqlwatch.records import NPlusOne
from sqlwatch.report import Report

__all__ = ["register", "run"]


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="run a small blog with an N+1 (and more), then fixed, and show what sqlwatch finds",
    )
    parser.add_argument(
        "--url",
        help="SQLAlchemy URL of the database to run on (default: a temporary SQLite file); "
        "the demo creates and drops its own sqlwatch_demo_* tables there",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the JSON report to PATH")
    parser.set_defaults(run=run)


class DemoError(Exception):
    """The database of ``--url`` cannot be used: one line, exit status 2."""


def run(args: argparse.Namespace) -> int:
    import sqlalchemy.exc

    try:
        with contextlib.ExitStack() as stack:
            if args.url:
                url, where = args.url, _masked(args.url)
            else:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="sqlwatch-demo-"))
                url, where = f"sqlite:///{Path(folder) / 'blog.db'}", "SQLite (a temporary file)"
            return _demo(url, where, args.json)
    except DemoError as exc:
        print(f"sqlwatch: error: {exc}", file=sys.stderr)
        return 2
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as exc:
        where = _masked(args.url) if args.url else "SQLite"
        print(f"sqlwatch: error: the demo failed on {where}: {_first_line(exc)}", file=sys.stderr)
        return 2


def _masked(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the given URL"


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _connect(url: str, where: str) -> Any:
    import sqlalchemy.exc
    from sqlalchemy import create_engine, text

    from sqlwatch._demo import blog

    try:
        engine = create_engine(url)
    except (sqlalchemy.exc.ArgumentError, ImportError) as exc:
        raise DemoError(f"--url is not a usable SQLAlchemy URL: {_first_line(exc)}") from None
    blog.prepare(engine)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except (sqlalchemy.exc.SQLAlchemyError, OSError) as exc:
        engine.dispose()
        raise DemoError(f"cannot connect to {where}: {_first_line(exc)}") from None
    return engine


def _demo(url: str, where: str, json_path: str | None) -> int:
    from sqlalchemy.orm import sessionmaker

    import sqlwatch
    from sqlwatch._demo import blog

    engine = _connect(url, where)
    try:
        blog.DemoBase.metadata.drop_all(engine)
        blog.DemoBase.metadata.create_all(engine)
        make_session = sessionmaker(engine)
        with make_session() as session:
            blog.seed(session)

        sqlwatch.instrument(engine, name="demo", exporters=())
        try:
            slow = blog.SLOW_QUERY_MS
            with (
                sqlwatch.watch("front page, as written", slow_query_ms=slow) as before,
                make_session() as session,
            ):
                _, leaked = blog.render_front_page(engine, session, fixed=False)
            if leaked is not None:
                leaked.close()  # after the watch: it ended with the connection checked out
            with (
                sqlwatch.watch("front page, fixed", slow_query_ms=slow) as after,
                make_session() as session,
            ):
                blog.render_front_page(engine, session, fixed=True)
            process = sqlwatch.report()
        finally:
            sqlwatch.uninstrument(engine)
        _print(where, before.report, after.report)
        if json_path:
            saved = process.save(json_path)
            print(f"\nReport written to {saved} (read it with: sqlwatch report {saved})")
    finally:
        with contextlib.suppress(Exception):
            blog.DemoBase.metadata.drop_all(engine)
        engine.dispose()
    return 0


# -- output -----------------------------------------------------------------------


def _print(where: str, before: Report, after: Report) -> None:
    from sqlwatch._demo.blog import FIX_TEXT

    print(f"sqlwatch demo: a blog's front page, rendered twice, on {where}\n")
    print("1) The page as written")
    _print_run(before)
    print("\n2) The page with the loader options sqlwatch suggests:")
    print(f"   select(Post){FIX_TEXT}")
    print("   (and the totals asked for once, the archive count and audit connection gone)")
    _print_run(after)
    print(
        f"\nQueries: {before.query_count} before, {after.query_count} after "
        f"({_n(len(before.n_plus_one), 'N+1')} before, {_n(len(after.n_plus_one), 'N+1')} after)."
    )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if noun.endswith("+1") else f"{count} {noun}{'s' * (count != 1)}"


def _print_run(report: Report) -> None:
    print(f"   {report.query_count} queries, {report.total_query_ms:.1f} ms in the database")
    for finding in report.n_plus_one:
        print(f"   N+1: {_what(finding)}, at {finding.call_site or 'an unknown line'}")
        print(f"        fix: {finding.suggestion}")
    for duplicate in report.duplicates:
        sites = ", ".join(duplicate.call_sites) or "an unknown line"
        print(f"   duplicate: {duplicate.count} runs of {_clip(duplicate.sql)}, at {sites}")
    for statement in report.slow_queries:
        print(
            f"   slow query: {statement.duration_ms:.1f} ms, {_clip(statement.normalized)}, "
            f"at {statement.call_site or 'an unknown line'}"
        )
    for leak in report.leaks:
        # filled in by the pool tracker (sqlwatch._capture.pool): the page's audit
        # connection is still checked out when its watch ends
        print(
            f"   connection leak ({leak.kind}): held {leak.held_ms:.1f} ms, checked out at "
            f"{leak.call_site or 'an unknown line'}"
        )
    for unused in report.unused_eager_loads:
        print(f"   unused eager load: {unused.relationship}, at {unused.call_site}")
    if not (report.n_plus_one or report.duplicates or report.slow_queries or report.leaks):
        print("   no N+1, no duplicate query, no slow query, no leaked connection")


def _what(finding: NPlusOne) -> str:
    owner = (finding.relationship or "").partition(".")[0]
    if finding.relationship:
        return f"{finding.relationship} loaded one {owner} at a time ({finding.count} queries)"
    return f"{_clip(finding.normalized)} run once per row ({finding.count} queries)"


def _clip(sql: str, width: int = 70) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."
