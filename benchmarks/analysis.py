"""How much sqlwatch's statement analysis costs the application, per call.

Run: ``python benchmarks/analysis.py``. Prints the cache-hit cost (what nearly
every statement pays), the miss costs (a statement with new literals, a new
statement shape), the cost of pathological statements, and how many times
sqlglot parsed 10,000 statements that differ only in their inlined literals.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

try:
    from sqlwatch._analysis import StatementAnalyzer
except ImportError:  # run from a checkout without sqlwatch installed
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sqlwatch._analysis import StatementAnalyzer

TYPICAL = (
    "SELECT users.id AS users_id, users.name AS users_name, users.email AS users_email, "
    "users.created_at AS users_created_at \nFROM users \nWHERE users.id = %(id_1)s::INTEGER"
)
SHORT = "SELECT users.id FROM users WHERE users.id = ?"


def best_per_call(make: Callable[[], Callable[[], object]], calls: int, repeats: int = 5) -> float:
    """Best (least disturbed) nanoseconds per call over ``repeats`` fresh runs.

    ``make`` prepares a run (a new analyzer, the statements) outside the timing
    and returns the loop to time, which makes ``calls`` calls.
    """
    best = float("inf")
    for _ in range(repeats):
        run = make()
        start = time.perf_counter_ns()
        run()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def hits() -> None:
    calls = 1_000_000

    def make() -> Callable[[], object]:
        analyzer = StatementAnalyzer("postgresql")
        analyzer(TYPICAL)

        def run() -> None:
            for _ in range(calls):
                analyzer(TYPICAL)

        return run

    def empty() -> Callable[[], object]:
        def run() -> None:
            for _ in range(calls):
                pass

        return run

    cost = best_per_call(make, calls) - best_per_call(empty, calls)
    print(f"cache hit (same SQL string)                   {cost:9.0f} ns/call")


def misses() -> None:
    literal_templates = {
        "short": SHORT.replace("?", "{}"),
        "typical": TYPICAL.replace("%(id_1)s", "{}"),
    }
    for label, template in literal_templates.items():
        print(
            f"miss, new literals, known shape ({label:7s})     "
            f"{timed_statements([template.format(i) for i in range(20_001)]) / 1000:9.1f} µs/call"
        )
    for label, template in (("short", SHORT), ("typical", TYPICAL)):
        statements = [template.replace("users", f"users_{i}") for i in range(1_001)]
        print(
            f"miss, new shape, parsed by sqlglot ({label:7s})  "
            f"{timed_statements(statements, repeats=3) / 1000:9.1f} µs/call"
        )


def timed_statements(statements: list[str], repeats: int = 5) -> float:
    """Per-call cost of analyzing each statement once, after the first."""

    def make() -> Callable[[], object]:
        analyzer = StatementAnalyzer("postgresql")
        analyzer(statements[0])

        def run() -> None:
            for sql in statements[1:]:
                analyzer(sql)

        return run

    return best_per_call(make, len(statements) - 1, repeats)


def pathological() -> None:
    in_list = "SELECT * FROM t WHERE id IN (" + ", ".join(map(str, range(10_000))) + ")"
    rows = ", ".join(f"({i}, 'name {i}', NULL, {i * 1.5})" for i in range(25_000))
    insert = f"INSERT INTO t (a, b, c, d) VALUES {rows}"
    nested = "SELECT * FROM " + "(SELECT * FROM " * 1_000 + "t" + ") AS x" * 1_000
    chain = "SELECT " + " + ".join(f"c{i}" for i in range(3_000)) + " FROM t"
    unterminated = "SELECT '" + "x" * 1_000_000
    cases = {
        "10,000-element IN list": in_list,
        f"multi-row INSERT ({len(insert) / 1e6:.1f} MB)": insert,
        "1,000 nested subqueries": nested,
        "3,000-term expression": chain,
        "1 MB unterminated string": unterminated,
    }
    for label, sql in cases.items():
        first, again, analyzer = first_and_again(sql)
        print(
            f"{label:38s} first {first:7.1f} ms, again {again:7.2f} ms,"
            f" parses {analyzer.parse_count}, len(normalized) {len(analyzer(sql).normalized)}"
        )


def first_and_again(sql: str, repeats: int = 3) -> tuple[float, float, StatementAnalyzer]:
    """Best milliseconds of a fresh analyzer's first call, and of a second call."""
    first = again = float("inf")
    for _ in range(repeats):
        analyzer = StatementAnalyzer("postgresql")
        start = time.perf_counter_ns()
        analyzer(sql)
        middle = time.perf_counter_ns()
        analyzer(sql)
        end = time.perf_counter_ns()
        first, again = min(first, (middle - start) / 1e6), min(again, (end - middle) / 1e6)
    return first, again, analyzer


def parse_counts() -> None:
    analyzer = StatementAnalyzer("postgresql")
    for i in range(10_000):
        analyzer(f"SELECT * FROM orders WHERE id = {i} AND note = 'note {i}' AND total > {i / 7}")
    print(f"sqlglot parses for 10,000 literal-varying statements: {analyzer.parse_count}")
    analyzer = StatementAnalyzer("postgresql")
    for n in range(1, 10_001):
        analyzer(f"SELECT * FROM orders WHERE id IN ({', '.join(map(str, range(n % 200 + 1)))})")
    print(f"sqlglot parses for 10,000 IN lists of 1..200 literals:  {analyzer.parse_count}")


def main() -> None:
    print(f"Python {sys.version.split()[0]}")
    hits()
    misses()
    pathological()
    parse_counts()


if __name__ == "__main__":
    main()
