"""``sqlwatch.integrations.asgi.SQLWatchMiddleware`` with Starlette, FastAPI and a raw ASGI
app, through an in-process HTTP client (``httpx.ASGITransport``) on SQLite."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

import sqlwatch
from sqlwatch.integrations.asgi import SQLWatchMiddleware
from tests.integration.helpers import call_site_below
from tests.integration.middleware_helpers import (
    ERROR,
    SERVER_TIMING,
    endpoints,
    queries_in,
    run,
    seeded_and_instrumented,
)
from tests.models import User


@pytest.fixture
def db(sqlite_engine: Engine) -> Engine:
    return seeded_and_instrumented(sqlite_engine)


def client(app: Any, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def starlette_app(engine: Engine) -> Starlette:
    async def user(request: Request) -> Response:
        run(engine, 2)
        return PlainTextResponse(f"user {request.path_params['id']}")

    def item(request: Request) -> Response:  # a sync endpoint: Starlette's thread pool
        run(engine, 3)
        return PlainTextResponse("item")

    async def stream(request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(3):
                run(engine, 1)
                yield b"chunk "

        return StreamingResponse(body())

    async def boom(request: Request) -> Response:
        run(engine, 1)
        raise ERROR

    async def slow(request: Request) -> Response:
        for _ in range(int(request.query_params["n"])):
            run(engine, 1)
            await asyncio.sleep(0)  # let the other requests run in between
        return PlainTextResponse("done")

    return Starlette(
        routes=[
            Route("/users/{id}", user),
            Route("/stream", stream),
            Route("/boom", boom),
            Route("/slow/{name}", slow),
            Mount("/orgs/{org}", routes=[Route("/items/{item_id:int}", item)]),
        ]
    )


# -- names, header, per-endpoint aggregates ---------------------------------------------------


async def test_starlette_requests_are_named_by_route_template(db: Engine) -> None:
    async with client(SQLWatchMiddleware(starlette_app(db))) as http:
        for user_id in (1, 2, 3):
            response = await http.get(f"/users/{user_id}")
            assert response.status_code == 200
            assert queries_in(response.headers) == 2
        response = await http.get("/orgs/acme/items/7")
        assert queries_in(response.headers) == 3
        response = await http.post("/users/1")  # routed, method not allowed
        assert response.status_code == 405
        response = await http.get("/no/such/page")
        assert response.status_code == 404
        assert queries_in(response.headers) == 0

    seen = endpoints()
    assert set(seen) == {
        "GET /users/{id}",
        "GET /orgs/{org}/items/{item_id}",
        "POST /users/{id}",
        "GET (unmatched)",
    }
    users = seen["GET /users/{id}"]
    assert (users.runs, users.query_count) == (3, 6)
    assert users.queries_per_run == {"p50": 2.0, "p95": 2.0, "max": 2.0}
    assert users.n_plus_one == ()
    assert (seen["GET /orgs/{org}/items/{item_id}"].query_count, seen["GET (unmatched)"].runs) == (
        3,
        1,
    )


async def test_queries_per_request_percentiles(db: Engine) -> None:
    async with client(SQLWatchMiddleware(starlette_app(db))) as http:
        for n in [1] * 18 + [5, 9]:
            assert (await http.get(f"/slow/x?n={n}")).status_code == 200
    slow = endpoints()["GET /slow/{name}"]
    assert (slow.runs, slow.query_count) == (20, 32)
    assert slow.queries_per_run == {"p50": 1.0, "p95": 5.0, "max": 9.0}


async def test_server_timing_can_be_turned_off(db: Engine) -> None:
    async with client(SQLWatchMiddleware(starlette_app(db), server_timing=False)) as http:
        response = await http.get("/users/1")
    assert "server-timing" not in response.headers
    assert endpoints()["GET /users/{id}"].query_count == 2


async def test_server_timing_is_added_next_to_the_apps_own(db: Engine) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        run(db, 1)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"server-timing", b"app;dur=1.5")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    async with client(SQLWatchMiddleware(app)) as http:
        response = await http.get("/raw/path")
    assert response.headers.get_list("server-timing")[0] == "app;dur=1.5"
    assert SERVER_TIMING.match(response.headers.get_list("server-timing")[1])
    assert endpoints()["GET /raw/path"].query_count == 1  # no router: the path


# -- streaming, exceptions, concurrency --------------------------------------------------------


async def test_a_streamed_body_counts_in_its_request(db: Engine) -> None:
    async with client(SQLWatchMiddleware(starlette_app(db))) as http:
        response = await http.get("/stream")
        assert response.text == "chunk chunk chunk "
    assert queries_in(response.headers) == 0  # the header leaves before the body's statements
    stream = endpoints()["GET /stream"]
    assert (stream.runs, stream.query_count) == (1, 3)


async def test_an_exception_propagates_unchanged_and_the_watch_closes(db: Engine) -> None:
    with sqlwatch.watch("outer") as outer:
        async with client(SQLWatchMiddleware(starlette_app(db))) as http:
            with pytest.raises(LookupError) as raised:
                await http.get("/boom")
            assert raised.value is ERROR
            run(db, 4)  # after the request: not the request's
    assert endpoints()["GET /boom"].query_count == 1
    assert {s.name: s.query_count for s in outer.report.scopes} == {"GET /boom": 1}
    assert outer.query_count == 5


async def test_concurrent_requests_do_not_see_each_other(db: Engine) -> None:
    async with client(SQLWatchMiddleware(starlette_app(db))) as http:
        responses = await asyncio.gather(
            *(http.get(f"/slow/{name}?n={n}") for name, n in [("a", 2), ("b", 5), ("c", 3)] * 3)
        )
    assert sorted(queries_in(r.headers) for r in responses) == [2, 2, 2, 3, 3, 3, 5, 5, 5]
    slow = endpoints()["GET /slow/{name}"]
    assert (slow.runs, slow.query_count, slow.queries_per_run["max"]) == (9, 30, 5.0)


async def test_non_http_traffic_passes_through() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        pass

    wrapped = SQLWatchMiddleware(app)
    await wrapped({"type": "lifespan"}, receive, send)
    await wrapped({"type": "websocket", "path": "/ws"}, receive, send)
    assert seen == ["lifespan", "websocket"]
    assert sqlwatch.report().scopes == ()


# -- FastAPI -----------------------------------------------------------------------------------


async def test_fastapi_route_templates(db: Engine) -> None:
    from fastapi import APIRouter, FastAPI

    app = FastAPI()
    router = APIRouter(prefix="/items")

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        run(db, 2)
        return {"id": user_id}

    @router.get("/{item_id}")
    def get_item(item_id: str) -> dict[str, str]:  # sync: FastAPI's thread pool
        run(db, 1)
        return {"id": item_id}

    @router.post("/")
    async def create_item() -> dict[str, str]:
        run(db, 3)
        return {}

    app.include_router(router)
    async with client(SQLWatchMiddleware(app)) as http:
        assert (await http.get("/users/7")).json() == {"id": 7}
        assert (await http.get("/users/8")).status_code == 200
        assert queries_in((await http.get("/items/abc")).headers) == 1
        assert queries_in((await http.post("/items/")).headers) == 3
    assert {name: (s.runs, s.query_count) for name, s in endpoints().items()} == {
        "GET /users/{user_id}": (2, 4),
        "GET /items/{item_id}": (1, 1),
        "POST /items/": (1, 3),
    }


async def test_requests_answered_before_routing_are_named_by_their_route(db: Engine) -> None:
    """A CORS preflight, or a request a host check rejects, never reaches the
    router: it is named by the route the router would have chosen, never by its
    path (one endpoint per URL, which scanners would fill)."""
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    async def user(request: Request) -> Response:
        return PlainTextResponse("user")

    app = Starlette(
        routes=[Route("/users/{id}", user)],
        middleware=[
            Middleware(SQLWatchMiddleware),
            Middleware(TrustedHostMiddleware, allowed_hosts=["test"]),
            Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"]),
        ],
    )
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "GET"}
    async with client(app) as http:
        for n in range(3):
            assert (await http.options(f"/users/{n}", headers=preflight)).status_code == 200
            probe = await http.get(f"/wp-admin/{n}.php", headers={"Host": "10.0.0.1"})
            assert probe.status_code == 400
            assert (await http.get(f"/users/{n}", headers={"Host": "10.0.0.1"})).status_code == 400
    assert {name: s.runs for name, s in endpoints().items()} == {
        "OPTIONS /users/{id}": 3,
        "GET (unmatched)": 3,
        "GET /users/{id}": 3,
    }


async def test_fastapi_mounts_and_starlette_routes_are_named_by_template(
    db: Engine, tmp_path: Any
) -> None:
    """FastAPI records only its own routes in the scope: a mount (static files, a
    sub-application), a Starlette route and FastAPI's /docs are named by their
    template all the same, not lumped in with the 404s, and so are the findings
    reported while such a request runs."""
    from fastapi import FastAPI
    from starlette.staticfiles import StaticFiles

    (tmp_path / "app.css").write_text("body {}")
    app = FastAPI()

    async def export(request: Request) -> Response:
        run(db, 2)
        return PlainTextResponse(request.path_params["name"])

    app.add_route("/export/{name}", export)
    app.mount("/static", StaticFiles(directory=tmp_path))
    names = ScopeNames()  # every statement is slow: reported while the request runs
    async with client(SQLWatchMiddleware(app, slow_query_ms=0, exporters=[names])) as http:
        assert (await http.get("/static/app.css")).text == "body {}"
        assert (await http.get("/static/missing.css")).status_code == 404
        for name in ("a", "b"):
            assert queries_in((await http.get(f"/export/{name}")).headers) == 2
        assert (await http.get("/docs")).status_code == 200
        assert (await http.get("/no/such/page")).status_code == 404
    assert {name: (s.runs, s.query_count) for name, s in endpoints().items()} == {
        "GET /static/{path}": (2, 0),
        "GET /export/{name}": (2, 4),
        "GET /docs": (1, 0),
        "GET (unmatched)": (1, 0),
    }
    assert names.names == ["GET /export/{name}"] * 4


async def test_fastapi_included_routers_are_named_with_their_prefixes(db: Engine) -> None:
    """``include_router(prefix=...)``, nested inclusions, one router included twice:
    each route is named by its full template, the prefixes of every inclusion
    included (``scope["route"]`` is the route as declared, without them)."""
    from fastapi import APIRouter, FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    items = APIRouter(prefix="/items")
    tags = APIRouter(prefix="/tags")

    @items.get("/{item_id}")
    def get_item(item_id: int) -> dict[str, int]:
        run(db, 1)
        return {"id": item_id}

    @tags.get("/{tag}")
    def get_tag(tag: str) -> dict[str, str]:
        return {"tag": tag}

    items.include_router(tags)
    app = FastAPI()
    app.include_router(items, prefix="/v1")
    app.include_router(items, prefix="/v2")
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"])
    preflight = {"Origin": "http://app.example", "Access-Control-Request-Method": "GET"}
    async with client(SQLWatchMiddleware(app)) as http:
        assert (await http.get("/v1/items/1")).json() == {"id": 1}
        assert (await http.get("/v2/items/2")).json() == {"id": 2}
        assert (await http.get("/v1/items/tags/red")).json() == {"tag": "red"}
        assert (await http.options("/v2/items/3", headers=preflight)).status_code == 200
    assert {name: s.runs for name, s in endpoints().items()} == {
        "GET /v1/items/{item_id}": 1,
        "GET /v2/items/{item_id}": 1,
        "GET /v1/items/tags/{tag}": 1,
        "OPTIONS /v2/items/{item_id}": 1,
    }


async def test_made_up_methods_share_one_name(db: Engine) -> None:
    """Any token is a valid HTTP method: one a client makes up is named ``_OTHER``
    (as OpenTelemetry's ``http.request.method``), not one endpoint per method."""
    async with client(SQLWatchMiddleware(starlette_app(db))) as http:
        for n in range(3):
            assert (await http.request(f"PROBE{n}", "/users/1")).status_code == 405
        assert (await http.request("PATCH", "/users/1")).status_code == 405
    assert {name: s.runs for name, s in endpoints().items()} == {
        "_OTHER /users/{id}": 3,
        "PATCH /users/{id}": 1,
    }


# -- a real N+1 --------------------------------------------------------------------------------


async def test_an_n_plus_one_endpoint_is_named_with_relationship_and_call_site(db: Engine) -> None:
    expected_sites: list[str] = []

    def list_users(request: Request) -> Response:
        with Session(db) as session:
            users = session.scalars(select(User).order_by(User.id)).all()
            result = []
            for user in users:
                expected_sites.append(call_site_below())
                emails = [address.email for address in user.addresses]
                result.append({"name": user.name, "emails": emails})
        return JSONResponse(result)

    app = SQLWatchMiddleware(Starlette(routes=[Route("/users", list_users)]))
    async with client(app) as http:
        response = await http.get("/users")
        assert len(response.json()) == 3
        assert queries_in(response.headers) == 4

    scope = endpoints()["GET /users"]
    (finding,) = scope.n_plus_one
    assert finding.relationship == "User.addresses"
    assert finding.call_site == expected_sites[0]
    assert finding.count == 3
    assert "selectinload(User.addresses)" in finding.suggestion
    assert [f.relationship for f in sqlwatch.report().n_plus_one] == ["User.addresses"]


class ScopeNames(sqlwatch.exporters.Exporter):
    """The scope names findings are reported under, as an exporter sees them."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_n_plus_one(self, finding: sqlwatch.NPlusOne, scope: str) -> None:
        self.names.append(scope)

    def on_slow_query(self, statement: sqlwatch.Statement, scope: str) -> None:
        self.names.append(scope)


async def test_findings_during_a_request_go_out_under_its_route_template(db: Engine) -> None:
    """A slow query is reported while the endpoint still runs, before the
    response starts: under the route template already (never the raw path, one
    name per URL), and the logging exporter warns again on the next request."""
    names = ScopeNames()

    def slow_user(request: Request) -> Response:
        with db.connect() as connection:
            connection.execute(text("SELECT 1")).all()  # every statement slow: slow_query_ms=0
        return PlainTextResponse("ok")

    app = SQLWatchMiddleware(
        Starlette(routes=[Route("/users/{id}", slow_user)]),
        slow_query_ms=0,
        exporters=[names, "logging"],
    )
    warnings: list[str] = []
    handler = _ListHandler(warnings)
    logger = logging.getLogger("sqlwatch")
    logger.addHandler(handler)
    try:
        async with client(app) as http:
            for user_id in (1, 2, 3):
                assert (await http.get(f"/users/{user_id}")).status_code == 200
    finally:
        logger.removeHandler(handler)
    assert names.names == ["GET /users/{id}"] * 3
    assert len([w for w in warnings if w.startswith("slow query")]) == 3


class _ListHandler(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


# -- options -----------------------------------------------------------------------------------


def test_options_are_validated_when_the_middleware_is_created() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pass

    with pytest.raises(TypeError, match=r"unknown option 'slow_query' .*server_timing"):
        SQLWatchMiddleware(app, slow_query=5)
    with pytest.raises(ValueError, match="option 'server_timing' must be True or False"):
        SQLWatchMiddleware(app, server_timing="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="option 'slow_query_ms' must be a number >= 0"):
        SQLWatchMiddleware(app, slow_query_ms=-1)
    with pytest.raises(ValueError, match="unknown exporter 'loging'"):
        SQLWatchMiddleware(app, exporters=["loging"])  # not at each request, swallowed


def test_typed_options_cover_every_watch_option() -> None:
    """``WatchOptions`` types the middlewares' keywords: it must follow ``Options``."""
    from sqlwatch.config import OPTION_NAMES
    from sqlwatch.integrations._middleware import WatchOptions

    assert set(WatchOptions.__optional_keys__) == OPTION_NAMES


async def test_watch_options_and_engines_apply_to_each_request(db: Engine, tmp_path: Any) -> None:
    from sqlalchemy import create_engine

    other = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    sqlwatch.instrument(other, exporters=())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        run(db, 2)
        with other.connect() as connection:
            connection.execute(text("SELECT 1"))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with client(SQLWatchMiddleware(app, engines=[other], slow_query_ms=0)) as http:
        response = await http.get("/x")
    assert queries_in(response.headers) == 1
    assert endpoints()["GET /x"].query_count == 1
    other.dispose()


@pytest.fixture(autouse=True)
def _no_leftover_scope() -> Iterator[None]:
    """A request's watch never outlives the request in the caller's context."""
    from sqlwatch._context import current_chain

    yield
    assert current_chain.get().scopes == ()
