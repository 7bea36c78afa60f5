"""What sqlwatch costs an application, as ratios to bare SQLAlchemy in the same process.

    python benchmarks/overhead.py               # the targets of issue 2 (about a minute)
    python benchmarks/overhead.py --quick       # smoke run: few rounds, small batches
    python benchmarks/overhead.py --breakdown   # also: what each layer of sqlwatch costs
    python benchmarks/overhead.py --only core --rounds 40

Scenarios (SQLite in memory, one engine per variant, identical data):

1. a mixed ORM workload (``session.get``, a select with a join, a lazy-load loop,
   an insert, an update, a delete, a commit): bare, ``sqlwatch.instrument()``
   with its defaults and no scope open, the same inside an open ``watch()``,
   and (for information) a ``watch()`` opened and closed around every unit of
   work, as a per-request middleware or a per-test fixture does;
2. a cached Core ``select(t).where(t.c.id == bindparam("id"))``: instrumented
   with call sites (the default) and with ``capture_call_sites=False``;
3. statements that differ only in inlined literals (``text(f"... = {i}")``):
   how many times sqlglot parses their one shape, and the ratio.

See ``benchmarks/_harness.py`` for the method (interleaved rounds, min and median).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

from _harness import (
    SESSION_LISTENER,
    OpenWatch,
    Variant,
    fill_process_report,
    flush_pipeline,
    interleave,
    print_breakdown,
    print_header,
    print_ratios,
)
from _workloads import (
    N_ITEMS,
    core_engine,
    core_runner,
    orm_engine,
    orm_runner,
    orm_unit,
)
from sqlalchemy import (
    event,
    text,
)
from sqlalchemy.engine import Engine

import sqlwatch

# -- sqlwatch internals the benchmark reaches into --------------------------------
# Kept in one place, each with a fallback, because the hot path is being reworked
# while these scripts are in use: a renamed internal degrades a line of output
# ("n/a"), it does not stop the run.


class ParseCounter:
    """Counts sqlglot parses in this process by wrapping ``Dialect.parse``, the
    entry point under ``sqlglot.parse``/``parse_one`` and the analyzer."""

    def __init__(self) -> None:
        from sqlglot.dialects.dialect import Dialect

        self.calls = 0
        original = Dialect.parse

        def counting_parse(dialect: Any, *args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return original(dialect, *args, **kwargs)

        Dialect.parse = counting_parse  # type: ignore[method-assign]


def analyzer_parse_count(dialect: str) -> int | None:
    """The analyzer's own count of sqlglot parses, as a cross-check."""
    try:
        from sqlwatch._analysis import analyzer_for

        return int(analyzer_for(dialect).cache_info().parses)
    except Exception:
        return None


class _DroppingPipeline:
    """Stands in for the pipeline: keeps nothing, so only capture is measured."""

    def __init__(self) -> None:
        self.pending: deque[Any] = deque()

    def flush(self, origin: Any = None) -> None:
        self.pending.clear()

    def attach(self, tracker: Any) -> None:
        tracker.counted = None  # every statement takes the path with a record

    def detach(self, tracker: Any) -> None:
        pass

    def submit(self, raw: Any, urgent: bool) -> None:
        pass


def private_tracker(engine: Engine, *, call_sites: bool, analyze: bool) -> Any:
    """sqlwatch's statement listener alone, feeding a pipeline of its own.

    ``analyze=False``: the records are dropped (the cost of capture alone);
    ``analyze=True``: a real ``Pipeline`` with no scope processes them (analysis
    and parameter hashing, but no aggregation nor detectors).
    """
    from sqlwatch._capture.engine import EngineTracker
    from sqlwatch._pipeline import Pipeline
    from sqlwatch.config import Options

    pipeline: Any = Pipeline() if analyze else _DroppingPipeline()
    accepted = inspect.signature(EngineTracker.__init__).parameters
    kwargs: dict[str, Any] = {}
    if "pipeline" in accepted:
        kwargs["pipeline"] = pipeline
    else:  # the first shape of the constructor
        kwargs["submit"] = pipeline.submit
    tracker = EngineTracker(
        engine,
        name=f"breakdown-{id(engine)}",
        options=Options(capture_call_sites=call_sites),
        export_statement=lambda raw, exporters: None,
        **kwargs,
    )
    tracker.attach()
    return tracker


