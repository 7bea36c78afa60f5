"""``sqlwatch.integrations.wsgi.SQLWatchMiddleware`` with Flask and a plain WSGI app,
through Werkzeug's test clients and a server-like driver, on SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from flask import Flask, Response
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from werkzeug.test import Client, EnvironBuilder

import sqlwatch
from sqlwatch.integrations.wsgi import SQLWatchMiddleware
from tests.integration.helpers import call_site_below
from tests.integration.middleware_helpers import (
    ERROR,
    endpoints,
    queries_in,
    run,
    seeded_and_instrumented,
)
from tests.models import User


@pytest.fixture
def db(sqlite_engine: Engine) -> Engine:
    return seeded_and_instrumented(sqlite_engine)


def flask_app(engine: Engine, **options: Any) -> Flask:
    app = Flask(__name__)
    app.testing = True  # exceptions propagate to the caller

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        run(engine, 2)
        return f"user {user_id}"

    @app.route("/files/<path:name>", methods=["GET", "PUT"])
    def files(name: str) -> str:
        run(engine, 1)
        return name

    @app.get("/stream")
    def stream() -> Response:
        def body() -> Iterator[str]:
            for _ in range(3):
                run(engine, 1)
                yield "chunk "

        return Response(body())

    @app.get("/boom")
    def boom() -> str:
        run(engine, 1)
        raise ERROR

    app.wsgi_app = SQLWatchMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


# -- Flask ---------------------------------------------------------------------------------


def test_flask_requests_are_named_by_route_template(db: Engine) -> None:
    http = flask_app(db).test_client()
    for user_id in (1, 2, 3):
        response = http.get(f"/users/{user_id}")
        assert response.text == f"user {user_id}"
        assert queries_in(response.headers) == 2
    assert http.put("/files/a/b.txt").text == "a/b.txt"
    response = http.get("/no/such/page")
    assert response.status_code == 404
    assert "Not Found" in response.text  # a body read (or closed) ends the request

    seen = endpoints()
    assert {name: (s.runs, s.query_count) for name, s in seen.items()} == {
        "GET /users/{user_id}": (3, 6),
        "PUT /files/{name}": (1, 1),
        "GET (unmatched)": (1, 0),
    }
    assert seen["GET /users/{user_id}"].queries_per_run == {"p50": 2.0, "p95": 2.0, "max": 2.0}


def test_flask_server_timing_can_be_turned_off(db: Engine) -> None:
    response = flask_app(db, server_timing=False).test_client().get("/users/1")
    assert "Server-Timing" not in response.headers
    assert response.text == "user 1"
    assert endpoints()["GET /users/{user_id}"].query_count == 2


def test_flask_streamed_body_counts_in_its_request(db: Engine) -> None:
    response = flask_app(db).test_client().get("/stream")
    assert queries_in(response.headers) == 0  # headers leave before the body runs
    assert response.text == "chunk chunk chunk "
    stream = endpoints()["GET /stream"]
    assert (stream.runs, stream.query_count) == (1, 3)


def test_flask_exception_propagates_unchanged(db: Engine) -> None:
    http = flask_app(db).test_client()
    with pytest.raises(LookupError) as raised:
        http.get("/boom")
    assert raised.value is ERROR
    assert endpoints()["GET /boom"].query_count == 1


def test_flask_n_plus_one_names_endpoint_relationship_and_call_site(db: Engine) -> None:
    app = Flask(__name__)
    sites: list[str] = []

    @app.get("/users")
    def users() -> list[list[str]]:
        with Session(db) as session:
            result = []
            for user in session.scalars(select(User).order_by(User.id)):
                sites.append(call_site_below())
                result.append([address.email for address in user.addresses])
        return result

    app.wsgi_app = SQLWatchMiddleware(app.wsgi_app)  # type: ignore[method-assign]
    assert len(app.test_client().get("/users").json) == 3
    (finding,) = endpoints()["GET /users"].n_plus_one
    assert (finding.relationship, finding.call_site) == ("User.addresses", sites[0])


# -- plain WSGI ---------------------------------------------------------------------------------


def test_plain_wsgi_app_is_named_by_its_path(db: Engine) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        run(db, 1)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"hello"]

    http = Client(SQLWatchMiddleware(app))
    response = http.get("/reports/2024", environ_overrides={"SCRIPT_NAME": "/app"})
    assert response.data == b"hello"
    assert queries_in(response.headers) == 1
    assert endpoints()["GET /app/reports/2024"].query_count == 1


def test_a_list_body_closes_the_request_at_once(db: Engine) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        run(db, 2)
        start_response("200 OK", [])
        return [b"done"]

    started, body = server_like(SQLWatchMiddleware(app), "/list")
    assert body == [b"done"]
    assert queries_in(started[0][1]) == 2
    assert endpoints()["GET /list"].query_count == 2


def server_like(app: Any, path: str = "/") -> tuple[list[Any], Any]:
    """Call a WSGI app as a server does; the caller drives the body."""
    started: list[Any] = []

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        started.append((status, dict(headers)))

    return started, app(EnvironBuilder(path=path).get_environ(), start_response)


def generator_app(engine: Engine) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for _ in range(3):
            run(engine, 1)
            yield b"chunk"

    return app


def test_a_generator_body_counts_in_the_request_and_nothing_else_does(db: Engine) -> None:
    started, body = server_like(SQLWatchMiddleware(generator_app(db)), "/gen")
    with sqlwatch.watch() as between:
        chunks = [next(iter(body))]
        run(db, 5)  # the server's own work between chunks: not the request's
        chunks.extend(body)
    assert chunks == [b"chunk"] * 3
    assert between.query_count == 5 + 3  # the request's statements still nest in it
    assert started[0][0] == "200 OK"
    gen = endpoints()["GET /gen"]
    assert (gen.runs, gen.query_count) == (1, 3)  # closed when the body ran out


def test_closing_an_unread_body_closes_the_request(db: Engine) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"never read"

        def close(self) -> None:
            run(db, 1)  # the application's close() still belongs to the request
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        run(db, 2)
        start_response("204 No Content", [])
        return Body()

    _, body = server_like(SQLWatchMiddleware(app), "/unread")
    assert sqlwatch.report().scopes == ()  # open until the server is done with the body
    body.close()  # type: ignore[attr-defined]
    body.close()  # type: ignore[attr-defined]  # twice: once counts
    assert closed == [True, True]
    assert endpoints()["GET /unread"].query_count == 2 + 1


def test_an_exception_in_the_body_propagates_and_closes_the_request(db: Engine) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [])
        run(db, 1)
        yield b"first"
        raise ERROR

    _, body = server_like(SQLWatchMiddleware(app), "/broken")
    iterator = iter(body)
    assert next(iterator) == b"first"
    with pytest.raises(LookupError) as raised:
        next(iterator)
    assert raised.value is ERROR
    assert endpoints()["GET /broken"].query_count == 1


def test_an_exception_in_the_app_propagates_and_closes_the_request(db: Engine) -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        run(db, 2)
        raise ERROR

    with pytest.raises(LookupError) as raised:
        server_like(SQLWatchMiddleware(app), "/fails")
    assert raised.value is ERROR
    assert endpoints()["GET /fails"].query_count == 2


def test_start_response_exc_info_is_passed_through(db: Engine) -> None:
    received: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        try:
            raise ERROR
        except LookupError:
            import sys

            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"error page"]

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        received.append((status, exc_info))

    body = SQLWatchMiddleware(app)(EnvironBuilder(path="/e").get_environ(), start_response)
    assert list(body) == [b"error page"]
    assert received[0][0] == "500 Internal Server Error"
    assert received[0][1][1] is ERROR


def test_an_n_plus_one_over_a_streamed_body_reaches_the_process_report(db: Engine) -> None:
    """The chunks of a streamed body are one unit of work, as the request before
    them: a lazy load per chunk is an N+1 in the process-wide report too (and
    the process-wide logging exporter warns of it), not only in the request's."""

    def export(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/csv")])
        with Session(db) as session:
            for user in session.scalars(select(User).order_by(User.id)).all():
                yield ",".join(address.email for address in user.addresses).encode()

    _, body = server_like(SQLWatchMiddleware(export), "/export")
    assert len(list(body)) == 3
    body.close()
    (finding,) = endpoints()["GET /export"].n_plus_one
    assert (finding.relationship, finding.count) == ("User.addresses", 3)
    assert [(f.relationship, f.count) for f in sqlwatch.report().n_plus_one] == [
        ("User.addresses", 3)
    ]


def test_a_server_file_wrapper_is_returned_as_is(db: Engine, tmp_path: Any) -> None:
    """A server recognises its ``wsgi.file_wrapper`` by type to send the file with
    sendfile() (PEP 3333): the middleware hands Flask's ``send_file`` body back
    unwrapped, and the request is complete."""
    from wsgiref.util import FileWrapper

    from flask import send_file

    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.7")
    app = Flask(__name__)

    @app.get("/reports/<int:report_id>")
    def report(report_id: int) -> Response:
        run(db, 1)
        return send_file(path)

    environ = EnvironBuilder(path="/reports/7").get_environ()
    environ["wsgi.file_wrapper"] = FileWrapper
    started: list[Any] = []
    body = SQLWatchMiddleware(app.wsgi_app)(environ, lambda *args: started.append(args))
    assert isinstance(body, FileWrapper)
    assert b"".join(body) == b"%PDF-1.7"
    body.close()
    assert queries_in(dict(started[0][1])) == 1
    assert endpoints()["GET /reports/{report_id}"].query_count == 1


def test_made_up_methods_share_one_name(db: Engine) -> None:
    http = flask_app(db).test_client()
    for n in range(3):
        with http.open("/users/1", method=f"PROBE{n}") as response:
            assert response.status_code == 405
    with http.open("/users/1", method="DELETE") as response:
        assert response.status_code == 405
    assert {name: s.runs for name, s in endpoints().items()} == {
        "_OTHER (unmatched)": 3,
        "DELETE (unmatched)": 1,
    }


def test_options_are_validated_when_the_middleware_is_created() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        return []

    with pytest.raises(TypeError, match="unknown option 'serverTiming' for sqlwatch's WSGI"):
        SQLWatchMiddleware(app, serverTiming=False)
    with pytest.raises(ValueError, match="option 'server_timing' must be True or False"):
        SQLWatchMiddleware(app, server_timing=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="option 'n_plus_one_threshold'"):
        SQLWatchMiddleware(app, n_plus_one_threshold=1)
    with pytest.raises(ValueError, match="unknown exporter 'json'"):
        SQLWatchMiddleware(app, exporters=["json"])  # not at each request, swallowed


@pytest.fixture(autouse=True)
def _no_leftover_scope() -> Iterator[None]:
    from sqlwatch._context import current_chain

    yield
    assert current_chain.get().scopes == ()
