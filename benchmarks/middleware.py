"""What ``SQLWatchMiddleware`` costs a request that runs no SQL, in us, against the bare app.

    python benchmarks/middleware.py            # ASGI (Starlette, raw ASGI) and WSGI (Flask, raw)
    python benchmarks/middleware.py --quick    # smoke run: few rounds, small batches

Target (issue 6): at most 30 us added per request that runs no SQL, measured
with an in-process ASGI client against the bare application in the same run.

The client is the smallest one there is: it calls the ASGI application with a
fresh scope, a ``receive`` that returns one empty request body and a ``send``
that keeps the messages (the WSGI driver calls the application and drains its
body the way a server does), so that nearly all the time measured is the
application's and the middleware's. An engine is instrumented, as in a real
application, so each request's watch is added to the process-wide report
(``sqlwatch.report().scopes``), which is part of the cost. Each variant runs
one batch of requests per round, rounds interleaved (``_harness.py``); the
figure is the minimum over rounds. A second table times the same apps through
``httpx.ASGITransport`` (a real client, noisier, for scale).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from _harness import Results, Variant, interleave, print_header
from sqlalchemy import create_engine

import sqlwatch
from sqlwatch.integrations.asgi import SQLWatchMiddleware as ASGIMiddleware
from sqlwatch.integrations.wsgi import SQLWatchMiddleware as WSGIMiddleware

TARGET_US = 30.0


# -- applications that run no SQL ---------------------------------------------------


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def user(request: Any) -> Any:
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/users/{id}", user)])


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def flask_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return "ok"

    return app.wsgi_app


def raw_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


# -- in-process drivers ---------------------------------------------------------------


def asgi_runner(app: Any) -> Callable[[int], None]:
    loop = asyncio.new_event_loop()
    template = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/users/42",
        "raw_path": b"/users/42",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1234),
        "server": ("bench", 80),
    }
    request = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return request

    class _Sent(list[Any]):
        async def append_async(self, message: Any) -> None:
            self.append(message)

    async def batch(n: int) -> None:
        for _ in range(n):
            sent = _Sent()
            await app(dict(template), receive, sent.append_async)
            assert sent[0]["status"] == 200

    return lambda n: loop.run_until_complete(batch(n))


def wsgi_runner(app: Any) -> Callable[[int], None]:
    from werkzeug.test import EnvironBuilder

    environ = EnvironBuilder(path="/users/42").get_environ()

    def start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
        return None

    def run(n: int) -> None:
        for _ in range(n):
            body = app(dict(environ), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return run


def httpx_runner(app: Any) -> Callable[[int], None]:
    import httpx

    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")

    async def batch(n: int) -> None:
        for _ in range(n):
            response = await client.get("/users/42")
            assert response.status_code == 200

    return lambda n: loop.run_until_complete(batch(n))


# -- report -------------------------------------------------------------------------------


def compare(
    title: str, pairs: list[tuple[str, Callable[[int], None], Callable[[int], None]]], args: Any
) -> list[tuple[str, float]]:
    variants: list[Variant] = []
    for name, bare, watched in pairs:
        variants.append(Variant(f"{name} bare", bare))
        variants.append(Variant(f"{name} + sqlwatch", watched))
    results: Results = interleave(variants, ops=args.ops, rounds=args.rounds)
    print(f"\n   {title}")
    print(
        f"   {'app':<18}  {'bare us/req':>11}  {'+sqlwatch':>10}  {'added us':>9}  {'median':>7}"
    )
    added: list[tuple[str, float]] = []
    for name, _, _ in pairs:
        bare_ns = results.min_ns(f"{name} bare")
        watched_ns = results.min_ns(f"{name} + sqlwatch")
        watched, bare = results.per_op_ns[f"{name} + sqlwatch"], results.per_op_ns[f"{name} bare"]
        rounds = zip(watched, bare, strict=True)
        diffs = sorted(w - b for w, b in rounds)
        median = diffs[len(diffs) // 2]
        extra = (watched_ns - bare_ns) / 1e3
        added.append((name, extra))
        print(
            f"   {name:<18}  {bare_ns / 1e3:>11.2f}  {watched_ns / 1e3:>10.2f}"
            f"  {extra:>+9.2f}  {median / 1e3:>+7.2f}"
        )
    count = len(results.per_op_ns[variants[0].name])
    print(f"   ({count} interleaved rounds of {args.ops} requests)")
    return added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few rounds, small batches")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ops", type=int, default=2000, help="requests per batch")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.ops = 5, 300

    engine = create_engine("sqlite://")
    sqlwatch.instrument(engine, exporters=())  # the process-wide report exists, as in an app

    print_header("SQLWatchMiddleware: added time per request that runs no SQL")
    starlette = starlette_app()
    flask = flask_app()
    asgi = compare(
        "ASGI, in-process client",
        [
            ("Starlette", asgi_runner(starlette), asgi_runner(ASGIMiddleware(starlette))),
            ("raw ASGI", asgi_runner(raw_asgi), asgi_runner(ASGIMiddleware(raw_asgi))),
        ],
        args,
    )
    compare(
        "WSGI, in-process driver",
        [
            ("Flask", wsgi_runner(flask), wsgi_runner(WSGIMiddleware(flask))),
            ("raw WSGI", wsgi_runner(raw_wsgi), wsgi_runner(WSGIMiddleware(raw_wsgi))),
        ],
        args,
    )
    compare(
        "ASGI through httpx.ASGITransport (a real client: noisier, for scale)",
        [("Starlette/httpx", httpx_runner(starlette), httpx_runner(ASGIMiddleware(starlette)))],
        argparse.Namespace(rounds=max(args.rounds // 3, 3), ops=max(args.ops // 4, 100)),
    )
    worst = max(extra for _, extra in asgi)
    verdict = "ok" if worst <= TARGET_US else "MISSED"
    print(f"\n   ASGI target: <= {TARGET_US:.0f} us added per request: {worst:.1f} us, {verdict}")
    endpoints = {s.name: s.runs for s in sqlwatch.report().scopes}
    print(f"   (per-endpoint aggregates recorded: {endpoints})")


if __name__ == "__main__":
    main()
