"""Options for ``instrument()`` and ``watch()``, validated when they are given.

Options arrive as keyword arguments. Reading them with ``kwargs.get(...)`` would
let a typo such as ``slow_query=100`` pass silently, so every name and value is
checked here, once, and a mistake is a one-line ``TypeError`` / ``ValueError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["OPTION_NAMES", "Options"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Every option of the SPEC's table, with its default."""

    slow_query_ms: float = 500.0
    n_plus_one_threshold: int = 2
    capture_params: bool = False
    capture_call_sites: bool = True
    max_statements: int = 10_000
    leak_threshold_s: float = 30.0
    detect_unused_eager_loads: bool = True
    ignore: tuple[str, ...] = ()
    span_min_duration_ms: float = 0.0
    sqlcommenter: bool = False
    exporters: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        _check_number("slow_query_ms", self.slow_query_ms, minimum=0.0)
        _check_int("n_plus_one_threshold", self.n_plus_one_threshold, minimum=2)
        _check_bool("capture_params", self.capture_params)
        _check_bool("capture_call_sites", self.capture_call_sites)
        _check_int("max_statements", self.max_statements, minimum=0)
        _check_number("leak_threshold_s", self.leak_threshold_s, minimum=0.0)
        _check_bool("detect_unused_eager_loads", self.detect_unused_eager_loads)
        _check_number("span_min_duration_ms", self.span_min_duration_ms, minimum=0.0)
        _check_bool("sqlcommenter", self.sqlcommenter)
        ignore: object = self.ignore  # users may pass anything: check at run time
        if not _is_sequence(ignore) or not all(isinstance(p, str) for p in self.ignore):
            raise ValueError(
                "option 'ignore' must be a sequence of strings (relationship names, "
                f"table names or call-site globs), got {self.ignore!r}"
            )
        exporters: object = self.exporters
        if not _is_sequence(exporters):
            raise ValueError(
                "option 'exporters' must be a sequence, e.g. exporters=('logging',); "
                f"got {self.exporters!r}"
            )

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], **defaults: Any) -> Options:
        """Build options from user keywords over scope-specific defaults.

        Raises ``TypeError`` for an unknown option name and ``ValueError`` for a
        bad value, each naming the option.
        """
        unknown = sorted(set(kwargs) - OPTION_NAMES)
        if unknown:
            valid = ", ".join(sorted(OPTION_NAMES))
            raise TypeError(f"unknown sqlwatch option {unknown[0]!r}; valid options: {valid}")
        values = {**defaults, **kwargs}
        for name in ("ignore", "exporters"):
            value = values.get(name)
            if isinstance(value, Iterable) and not isinstance(value, (str, bytes, tuple)):
                # a generator would be used up by the check below, and a list
                # could change after it: keep an immutable copy
                values[name] = tuple(value)
        return cls(**values)

    def replace(self, **changes: Any) -> Options:
        return dataclasses.replace(self, **changes)


OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(Options))


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"option {name!r} must be True or False, got {value!r}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"option {name!r} must be an integer >= {minimum}, got {value!r}")


def _is_sequence(value: object) -> bool:
    """A collection of entries, not one entry: a string is not one, nor ``None``."""
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes))


def _check_number(name: str, value: object, *, minimum: float) -> None:
    # ``not value >= minimum`` also refuses NaN, which every comparison calls false:
    # ``slow_query_ms=nan`` would silently report no slow query at all
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValueError(f"option {name!r} must be a number >= {minimum:g}, got {value!r}")
