"""Options are checked when they are given: a typo or a bad value fails at once, named."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import create_engine

import sqlwatch
from sqlwatch import Options
from sqlwatch.config import OPTION_NAMES

SPEC_OPTIONS = {
    "slow_query_ms": 500.0,
    "n_plus_one_threshold": 2,
    "capture_params": False,
    "capture_call_sites": True,
    "max_statements": 10_000,
    "leak_threshold_s": 30.0,
    "ignore": (),
    "span_min_duration_ms": 0.0,
    "sqlcommenter": False,
}


def test_every_option_of_the_spec_with_its_default() -> None:
    expected = {*SPEC_OPTIONS, "detect_unused_eager_loads", "exporters"}
    assert expected == OPTION_NAMES
    options = Options()
    for name, default in SPEC_OPTIONS.items():
        assert getattr(options, name) == default, name


def test_watch_and_instrument_defaults_differ_where_the_spec_says() -> None:
    watched = sqlwatch.watch()
    assert watched.options.detect_unused_eager_loads is True
    assert watched.options.exporters == ()
    handle = sqlwatch.instrument(create_engine("sqlite://"))
    assert handle.options.detect_unused_eager_loads is False
    assert handle.options.exporters == ("logging",)


@pytest.mark.parametrize("typo", ["slow_query", "max_statement", "capture_param", "Ignore"])
def test_unknown_option_is_a_type_error_naming_it(typo: str) -> None:
    with pytest.raises(TypeError, match=rf"unknown sqlwatch option '{typo}'") as caught:
        sqlwatch.watch(**{typo: 1})
    assert "slow_query_ms" in str(caught.value)  # the valid names are listed
    with pytest.raises(TypeError, match=typo):
        sqlwatch.instrument(create_engine("sqlite://"), **{typo: 1})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("slow_query_ms", -1),
        ("slow_query_ms", "500"),
        ("slow_query_ms", True),
        ("slow_query_ms", None),
        ("n_plus_one_threshold", 1),
        ("n_plus_one_threshold", 2.5),
        ("n_plus_one_threshold", True),
        ("capture_params", 1),
        ("capture_params", "yes"),
        ("capture_call_sites", None),
        ("max_statements", -1),
        ("max_statements", 10.0),
        ("leak_threshold_s", -0.5),
        ("detect_unused_eager_loads", "no"),
        ("ignore", "User.addresses"),
        ("ignore", ["ok", 3]),
        ("span_min_duration_ms", -1.0),
        ("sqlcommenter", 0),
        ("exporters", "logging"),
        ("exporters", ["no-such-exporter"]),
        ("exporters", [42]),
        ("slow_query_ms", float("nan")),
        ("leak_threshold_s", float("nan")),
        ("span_min_duration_ms", float("nan")),
        ("ignore", None),
        ("ignore", 5),
        ("exporters", None),
        ("exporters", 5),
    ],
)
def test_bad_value_is_a_value_error_naming_the_option(name: str, value: Any) -> None:
    named = "exporter" if name == "exporters" else name  # "unknown exporter 'x'" names the entry
    with pytest.raises(ValueError, match=named):
        sqlwatch.watch(**{name: value})


def test_bad_value_for_instrument_leaves_nothing_behind() -> None:
    engine = create_engine("sqlite://")
    with pytest.raises(ValueError, match="slow_query_ms"):
        sqlwatch.instrument(engine, slow_query_ms=-5)
    assert sqlwatch.report().query_count == 0
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    assert sqlwatch.report().statements == ()


@pytest.mark.parametrize(("name", "value"), [("slow_query_ms", 0), ("max_statements", 0)])
def test_boundary_values_are_accepted(name: str, value: Any) -> None:
    assert getattr(sqlwatch.watch(**{name: value}).options, name) == value


def test_sequences_become_tuples() -> None:
    options = sqlwatch.watch(ignore=["User.addresses", "app/legacy/*"], exporters=[]).options
    assert options.ignore == ("User.addresses", "app/legacy/*")
    assert options.exporters == ()
    hash(options.ignore)  # options are immutable all the way down


def test_iterators_keep_their_entries() -> None:
    """A generator is used up once read: checking its entries must not leave the
    option empty (the patterns would then silently ignore nothing)."""
    options = sqlwatch.watch(
        ignore=(p for p in ["User.addresses", "app/legacy/*"]), exporters=iter([])
    ).options
    assert options.ignore == ("User.addresses", "app/legacy/*")
    assert options.exporters == ()


def test_options_are_frozen() -> None:
    options = Options()
    with pytest.raises(AttributeError):
        options.slow_query_ms = 1.0  # type: ignore[misc]
    assert options.replace(slow_query_ms=1.0).slow_query_ms == 1.0
    assert options.slow_query_ms == 500.0


def test_instrument_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="name"):
        sqlwatch.instrument(create_engine("sqlite://"), name=42)  # type: ignore[arg-type]


def test_watch_name_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="name"):
        sqlwatch.watch(42)  # type: ignore[arg-type]


def test_watch_used_as_a_decorator_without_parentheses_says_how() -> None:
    with pytest.raises(TypeError, match=r"@sqlwatch\.watch\(\)"):

        @sqlwatch.watch  # type: ignore[arg-type]
        def handler() -> None:
            pass
