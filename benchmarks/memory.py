"""Memory stays bounded: a million statements through the process-wide scope.

    python benchmarks/memory.py             # 1,000,000 statements (about 20 s)
    python benchmarks/memory.py --n 5000000
    python benchmarks/memory.py --quick     # 100,000 statements

sqlwatch keeps aggregates per distinct fingerprint, at most ``max_statements``
statements per scope, and bounded caches; none of it may grow with the number of
statements. This script instruments one SQLite engine with the defaults (call
sites on, no scope open: everything lands in the process-wide scope), warms up
until every bounded structure is full, then runs ``--n`` more statements and
prints the growth of the resident set size (psutil), which must stay under 10 MB.

The statements are cheap on purpose (``exec_driver_sql``, no compilation), and
made to fill what could leak: every parameter value is new (the duplicate
detector hashes parameters), and one statement in 20 inlines its literal, so it
is a new SQL string each time (the analyzer's verbatim cache, the driver's
statement cache) that still shares one fingerprint.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time

import psutil
from _harness import print_header
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.pool import StaticPool

import sqlwatch

LIMIT_BYTES = 10 * 1024 * 1024
LITERAL_EVERY = 20
CHUNK = 10_000
PARAMETERIZED = (
    "SELECT ? + 1",
    "SELECT ? * 2, 'a'",
    "SELECT ? - 3, 'b', 'c'",
)


def run(engine: Engine, start: int, n: int) -> None:
    shapes = PARAMETERIZED
    count = len(shapes)
    for chunk in range(start, start + n, CHUNK):
        # A connection per chunk, as requests would: held for the whole run, it
        # would be reported as a leak, which is not what this script is about.
        with engine.connect() as conn:
            execute = conn.exec_driver_sql
            for i in range(chunk, min(chunk + CHUNK, start + n)):
                if i % LITERAL_EVERY == 0:
                    execute(f"SELECT {i} + 1000").all()
                else:
                    execute(shapes[i % count], (i,)).all()


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def flush() -> None:
    """Process what sqlwatch has buffered, without building a report."""
    try:
        from sqlwatch._pipeline import PIPELINE

        PIPELINE.flush()
    except ImportError:
        sqlwatch.report()


def mb(n: float) -> str:
    return f"{n / 1024 / 1024:+.2f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="statements measured (1,000,000)")
    parser.add_argument("--warmup", type=int, default=100_000, help="statements before (100,000)")
    parser.add_argument("--quick", action="store_true", help="100,000 statements")
    parser.add_argument("--samples", type=int, default=10, help="RSS samples during the run")
    args = parser.parse_args(argv)
    n = args.n if args.n is not None else (100_000 if args.quick else 1_000_000)

    print_header("sqlwatch memory: statements through the process-wide scope")
    engine = create_engine("sqlite://", poolclass=StaticPool)
    sqlwatch.instrument(engine)

    started = time.perf_counter()
    run(engine, 0, args.warmup)
    flush()
    baseline = rss()
    print(f"   after {args.warmup:,} warm-up statements: RSS {baseline / 1024 / 1024:.1f} MB")

    done = 0
    peak_growth = 0
    step = max(n // max(args.samples, 1), 1)
    timed_start = time.perf_counter()
    while done < n:
        chunk = min(step, n - done)
        run(engine, args.warmup + done, chunk)
        done += chunk
        flush()
        growth = rss() - baseline
        peak_growth = max(peak_growth, growth)
        print(f"   {done:>12,} statements: {mb(growth)}")
    elapsed = time.perf_counter() - timed_start
    final = rss() - baseline  # before building a report, which the caller would own

    report = sqlwatch.report()
    print(
        f"   report: {report.query_count:,} statements counted, "
        f"{len(report.fingerprints)} fingerprints, {len(report.statements):,} kept, "
        f"{report.dropped_statements:,} dropped"
    )
    expected = args.warmup + n
    if report.query_count != expected:
        print(f"   WARNING: expected {expected:,} statements counted")
    verdict = "ok" if final < LIMIT_BYTES else "MISSED"
    print(
        f"   RSS growth over {n:,} statements after warm-up: {mb(final)} "
        f"(peak {mb(peak_growth)}); target < 10 MB: {verdict}"
    )
    print(
        f"   {elapsed:.1f} s ({elapsed / n * 1e6:.1f} us/statement instrumented), "
        f"total {time.perf_counter() - started:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
