"""The ASGI middleware on an ``AsyncEngine`` (aiosqlite and asyncpg): 50 requests at
once, interleaved statement by statement, each counting its own statements only."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

import sqlwatch
from sqlwatch.integrations.asgi import SQLWatchMiddleware
from tests.integration.middleware_helpers import endpoints, queries_in

REQUESTS = 50


async def test_concurrent_requests_on_an_async_engine_count_their_own(
    async_engine: AsyncEngine,
) -> None:
    sqlwatch.instrument(async_engine, exporters=())
    async with async_engine.connect() as connection:  # the dialect's first-connect queries
        await connection.execute(text("SELECT 0"))
    started = asyncio.Event()

    async def work(request: Request) -> Response:
        await started.wait()  # every request is open before any runs SQL
        n = int(request.path_params["n"])
        async with async_engine.connect() as connection:
            for i in range(n):
                await connection.execute(text(f"SELECT {n}, {i}"))
                await asyncio.sleep(0)  # let the other requests in between statements
        return PlainTextResponse(str(n))

    app = SQLWatchMiddleware(Starlette(routes=[Route("/work/{n:int}", work)]))
    counts = [1 + i % 7 for i in range(REQUESTS)]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        pending = [asyncio.ensure_future(http.get(f"/work/{n}")) for n in counts]
        await asyncio.sleep(0.01)
        started.set()
        responses = await asyncio.gather(*pending)

    assert [queries_in(response.headers) for response in responses] == counts
    work_endpoint = endpoints()["GET /work/{n}"]
    assert (work_endpoint.runs, work_endpoint.query_count) == (REQUESTS, sum(counts))
    assert work_endpoint.queries_per_run["max"] == 7.0
