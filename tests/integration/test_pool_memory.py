"""Pool tracking in bounded memory: 100,000 checkout/checkin cycles.

The figures are histograms and counters; checkouts are forgotten when they come
back. tracemalloc traces the last 20,000 cycles (the whole run under tracemalloc
would take minutes): whatever sqlwatch kept per checkout would still be alive
at the end of that window.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc

import sqlwatch
from tests.integration.helpers import bytes_that_outlive

CYCLES = 100_000
TRACED = 20_000
BOUND_BYTES = 256 * 1024
"""Generous (about 40 kB is normal: histogram buckets, durations waiting to be
folded into them); keeping 100 bytes per checkout would take 2 MB."""


def test_a_hundred_thousand_checkouts_in_bounded_memory(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'memory.db'}", pool_size=2)
    handle = sqlwatch.instrument(engine, exporters=())

    def cycles(n: int) -> None:
        for _ in range(n):
            engine.connect().close()

    try:
        with sqlwatch.watch() as w:  # the scope's figures must stay bounded too
            cycles(CYCLES - TRACED)
            ours, _ = bytes_that_outlive(lambda: cycles(TRACED))
    finally:
        engine.dispose()

    stats = sqlwatch.report().pools[handle.name]
    assert stats.checkouts == stats.checkins == CYCLES
    assert w.report.pools[handle.name].checkouts == CYCLES
    assert ours < BOUND_BYTES, f"sqlwatch kept {ours} bytes over {TRACED} checkouts"


def test_an_exhausted_pool_times_out_in_bounded_memory(tmp_path: Path) -> None:
    """A leak that exhausts the pool makes every later request time out, for as
    long as the application runs: no connection comes back to fold the waits."""
    engine = create_engine(
        f"sqlite:///{tmp_path / 'memory.db'}", pool_size=1, max_overflow=0, pool_timeout=1e-6
    )
    handle = sqlwatch.instrument(engine, exporters=())

    def time_out(n: int) -> None:
        for _ in range(n):
            with pytest.raises(exc.TimeoutError):
                engine.connect()

    held = engine.connect()
    try:
        with sqlwatch.watch() as w:  # the scope's figures must stay bounded too
            ours, _ = bytes_that_outlive(lambda: time_out(TRACED))
    finally:
        held.close()
        engine.dispose()

    assert sqlwatch.report().pools[handle.name].timeouts == TRACED
    assert w.report.pools[handle.name].timeouts == TRACED
    assert ours < BOUND_BYTES, f"sqlwatch kept {ours} bytes over {TRACED} timeouts"
