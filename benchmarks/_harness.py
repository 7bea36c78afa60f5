"""Shared helpers for the benchmark scripts: interleaved rounds, ratios, environment.

Every benchmark compares variants (bare SQLAlchemy and one or more instrumented
set-ups) measured in the same process, in interleaved rounds: each round times
one batch of every variant, the order rotating and reversing from round to
round, so that drift (CPU frequency, a neighbour process on a shared 2-core
machine) hits every variant alike. Two ratios are reported:

- ``min``: the best round of the variant over the best round of the baseline,
  the usual micro-benchmark estimate (noise only ever adds time);
- ``median``: the median over rounds of the paired per-round ratio, which shows
  whether the best round was representative.

The garbage collector is off while a batch is timed (collected before each
batch), and time comes from ``time.perf_counter_ns``.

Run directly (``python benchmarks/_harness.py``) this prints the environment
line only: the nox ``benchmarks`` session runs every ``benchmarks/*.py``.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Mapper

__all__ = [
    "SESSION_LISTENER",
    "Results",
    "Variant",
    "environment_line",
    "fill_process_report",
    "flush_pipeline",
    "interleave",
    "print_breakdown",
    "print_header",
    "print_ratios",
    "sqlglot_compiled",
]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def sqlglot_compiled() -> bool:
    """Whether sqlglot runs compiled (the ``sqlglotc`` wheel replaces its modules)."""
    if _version("sqlglotc") is None:
        return False
    try:
        import sqlglot.parser

        return not str(sqlglot.parser.__file__).endswith(".py")
    except Exception:
        return False


def environment_line() -> str:
    import sqlalchemy
    import sqlglot

    sqlglotc = _version("sqlglotc")
    compiled = sqlglot_compiled()
    if sqlglotc is None:
        glot = f"sqlglot {sqlglot.__version__} (sqlglotc not installed: pure Python)"
    else:
        state = "compiled" if compiled else "installed but NOT active"
        glot = f"sqlglot {sqlglot.__version__} (sqlglotc {sqlglotc}: {state})"
    try:
        from sqlwatch import __version__ as sqlwatch_version
    except Exception:  # being edited: the benchmark still says what it can
        sqlwatch_version = "?"
    try:
        load = "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load ?"
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}) | "
        f"SQLAlchemy {sqlalchemy.__version__} | {glot} | sqlwatch {sqlwatch_version} | "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {load}"
    )


def print_header(title: str) -> None:
    print(f"== {title}")
    print(f"   {environment_line()}")
    print(f"   {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    sys.stdout.flush()


@dataclass
class Variant:
    """One set-up to time. ``run(n)`` performs ``n`` units of work (timed).

    ``before``/``after`` run around every timed batch, outside the timing: for
    switching global state (a class-level listener) on or off, or opening a
    scope the batch should run in.
    """

    name: str
    run: Callable[[int], object]
    before: Callable[[], object] | None = None
    after: Callable[[], object] | None = None
    finish: Callable[[], object] | None = None
    """Timed, after ``run``: work the variant owes for its batch (flushing the
    statements sqlwatch has buffered, so every round pays for its own)."""


@dataclass
class Results:
    ops: int
    """Units of work per batch."""
    per_op_ns: dict[str, list[float]] = field(default_factory=dict)
    """Per variant, one ns-per-unit figure per round, in round order."""

    def min_ns(self, name: str) -> float:
        return min(self.per_op_ns[name])

    def median_ns(self, name: str) -> float:
        return statistics.median(self.per_op_ns[name])

    def min_ratio(self, name: str, baseline: str) -> float:
        return self.min_ns(name) / self.min_ns(baseline)

    def median_ratio(self, name: str, baseline: str) -> float:
        pairs = zip(self.per_op_ns[name], self.per_op_ns[baseline], strict=True)
        return statistics.median(v / b for v, b in pairs)


def _timed(variant: Variant, ops: int) -> int:
    if variant.before is not None:
        variant.before()
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        variant.run(ops)
        if variant.finish is not None:
            variant.finish()
        elapsed = time.perf_counter_ns() - start
    finally:
        gc.enable()
        if variant.after is not None:
            variant.after()
    return elapsed


def interleave(
    variants: Sequence[Variant],
    *,
    ops: int,
    rounds: int,
    warmup_rounds: int = 2,
    progress: bool | None = None,
) -> Results:
    """Time ``rounds`` batches of ``ops`` units of every variant, interleaved."""
    if progress is None:  # a progress line only where it can be redrawn
        progress = sys.stderr.isatty()
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate variant names: {names}")
    results = Results(ops=ops, per_op_ns={name: [] for name in names})
    count = len(variants)
    for r in range(-warmup_rounds, rounds):
        shift = r % count
        order = list(variants[shift:]) + list(variants[:shift])
        if r % 2:
            order.reverse()
        for variant in order:
            elapsed = _timed(variant, ops)
            if r >= 0:
                results.per_op_ns[variant.name].append(elapsed / ops)
        if progress:
            label = "warm-up" if r < 0 else f"round {r + 1}/{rounds}"
            print(f"\r   {label}   ", end="", file=sys.stderr, flush=True)
    if progress:
        print("\r" + " " * 30 + "\r", end="", file=sys.stderr, flush=True)
    return results


def print_ratios(
    results: Results,
    baseline: str,
    rows: Sequence[tuple[str, float | None]],
    *,
    unit: str = "op",
) -> dict[str, tuple[float, float]]:
    """One line per variant: time per unit, ratio to ``baseline`` (min, median), target.

    ``rows`` are ``(variant name, target ratio or None)``. Returns the ratios.
    """
    rounds = len(results.per_op_ns[baseline])
    width = max(len(name) for name, _ in [(baseline, None), *rows])
    print(
        f"   {'variant':<{width}}  {'min us/' + unit:>12}  {'med us/' + unit:>12}"
        f"  {'min ratio':>9}  {'med ratio':>9}  target"
    )
    base_min = results.min_ns(baseline) / 1e3
    base_med = results.median_ns(baseline) / 1e3
    one = "1.000"
    print(f"   {baseline:<{width}}  {base_min:>12.2f}  {base_med:>12.2f}  {one:>9}  {one:>9}")
    ratios: dict[str, tuple[float, float]] = {}
    for name, target in rows:
        lo = results.min_ratio(name, baseline)
        med = results.median_ratio(name, baseline)
        ratios[name] = (lo, med)
        if target is None:
            verdict = ""
        else:
            verdict = f"<= {target:.2f}x  " + ("ok" if lo <= target else "MISSED")
            if lo <= target < med:
                verdict += " (median over)"
        print(
            f"   {name:<{width}}  {results.min_ns(name) / 1e3:>12.2f}"
            f"  {results.median_ns(name) / 1e3:>12.2f}  {lo:>8.3f}x  {med:>8.3f}x  {verdict}"
        )
    print(f"   ({rounds} interleaved rounds of {results.ops} {unit}s per variant)")
    sys.stdout.flush()
    return ratios


def print_breakdown(results: Results, baseline: str, levels: Sequence[str]) -> None:
    """Cost of each level over the previous one, in us per unit and in % of the total."""
    base = results.min_ns(baseline)
    total = results.min_ns(levels[-1]) - base
    previous = base
    width = max(len(n) for n in (baseline, *levels))
    print(
        f"   {'level':<{width}}  {'min us':>8}  {'med us':>8}  {'+us vs bare':>11}"
        f"  {'+us vs prev':>11}  {'% of total':>10}"
    )
    print(f"   {baseline:<{width}}  {base / 1e3:>8.2f}  {results.median_ns(baseline) / 1e3:>8.2f}")
    for name in levels:
        value = results.min_ns(name)
        step = value - previous
        share = f"{100 * step / total:>9.0f}%" if total > 0 else f"{'-':>10}"
        print(
            f"   {name:<{width}}  {value / 1e3:>8.2f}  {results.median_ns(name) / 1e3:>8.2f}"
            f"  {(value - base) / 1e3:>+11.2f}  {step / 1e3:>+11.2f}  {share}"
        )
        previous = value
    rounds = len(results.per_op_ns[baseline])
    print(f"   (min of {rounds} interleaved rounds, {results.ops}/round)")
    sys.stdout.flush()


class OpenWatch:
    """A ``watch()`` open around a whole batch; opened and closed outside the timing."""

    def __init__(self) -> None:
        self._watch: Any = None

    def open(self) -> None:
        import sqlwatch

        self._watch = sqlwatch.watch("benchmark")
        self._watch.__enter__()

    def close(self) -> None:
        self._watch.__exit__(None, None, None)
        self._watch = None


class SessionListenerSwitch:
    """sqlwatch's session accounting is a pair of class-level ``Session`` listeners:
    once any engine is instrumented, every session in the process pays for them,
    the bare engine's included. The same goes for the unused-eager-load detector's
    ``Mapper`` load listener, once a ``watch()`` has used it: every object loaded
    in the process is dispatched to it. The bare variants switch them off while
    they run, so they measure SQLAlchemy without sqlwatch at all."""

    def __init__(self) -> None:
        try:
            from sqlwatch._state import STATE

            state = vars(STATE)
        except Exception:
            state = {}
        # Every process-wide listener object with install()/remove() (the sessions').
        self._listeners = [
            value
            for value in state.values()
            if callable(getattr(value, "install", None))
            and callable(getattr(value, "remove", None))
        ]
        self.available = bool(self._listeners)
        self._removed_load_hook: Any = None

    def off(self) -> None:
        for listener in self._listeners:
            listener.remove()
        self._load_hook_off()

    def on(self, *, load_hook: bool = True) -> None:
        """Everything back on; ``load_hook=False`` leaves the ``Mapper`` load
        listener off, as in a process that never opened a detecting ``watch()``."""
        for listener in self._listeners:
            listener.install()
        if load_hook and self._removed_load_hook is not None:
            event.listen(Mapper, "load", self._removed_load_hook, raw=True)
            self._removed_load_hook = None
        elif not load_hook:
            self._load_hook_off()

    def _load_hook_off(self) -> None:
        hook = _load_hook()
        if hook is not None and event.contains(Mapper, "load", hook):
            event.remove(Mapper, "load", hook)
            self._removed_load_hook = hook


def _load_hook() -> Any:
    """The unused-eager-load detector's ``Mapper`` load listener, if it has one."""
    try:
        from sqlwatch.detectors import unused_eager_loads
    except ImportError:
        return None
    return getattr(unused_eager_loads, "_on_load", None)


SESSION_LISTENER = SessionListenerSwitch()
"""Off while a bare variant runs, on again after it."""


def flush_pipeline() -> None:
    """Process the statements sqlwatch has buffered or counted, so each round pays
    its own."""
    import sqlwatch

    try:
        from sqlwatch._pipeline import PIPELINE
    except ImportError:
        sqlwatch.report()
        return
    PIPELINE.flush()
    fold = getattr(PIPELINE, "fold_all", None)
    if fold is not None:
        fold()


def fill_process_report(engine: Any) -> None:
    """Bring the process-wide report to a long-running process's steady state: its
    ``max_statements`` records kept, so that statements outside any scope are
    counted in bulk from now on (docs/concepts.md, "Counted statements"). Without
    this, the first warm-up rounds would do it, unevenly between variants."""
    import sqlwatch

    limit = sqlwatch.report().statements
    with engine.connect() as connection:
        for _ in range(10_000 - len(limit) + 1):
            connection.exec_driver_sql("SELECT 1")
    flush_pipeline()


if __name__ == "__main__":
    print_header("benchmark environment")