# -- reference listeners ---------------------------------------------------------


def passing_wrapper(engine: Engine) -> None:
    """The engine's ``dialect.do_execute`` wrapped by a function that only calls it:
    what sqlwatch's hook costs before it does anything."""
    dialect: Any = engine.dialect
    inner = dialect.do_execute

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        inner(cursor, statement, parameters, context)

    dialect.do_execute = do_execute


def timing_wrapper(engine: Engine) -> None:
    """The least a timing tool can do at sqlwatch's hook: the cursor call, timed."""
    dialect: Any = engine.dialect
    sink: list[int] = [0]

    def do_execute(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        start = perf_counter_ns()
        cursor.execute(statement, parameters)
        sink[0] = perf_counter_ns() - start

    dialect.do_execute = do_execute


def connection_events_pair(engine: Engine) -> None:
    """Empty ``before/after_cursor_execute`` listeners: what most tools hook into."""

    def before(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        return None

    def after(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        return None

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)


def timing_listener(engine: Engine) -> None:
    """The same, as a ``DialectEvents.do_execute`` listener: the public event for the
    same place, and its dispatch."""
    sink: list[int] = [0]

    def on_do_execute(cursor: Any, statement: str, parameters: Any, context: Any) -> bool:
        start = perf_counter_ns()
        cursor.execute(statement, parameters)
        sink[0] = perf_counter_ns() - start
        return True

    event.listen(engine, "do_execute", on_do_execute)


# -- the ORM workload ---------------------------------------------------------------


def watch_per_unit_runner(engine: Engine) -> Callable[[int], None]:
    counter = [0]

    def run(n: int) -> None:
        start = counter[0]
        for i in range(start, start + n):
            with sqlwatch.watch("unit"):
                orm_unit(engine, i)
        counter[0] = start + n

    return run


def bare_variant(name: str, run: Callable[[int], None], *, orm: bool) -> Variant:
    if orm:
        return Variant(name, run, before=SESSION_LISTENER.off, after=SESSION_LISTENER.on)
    return Variant(name, run)


def instrumented_variant(
    name: str,
    run: Callable[[int], None],
    *,
    orm: bool,
    watch: OpenWatch | None = None,
    watches: bool = False,
) -> Variant:
    """``watches``: the run opens watches itself (the detector's load hook is on)."""

    def before() -> None:
        if orm:
            SESSION_LISTENER.on(load_hook=watch is not None or watches)
        if watch is not None:
            watch.open()

    return Variant(
        name,
        run,
        before=before,
        after=watch.close if watch is not None else None,
        finish=flush_pipeline,
    )


# -- Core ---------------------------------------------------------------------------


def literal_sql(k: int) -> str:
    return f"SELECT id, name, value FROM items WHERE id = {k % N_ITEMS + 1} AND name <> 'x{k}'"


def literals_runner(engine: Engine, offset: int = 0) -> Callable[[int], None]:
    """Every statement a new string (new literals), never seen by any cache."""
    counter = [offset]

    def run(n: int) -> None:
        start = counter[0]
        with engine.connect() as conn:
            execute = conn.execute
            for k in range(start, start + n):
                execute(text(literal_sql(k))).first()
        counter[0] = start + n

    return run


# -- scenarios ----------------------------------------------------------------------


@dataclass
class Config:
    rounds: int
    orm_units: int
    core_ops: int
    literal_ops: int
    literal_parse_n: int


@dataclass
class Row:
    scenario: str
    ratios: tuple[float, float] | None
    target: float | None
    note: str = ""


SUMMARY: list[Row] = []


def _record(
    title: str, ratios: dict[str, tuple[float, float]], rows: list[tuple[str, float | None]]
) -> None:
    for name, target in rows:
        SUMMARY.append(Row(f"{title}: {name}", ratios[name], target))


def scenario_orm(config: Config) -> None:
    print("\n-- 1. mixed ORM workload (11 statements + commit per unit, SQLite in memory)")
    bare = orm_engine()
    default = orm_engine()
    watched = orm_engine()
    per_unit = orm_engine()
    for engine in (default, watched, per_unit):
        sqlwatch.instrument(engine)
    fill_process_report(default)
    if not SESSION_LISTENER.available:
        print("   note: could not switch sqlwatch's Session listener off: bare includes it")
    open_watch = OpenWatch()
    variants = [
        bare_variant("bare SQLAlchemy", orm_runner(bare), orm=True),
        instrumented_variant("instrument(), no scope", orm_runner(default), orm=True),
        instrumented_variant(
            "instrument(), in watch()", orm_runner(watched), orm=True, watch=open_watch
        ),
        instrumented_variant(
            "instrument(), watch() per unit",
            watch_per_unit_runner(per_unit),
            orm=True,
            watches=True,
        ),
    ]
    results = interleave(variants, ops=config.orm_units, rounds=config.rounds)
    rows: list[tuple[str, float | None]] = [
        ("instrument(), no scope", 1.05),
        ("instrument(), in watch()", 1.08),
        ("instrument(), watch() per unit", None),
    ]
    ratios = print_ratios(results, "bare SQLAlchemy", rows, unit="unit")
    _record("ORM", ratios, rows)


def scenario_core(config: Config) -> None:
    print("\n-- 2. cached Core select(t).where(t.c.id == bindparam('id')), SQLite in memory")
    bare, with_sites, without_sites = core_engine(), core_engine(), core_engine()
    sqlwatch.instrument(with_sites)
    sqlwatch.instrument(without_sites, capture_call_sites=False)
    fill_process_report(with_sites)
    variants = [
        bare_variant("bare SQLAlchemy", core_runner(bare), orm=False),
        instrumented_variant("instrument()", core_runner(with_sites), orm=False),
        instrumented_variant("capture_call_sites=False", core_runner(without_sites), orm=False),
    ]
    results = interleave(variants, ops=config.core_ops, rounds=config.rounds)
    rows: list[tuple[str, float | None]] = [
        ("instrument()", 1.15),
        ("capture_call_sites=False", 1.08),
    ]
    ratios = print_ratios(results, "bare SQLAlchemy", rows, unit="stmt")
    _record("Core select", ratios, rows)


def scenario_literals(config: Config, counter: ParseCounter) -> None:
    n = config.literal_parse_n
    print(f"\n-- 3. {n:,} statements differing only in inlined literals (text(f'...'))")
    print(f"   e.g. {literal_sql(0)!r}")
    engine = core_engine()
    sqlwatch.instrument(engine)
    before_glot, before_analyzer = counter.calls, analyzer_parse_count("sqlite")
    literals_runner(engine, offset=10**9)(n)
    flush_pipeline()
    parses = counter.calls - before_glot
    after_analyzer = analyzer_parse_count("sqlite")
    cross = ""
    if before_analyzer is not None and after_analyzer is not None:
        cross = f" (analyzer's own count: {after_analyzer - before_analyzer})"
    report = sqlwatch.report()
    shapes = [f for f in report.fingerprints if "x?" in f.normalized or "<> ?" in f.normalized]
    counted = sum(f.count for f in shapes if "FROM items WHERE id = ?" in f.normalized)
    print(f"   sqlglot parses: {parses}{cross}; target: 1 (one shape)")
    print(f"   fingerprints for the shape: {len(shapes)}, statements counted: {counted:,}")
    SUMMARY.append(
        Row(
            f"literals: sqlglot parses for {n:,} statements",
            None,
            None,
            f"{parses} (target 1) " + ("ok" if parses == 1 else "MISSED"),
        )
    )

    bare = core_engine()
    timed = core_engine()
    sqlwatch.instrument(timed)
    variants = [
        bare_variant("bare SQLAlchemy", literals_runner(bare), orm=False),
        instrumented_variant("instrument()", literals_runner(timed), orm=False),
    ]
    glot_before = counter.calls
    results = interleave(variants, ops=config.literal_ops, rounds=config.rounds)
    total = config.literal_ops * (config.rounds + 2)
    print(
        f"   timed: {total:,} more distinct statements of the same shape, "
        f"{counter.calls - glot_before} more parses"
    )
    rows: list[tuple[str, float | None]] = [("instrument()", None)]
    ratios = print_ratios(results, "bare SQLAlchemy", rows, unit="stmt")
    _record("literals", ratios, rows)


CALL_SITE_REFERENCE = "(capture + call sites, no submit)"
CAPTURE_LEVEL = "capture, records dropped (no call sites)"
CONNECTION_EVENTS = "empty ConnectionEvents before/after_cursor_execute"
DIALECT_EVENTS = "timing listener on DialectEvents.do_execute"
REFERENCES = {CONNECTION_EVENTS: connection_events_pair, DIALECT_EVENTS: timing_listener}
"""Roads not taken, timed for reference (Core only)."""


OUTSIDE_LEVELS = (
    "counted outside any scope (exporters=())",
    "+ default logging exporter",
    "+ call sites = instrument()",
)
INSIDE_LEVELS = (
    CAPTURE_LEVEL,
    "+ analysis, hashing",
    "+ scope, logging, call sites = in watch()",
)


def _levels(orm: bool) -> list[tuple[str, Callable[[Engine], object]]]:
    """Set-ups from nothing to everything, on the two paths a statement can take:
    outside any scope (counted in bulk, once the process-wide report is full) and
    inside a scope (a record per statement). Within a path, each level includes the
    one before it."""

    def nothing(engine: Engine) -> None:
        pass

    levels: list[tuple[str, Callable[[Engine], object]]] = []
    if orm:
        levels += [
            ("Session listeners (session accounting)", nothing),
            ("+ timing wrapper (execute + 2 clocks)", timing_wrapper),
        ]
    else:
        levels += [
            ("pass-through wrapper on do_execute", passing_wrapper),
            ("timing wrapper (execute + 2 clocks)", timing_wrapper),
        ]
    outside, inside = OUTSIDE_LEVELS, INSIDE_LEVELS
    levels += [
        (outside[0], lambda e: sqlwatch.instrument(e, capture_call_sites=False, exporters=())),
        (outside[1], lambda e: sqlwatch.instrument(e, capture_call_sites=False)),
        (outside[2], lambda e: sqlwatch.instrument(e)),
        (inside[0], lambda e: private_tracker(e, call_sites=False, analyze=False)),
        (inside[1], lambda e: private_tracker(e, call_sites=False, analyze=True)),
        (inside[2], lambda e: sqlwatch.instrument(e)),
    ]
    return levels


def breakdown(config: Config, *, orm: bool) -> None:
    if orm:
        print("\n-- breakdown: the ORM workload, layer by layer (per unit of 11 statements)")
        make_engine, runner, ops = orm_engine, orm_runner, config.orm_units
    else:
        print("\n-- breakdown: the Core select, layer by layer (per statement)")
        make_engine, runner, ops = core_engine, core_runner, config.core_ops
    variants = [
        bare_variant("bare SQLAlchemy", runner(make_engine()), orm=orm),
        # A/A control: a second bare engine shows the noise floor of a comparison.
        bare_variant("bare, another engine", runner(make_engine()), orm=orm),
    ]
    names = []
    for name, setup in _levels(orm):
        engine = make_engine()
        try:
            setup(engine)
        except Exception as exc:  # an internal API moved: skip the level, say so
            print(f"   {name}: n/a ({type(exc).__name__}: {exc})")
            continue
        watch = OpenWatch() if name == INSIDE_LEVELS[-1] else None
        variants.append(instrumented_variant(name, runner(engine), orm=orm, watch=watch))
        names.append(name)
        if name == OUTSIDE_LEVELS[0]:
            fill_process_report(engine)
    if not orm:  # the roads not taken, for reference
        for name, setup in REFERENCES.items():
            engine = make_engine()
            setup(engine)
            variants.append(Variant(name, runner(engine)))
    # Call sites without processing: what the frame walk alone costs.
    engine = make_engine()
    try:
        private_tracker(engine, call_sites=True, analyze=False)
        variants.append(instrumented_variant(CALL_SITE_REFERENCE, runner(engine), orm=orm))
    except Exception as exc:
        print(f"   call-site reference: n/a ({exc})")
    results = interleave(variants, ops=ops, rounds=config.rounds)
    first = [n for n in names if n not in OUTSIDE_LEVELS and n not in INSIDE_LEVELS]
    print("   outside any scope (the process-wide report full: statements counted in bulk)")
    print_breakdown(results, "bare SQLAlchemy", first + [n for n in names if n in OUTSIDE_LEVELS])
    print("   inside a watch() (a record per statement)")
    print_breakdown(results, "bare SQLAlchemy", first + [n for n in names if n in INSIDE_LEVELS])
    if CALL_SITE_REFERENCE in results.per_op_ns and CAPTURE_LEVEL in results.per_op_ns:
        walk = results.min_ns(CALL_SITE_REFERENCE) - results.min_ns(CAPTURE_LEVEL)
        print(f"   call-site walk alone (capture with sites - without): {walk / 1e3:+.2f} us")
    for name in REFERENCES:
        if name in results.per_op_ns:
            extra = results.min_ns(name) - results.min_ns("bare SQLAlchemy")
            ratio = results.min_ratio(name, "bare SQLAlchemy")
            print(
                f"   reference, not used by sqlwatch: {name}: {extra / 1e3:+.2f} us ({ratio:.3f}x)"
            )
    lo = results.min_ratio("bare, another engine", "bare SQLAlchemy")
    med = results.median_ratio("bare, another engine", "bare SQLAlchemy")
    print(f"   noise floor (A/A: a second bare engine): {lo:.3f}x min, {med:.3f}x median")


def print_summary() -> None:
    try:
        load = "load average now {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = ""
    print(f"\n== summary (ratio to bare: min of rounds / median of paired rounds) {load}")
    width = max(len(row.scenario) for row in SUMMARY)
    for row in SUMMARY:
        if row.ratios is None:
            print(f"   {row.scenario:<{width}}  {row.note}")
            continue
        lo, med = row.ratios
        target = ""
        if row.target is not None:
            target = f"target <= {row.target:.2f}x  " + ("ok" if lo <= row.target else "MISSED")
        print(f"   {row.scenario:<{width}}  {lo:.3f}x / {med:.3f}x  {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 rounds, small batches")
    parser.add_argument("--breakdown", action="store_true", help="cost of each layer of sqlwatch")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 40, quick 5)")
    parser.add_argument(
        "--only",
        choices=("orm", "core", "literals"),
        action="append",
        help="run only these scenarios (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        config = Config(
            rounds=5, orm_units=20, core_ops=300, literal_ops=200, literal_parse_n=10_000
        )
    else:
        config = Config(
            rounds=40, orm_units=30, core_ops=1000, literal_ops=400, literal_parse_n=10_000
        )
    if args.rounds:
        config.rounds = args.rounds
    only = set(args.only or ("orm", "core", "literals"))

    counter = ParseCounter()
    print_header("sqlwatch overhead vs bare SQLAlchemy")
    if "orm" in only:
        scenario_orm(config)
    if "core" in only:
        scenario_core(config)
    if "literals" in only:
        scenario_literals(config, counter)
    if args.breakdown:
        breakdown(config, orm=False)
        breakdown(config, orm=True)
    print_summary()
    return 0


if __name__ == "__main__":
    sys.exit(main())
