"""The public API is exactly ``sqlwatch.__all__``, and every addition is reviewed here.

In the shape of httpx's ``tests/test_exported_members.py``: a new public name
fails this test until someone adds it to ``REVIEWED`` on purpose.
"""

from __future__ import annotations

import importlib
import types

import sqlwatch

SPEC = {
    "instrument",
    "uninstrument",
    "watch",
    "assert_max_queries",
    "assert_no_n_plus_one",
    "ignore_n_plus_one",
    "report",
    "analyze",
    "Report",
    "Statement",
    "StatementInfo",
    "NPlusOne",
    "FingerprintStats",
    "PoolStats",
    "Leak",
    "SQLWatchError",
    "QueryCountExceeded",
    "NPlusOneDetected",
    "Instrumentation",
    "Watch",
    "JSONFormatter",
}
"""The names ../shared/SPEC.md promises (its renames and removals are not allowed)."""

REVIEWED = [
    "Duplicate",
    "FingerprintStats",
    "Instrumentation",
    "JSONFormatter",
    "Leak",
    "NPlusOne",
    "NPlusOneDetected",
    "Options",
    "PoolStats",
    "QueryCountExceeded",
    "Report",
    "ReportError",
    "Resources",
    "SQLWatchError",
    "ScopeSummary",
    "SessionStats",
    "Statement",
    "StatementInfo",
    "UnusedEagerLoad",
    "Watch",
    "__version__",
    "analyze",
    "assert_max_queries",
    "assert_no_n_plus_one",
    "ignore_n_plus_one",
    "instrument",
    "report",
    "reset",
    "uninstrument",
    "watch",
]


def test_all_is_the_reviewed_list() -> None:
    assert sqlwatch.__all__ == REVIEWED


def test_all_is_sorted_and_has_no_duplicates() -> None:
    assert sqlwatch.__all__ == sorted(set(sqlwatch.__all__))


def test_every_spec_name_is_exported() -> None:
    assert set(sqlwatch.__all__) >= SPEC


def test_every_exported_name_is_importable() -> None:
    for name in sqlwatch.__all__:
        value = getattr(sqlwatch, name)
        assert value is not None, name
        assert not isinstance(value, types.ModuleType), name


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from sqlwatch import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(sqlwatch.__all__)


def test_functions_are_not_shadowed_by_submodules_of_the_same_name() -> None:
    """``sqlwatch.report`` and ``sqlwatch.watch`` stay functions after their modules load."""
    importlib.import_module("sqlwatch.report")
    importlib.import_module("sqlwatch.watch")
    assert callable(sqlwatch.report)
    assert not isinstance(sqlwatch.report, types.ModuleType)
    assert not isinstance(sqlwatch.watch, types.ModuleType)
    assert sqlwatch.report().query_count == 0


def test_nothing_of_sqlwatch_is_public_without_review() -> None:
    """A sqlwatch class or function bound on the package must be in ``__all__``."""
    for name in [*vars(sqlwatch), *dir(sqlwatch)]:
        if name.startswith("_") or name in sqlwatch.__all__:
            continue
        value = getattr(sqlwatch, name)
        if isinstance(value, types.ModuleType):
            continue  # submodules, bound by the import system
        assert not getattr(value, "__module__", "").startswith("sqlwatch"), name


def test_exported_objects_name_their_public_home() -> None:
    """Classes and functions come from sqlwatch's own modules, not from a dependency."""
    for name in sqlwatch.__all__:
        value = getattr(sqlwatch, name)
        if isinstance(value, (type, types.FunctionType)):
            assert value.__module__.startswith("sqlwatch."), name
