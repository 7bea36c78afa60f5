"""The N+1 detector's pure parts: suggestions, ignore patterns, and bounded state.

The bounds are checked by feeding a real ``Scope`` statements built by hand
(no database): hundreds of thousands of them, faster than any engine could.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from sqlwatch._capture.execution import Execution, OrmLoad
from sqlwatch.config import Options
from sqlwatch.detectors import n_plus_one
from sqlwatch.detectors.n_plus_one import NPlusOneDetector, matches_ignore, suggestion_for
from sqlwatch.records import StatementInfo
from sqlwatch.scope import Scope

SITE = (os.path.abspath("app/views.py"), 42, "index")


def test_collection_suggests_selectinload() -> None:
    text = suggestion_for("lazy_load", "User.addresses", True, ("addresses",))
    assert text == (
        "Add .options(selectinload(User.addresses)) to the query that loads the User objects, "
        "so all their addresses load in one more query instead of one query per User."
    )


def test_scalar_suggests_joinedload() -> None:
    text = suggestion_for("lazy_load", "Address.user", False, ("users",))
    assert text.startswith("Add .options(joinedload(Address.user)) to the query that loads")
    assert "each user comes in the same query" in text


def test_nested_loop_suggests_the_chain() -> None:
    text = suggestion_for("lazy_load", "Post.tags", True, ("tags",), via="User.posts")
    assert text.endswith(
        "so chain it: .options(selectinload(User.posts).selectinload(Post.tags))."
    )


def test_deferred_columns_suggest_undefer() -> None:
    text = suggestion_for("column_load", "Post.body, Post.title", False, ("posts",))
    assert ".options(undefer(Post.body), undefer(Post.title))" in text
    assert "load_only()" in text


def test_repeated_statement_suggests_in_or_join() -> None:
    text = suggestion_for("repeated_statement", None, False, ("users", "addresses"))
    assert text.startswith("The same SELECT on users, addresses runs once per value")
    assert "IN (...)" in text
    assert "JOIN" in text


@pytest.mark.parametrize(
    ("patterns", "relationship", "tables", "expected"),
    [
        (("User.addresses",), "User.addresses", ("addresses",), True),
        (("User.*",), "User.addresses", ("addresses",), True),
        (("Address.user",), "User.addresses", ("addresses",), False),
        (("addresses",), None, ("addresses",), True),
        (("ADDRESSES",), None, ("addresses",), True),
        (("users",), None, ("public.users",), True),
        (("public.users",), None, ("public.users",), True),
        (("app/views.py",), None, ("t",), True),
        (("app/*",), None, ("t",), True),
        (("app/views.py:42 in index",), None, ("t",), True),
        (("app/legacy/*",), None, ("t",), False),
        (("*",), None, (), True),
        (("Post.body",), "Post.body, Post.title", ("posts",), True),
        ((), "User.addresses", ("addresses",), False),
    ],
)
def test_ignore_patterns(
    patterns: tuple[str, ...], relationship: str | None, tables: tuple[str, ...], expected: bool
) -> None:
    assert matches_ignore(patterns, relationship, tables, SITE) is expected


def test_absolute_path_glob() -> None:
    assert matches_ignore((os.path.abspath("app") + "/*",), None, ("t",), SITE)


# -- bounded state --------------------------------------------------------------------


class FakeTracker:
    """The few tracker attributes the detector reads; no engine behind it."""

    def __init__(self, **options: Any) -> None:
        self.options = Options(**options)
        self.exporters = ()
        self.engine_id = 1


def execution(
    tracker: FakeTracker,
    *,
    fingerprint: str = "f",
    site: Any = SITE,
    param_hash: int = 1,
    orm: OrmLoad | None = None,
    unit: int = 1,
) -> Execution:
    info = StatementInfo(
        operation="SELECT",
        tables=("t",),
        fingerprint=fingerprint,
        normalized=f"SELECT {fingerprint} FROM t WHERE id = ?",
        parse_ok=True,
    )
    return Execution(
        tracker,  # type: ignore[arg-type]
        info.normalized,
        info,
        0,
        1000,
        1,
        False,
        1,
        site,
        orm,
        None,
        param_hash,
        None,
        unit,
    )


def detector_of(scope: Scope) -> NPlusOneDetector:
    [detector] = [d for d in scope.detectors if isinstance(d, NPlusOneDetector)]
    return detector


def feed(scope: Scope, executions: list[Execution]) -> None:
    """Straight to the N+1 detector, as the scope does under its lock."""
    with scope.locked():
        detector_of(scope).batch(executions)


def findings(scope: Scope) -> tuple[Any, ...]:
    fields: dict[str, Any] = {}
    with scope.locked():
        detector_of(scope).contribute(fields)
    return tuple(fields["n_plus_one"])


def test_candidate_loops_are_capped_per_scope() -> None:
    tracker = FakeTracker()
    scope = Scope("s", Options(max_statements=0), track_resources=False)
    for start in range(0, 3 * n_plus_one.MAX_LOOPS, 1000):
        feed(
            scope,
            [execution(tracker, fingerprint=str(i)) for i in range(start, start + 1000)]
            + [execution(tracker, site=(SITE[0], i, "f")) for i in range(start, start + 1000)],
        )
    detector = detector_of(scope)
    assert len(detector.unit.loops) == n_plus_one.MAX_LOOPS


def test_findings_are_capped_and_parents_are_not_kept() -> None:
    tracker = FakeTracker()
    scope = Scope("s", Options(max_statements=0), track_resources=False)
    batch = []
    for i in range(n_plus_one.MAX_FINDINGS + 100):
        for parent in range(3):
            load = OrmLoad("lazy_load", f"User.rel{i}", ("User", parent), True, 7)
            batch.append(execution(tracker, fingerprint=f"r{i}", orm=load))
    for start in range(0, len(batch), 500):
        feed(scope, batch[start : start + 500])
    detector = detector_of(scope)
    assert len(detector.findings) == n_plus_one.MAX_FINDINGS
    loops = list(detector.unit.loops.values())
    assert len(loops) == n_plus_one.MAX_FINDINGS + 100
    assert all(loop.finding is not None for loop in loops)
    assert all(loop.seen is None for loop in loops)  # distinct parents dropped once found
    # a loop past the cap keeps counting nowhere, and keeps no parents
    late = f"User.rel{n_plus_one.MAX_FINDINGS + 50}"
    feed(
        scope,
        [
            execution(tracker, orm=OrmLoad("lazy_load", late, ("User", p), True))
            for p in range(10, 1000)
        ],
    )
    assert detector.unit.loops[("lazy_load", late)].seen is None
    assert len(detector.findings) == n_plus_one.MAX_FINDINGS
    assert late not in {f.relationship for f in findings(scope)}


def test_process_wide_units_are_capped() -> None:
    tracker = FakeTracker()
    scope = Scope("process", Options(max_statements=0), process_wide=True, track_resources=False)
    for unit in range(1, 2000):
        feed(scope, [execution(tracker, unit=unit, param_hash=unit)])
    detector = detector_of(scope)
    assert len(detector.units) == n_plus_one.MAX_UNITS
    assert detector.findings == {}  # one statement per unit: never a loop


def test_process_wide_counts_within_a_unit_only() -> None:
    tracker = FakeTracker()
    scope = Scope("process", Options(max_statements=0), process_wide=True, track_resources=False)
    feed(
        scope, [execution(tracker, unit=1, param_hash=1), execution(tracker, unit=2, param_hash=2)]
    )
    assert detector_of(scope).findings == {}
    feed(
        scope, [execution(tracker, unit=3, param_hash=1), execution(tracker, unit=3, param_hash=2)]
    )
    [finding] = findings(scope)
    assert finding.count == 2


def test_statements_outside_any_scope_need_a_session_process_wide() -> None:
    tracker = FakeTracker()
    scope = Scope("process", Options(max_statements=0), process_wide=True, track_resources=False)
    core = [execution(tracker, unit=0, param_hash=i) for i in range(5)]
    no_session = [
        execution(tracker, unit=0, orm=OrmLoad("lazy_load", "User.a", ("User", i), True, 0))
        for i in range(5)
    ]
    feed(scope, core + no_session)
    assert findings(scope) == ()
    in_session = [
        execution(tracker, unit=0, orm=OrmLoad("lazy_load", "User.a", ("User", i), True, 9))
        for i in range(5)
    ]
    feed(scope, in_session)
    [finding] = findings(scope)
    assert finding.relationship == "User.a"
    assert finding.count == 5


def test_system_catalog_reads_are_never_a_loop() -> None:
    tracker = FakeTracker()
    scope = Scope("s", Options(max_statements=0), track_resources=False)
    statements = []
    for i in range(5):
        info = StatementInfo(
            operation="SELECT",
            tables=("pg_catalog.pg_class", "pg_catalog.pg_namespace"),
            fingerprint="catalog",
            normalized="SELECT relname FROM pg_catalog.pg_class ...",
            parse_ok=True,
        )
        statements.append(execution(tracker, param_hash=i)._replace(info=info))
    feed(scope, statements)
    assert findings(scope) == ()


def test_statements_without_tables_are_never_a_loop() -> None:
    tracker = FakeTracker()
    scope = Scope("s", Options(max_statements=0), track_resources=False)
    info = StatementInfo(
        operation="SELECT", tables=(), fingerprint="one", normalized="SELECT ?", parse_ok=True
    )
    feed(scope, [execution(tracker, param_hash=i)._replace(info=info) for i in range(5)])
    assert findings(scope) == ()
