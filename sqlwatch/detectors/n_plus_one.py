"""N+1: a loop that issues one query per row, with the line to fix and the fix.

Three shapes, each one finding per scope that grows its count:

- ``lazy_load``: one relationship lazily loaded for ``n_plus_one_threshold`` or
  more distinct parent objects (``User.addresses`` read in a loop over users);
- ``column_load``: the same for a deferred or expired column (``Post.body``);
- ``repeated_statement``: one SELECT fingerprint run from one call site with
  that many distinct parameter sets (Core, raw SQL, ``session.get`` in a loop).

What is not an N+1 never reaches the counters: eager loaders (one statement
per batch of parents), loads the ORM does for its own bookkeeping (inside a
flush or a ``delete()`` cascade, flagged at capture), DML, transaction control,
executemany batches, identical parameters (those are duplicates), system
catalog reads, and anything ``ignore`` or ``ignore_n_plus_one()`` covers.

The unit of work. In a watch, a test or a request, the scope is the unit. The
process-wide scope lives forever, so it judges each statement in the unit it
ran in: the outermost open scope (``ScopeChain.unit``), or, outside any scope,
the ORM ``Session`` of a loader statement; Core statements outside any scope
have no unit and are not judged there. Units are kept in a small LRU, so
memory stays bounded however long the process runs (see docs/n-plus-one.md).

Per statement, a plain SELECT costs a few dict operations; loader statements
(rare, and slow themselves) do the rest of the work.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections import OrderedDict
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from sqlwatch._capture.call_sites import CallSite, format_call_site
from sqlwatch._capture.execution import Execution, OrmLoad
from sqlwatch._context import current_chain
from sqlwatch.detectors.base import Detector
from sqlwatch.records import NPlusOne, StatementInfo

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = [
    "NPlusOneDetector",
    "ignoring",
    "matches_ignore",
    "suggestion_for",
]

MAX_LOOPS = 4096
"""Candidate loops (relationship, or fingerprint and call site) tracked per unit."""
MAX_LOOPS_PROCESS_UNIT = 512
"""The same, per unit of the process-wide scope (which holds up to ``MAX_UNITS``)."""
MAX_UNITS = 64
"""Units of work the process-wide scope follows at once (least recently used out)."""
MAX_FINDINGS = 1024
MAX_RECENT = 128
"""Table sets remembered per unit to name the query that loaded the parents."""
MAX_SITES = 8

_LOADERS = frozenset({"lazy_load", "column_load"})
_SYSTEM_SCHEMAS = ("pg_catalog.", "information_schema.", "performance_schema.", "mysql.", "sys.")
_SYSTEM_TABLES = ("sqlite_", "pg_")


class _Finding:
    """One N+1 of a scope: what the report and the exporters are told."""

    __slots__ = (
        "count",
        "example_sql",
        "expired",
        "fingerprint",
        "kind",
        "loaded_by",
        "normalized",
        "polymorphic_base",
        "relationship",
        "sites",
        "tables",
        "total_ns",
        "uselist",
        "via",
    )

    def __init__(self, kind: str, first: Execution, loop: _Loop) -> None:
        orm = first.orm
        info = first.info
        self.kind = kind
        self.relationship = orm.attribute if orm is not None else None
        self.uselist = orm.uselist if orm is not None else False
        self.fingerprint = info.fingerprint
        self.normalized = info.normalized
        self.example_sql = first.sql
        self.tables = info.tables
        self.loaded_by = loop.loaded_by
        self.via = loop.via
        self.expired = kind == "column_load" and orm is not None and _expired_reload(orm)
        self.polymorphic_base = (
            _polymorphic_base(orm, loop.parent_tables)
            if kind == "column_load" and orm is not None and not self.expired
            else None
        )
        self.count = 0
        self.total_ns = 0
        self.sites: dict[CallSite | None, int] = {}

    def add(self, count: int, total_ns: int, sites: dict[CallSite | None, int]) -> None:
        self.count += count
        self.total_ns += total_ns
        mine = self.sites
        for site, n in sites.items():
            if site in mine:
                mine[site] += n
            elif len(mine) < MAX_SITES:
                mine[site] = n

    def add_one(self, duration_ns: int, site: CallSite | None) -> None:
        """One more statement of a loop already reported: most of an N+1's loads."""
        self.count += 1
        self.total_ns += duration_ns
        mine = self.sites
        seen = mine.get(site)
        if seen is not None:
            mine[site] = seen + 1
        elif len(mine) < MAX_SITES:
            mine[site] = 1

    def record(self) -> NPlusOne:
        site = max(self.sites.items(), key=lambda item: item[1])[0] if self.sites else None
        return NPlusOne(
            fingerprint=self.fingerprint,
            normalized=self.normalized,
            example_sql=self.example_sql,
            count=self.count,
            total_ms=round(self.total_ns / 1e6, 4),
            call_site=format_call_site(site),
            relationship=self.relationship,
            tables=self.tables,
            suggestion=suggestion_for(
                self.kind,
                self.relationship,
                self.uselist,
                self.tables,
                via=self.via,
                expired=self.expired,
                polymorphic_base=self.polymorphic_base,
            ),
            kind=self.kind,
            loaded_by=self.loaded_by,
        )


class _Dropped(_Finding):
    """Where the loops found past ``MAX_FINDINGS`` count: never reported, and their
    parent sets are dropped like any finding's, so memory stays bounded."""

    def __init__(self) -> None:
        self.count = 0
        self.total_ns = 0
        self.sites = {}

    def add(self, count: int, total_ns: int, sites: dict[CallSite | None, int]) -> None:
        pass

    def add_one(self, duration_ns: int, site: CallSite | None) -> None:
        pass


_DROPPED = _Dropped()


class _Loop:
    """A candidate loop in one unit of work, counted until it crosses the threshold."""

    __slots__ = (
        "count",
        "finding",
        "first",
        "loaded_by",
        "parent_tables",
        "seen",
        "sites",
        "total_ns",
        "via",
    )

    def __init__(self, first: Execution) -> None:
        self.first = first
        self.count = 0
        self.total_ns = 0
        self.sites: dict[CallSite | None, int] = {}
        self.seen: set[Any] | None = set()
        """Distinct parents (loaders) or parameter sets (statements); ``None`` once
        the loop is a finding: from then on it only counts."""
        self.finding: _Finding | None = None
        self.loaded_by: str | None = None
        self.parent_tables: tuple[str, ...] = ()
        """The tables of the ``loaded_by`` query."""
        self.via: str | None = None


_IGNORED: Any = object()
"""Marks a candidate that will never be a finding (system catalogs, ``ignore``)."""


class _Unit:
    """The state of one unit of work: candidate loops and recent SELECTs."""

    __slots__ = ("limit", "loops", "recent")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.loops: dict[Any, Any] = {}
        """key -> the first ``Execution`` seen, then a ``_Loop`` (or ``_IGNORED``)."""
        self.recent: dict[tuple[str, ...], tuple[int, StatementInfo, str | None]] = {}
        """tables -> (sequence number, the latest SELECT that read them, the
        relationship it lazily loaded if any): names the parents' query."""


_sequence = itertools.count()
"""Orders ``_Unit.recent``: one C call, where moving a key to the end costs two."""


def _remember(unit: _Unit, info: StatementInfo, attribute: str | None) -> None:
    recent = unit.recent
    recent[info.tables] = (next(_sequence), info, attribute)
    if len(recent) > MAX_RECENT:
        recent.clear()


class NPlusOneDetector(Detector):
    contributes_n_plus_one = True

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope)
        self.process_wide = scope.process_wide
        self.threshold = scope.options.n_plus_one_threshold
        self.ignore = scope.options.ignore
        self.findings: dict[Any, _Finding] = {}
        self.unit = _Unit(MAX_LOOPS)
        """The scope's one unit of work (unused by the process-wide scope)."""
        self.units: OrderedDict[int, _Unit] = OrderedDict()
        self._last: tuple[int, _Unit] | None = None

    # -- feeding --------------------------------------------------------------

    def __call__(self, execution: Execution) -> None:
        self.batch([execution])

    def batch(self, executions: list[Execution]) -> None:
        """The plain-SELECT path is inlined: it is most statements, and most of
        them are repeats of a few (fingerprint, call site) keys."""
        process_wide = self.process_wide
        unit = self.unit
        sequence = _sequence
        for execution in executions:
            if execution.error is not None:
                continue  # a statement that failed returned no rows to loop over
            orm = execution.orm
            if orm is not None:
                self._orm(execution, orm)
                continue
            info = execution.info
            if info.operation != "SELECT" or execution.param_hash == -1:
                continue  # DML (flushes, batched inserts), DDL, transaction control
            if process_wide:
                found = self._unit_of(execution.unit)
                if found is None:
                    continue  # outside any scope, a Core statement has no unit of work
                unit = found
            recent = unit.recent
            recent[info.tables] = (next(sequence), info, None)
            if len(recent) > MAX_RECENT:
                recent.clear()
            site = execution.call_site
            if site is None:
                continue  # without its line, a loop cannot be told from two calls
            key = (info.fingerprint, site)
            loops = unit.loops
            loop = loops.get(key)
            if loop is None:
                if len(loops) < unit.limit:
                    loops[key] = execution  # most statements never come back: no _Loop yet
                continue
            if loop is _IGNORED:
                continue
            if type(loop) is not _Loop:
                loop = self._start_loop(loops, key, loop)
                if loop is None:
                    continue
            block = execution.n_plus_one_ignore
            if block is not None and matches_ignore(block, None, info.tables, site):
                continue
            duration = execution.duration_ns
            finding = loop.finding
            if finding is not None:
                finding.count += 1
                finding.total_ns += duration
                continue
            loop.count += 1
            loop.total_ns += duration
            seen = loop.seen
            assert seen is not None
            distinct = (execution.sql, execution.param_hash)
            if distinct not in seen:  # identical parameters: a duplicate, not a loop
                seen.add(distinct)
                if len(seen) >= self._threshold(execution):
                    loop.sites = {site: loop.count}
                    self._cross(loop, execution, key)

    def _start_loop(self, loops: dict[Any, Any], key: Any, first: Execution) -> _Loop | None:
        """The second run of a (fingerprint, call site): worth counting from now on."""
        if _system_only(first.info.tables) or self._option_ignored(first, None):
            loops[key] = _IGNORED  # decided once: tables and call site are the key's
            return None
        loop = loops[key] = _Loop(first)
        block = first.n_plus_one_ignore
        if block is None or not matches_ignore(block, None, first.info.tables, first.call_site):
            loop.count = 1
            loop.total_ns = first.duration_ns
            assert loop.seen is not None
            loop.seen.add((first.sql, first.param_hash))
        return loop

    def _orm(self, execution: Execution, orm: OrmLoad) -> None:
        kind = orm.kind
        if kind == "eager_load":
            unit = self._unit_of(execution.unit) if self.process_wide else self.unit
            if unit is not None:
                _remember(unit, execution.info, None)
            return
        if kind not in _LOADERS or orm.internal:
            return  # the unit of work's own loads (flush, delete cascade)
        if self.process_wide:
            unit = self._unit_of(execution.unit or -orm.session_key)
            if unit is None:
                return
        else:
            unit = self.unit
        self._loader(unit, execution, orm)
        _remember(unit, execution.info, orm.attribute if kind == "lazy_load" else None)

    def _unit_of(self, unit_id: int) -> _Unit | None:
        """The process-wide scope's state for one unit of work (LRU, bounded)."""
        if not unit_id:
            return None
        last = self._last
        if last is not None and last[0] == unit_id:
            return last[1]
        units = self.units
        unit = units.get(unit_id)
        if unit is None:
            unit = units[unit_id] = _Unit(MAX_LOOPS_PROCESS_UNIT)
            if len(units) > MAX_UNITS:
                units.popitem(last=False)
        else:
            units.move_to_end(unit_id)
        self._last = (unit_id, unit)
        return unit

    def _threshold(self, execution: Execution) -> int:
        if self.process_wide:
            return execution.tracker.options.n_plus_one_threshold
        return self.threshold

    def _option_ignored(self, execution: Execution, relationship: str | None) -> bool:
        ignore = execution.tracker.options.ignore if self.process_wide else self.ignore
        return bool(ignore) and matches_ignore(
            ignore, relationship, execution.info.tables, execution.call_site
        )

    def _loader(self, unit: _Unit, execution: Execution, orm: OrmLoad) -> None:
        """A lazy load or deferred-column load of one parent object."""
        relationship = orm.attribute
        ignore = execution.tracker.options.ignore if self.process_wide else self.ignore
        if ignore and matches_ignore(
            ignore, relationship, execution.info.tables, execution.call_site
        ):
            return
        block = execution.n_plus_one_ignore
        if block is not None and matches_ignore(
            block, relationship, execution.info.tables, execution.call_site
        ):
            return
        key = (orm.kind, relationship)
        loops = unit.loops
        loop = loops.get(key)
        if loop is None:
            if len(loops) >= unit.limit:
                return
            loop = loops[key] = _Loop(execution)
            loop.loaded_by, loop.via, loop.parent_tables = _parents_query(unit, orm)
        site = execution.call_site
        finding = loop.finding
        if finding is not None:
            finding.add_one(execution.duration_ns, site)
            return
        loop.count += 1
        loop.total_ns += execution.duration_ns
        sites = loop.sites
        if site in sites:
            sites[site] += 1
        elif len(sites) < MAX_SITES:
            sites[site] = 1
        seen = loop.seen
        assert seen is not None
        seen.add(orm.parent)
        if len(seen) >= self._threshold(execution):
            self._cross(loop, execution, key)

    def _cross(self, loop: _Loop, execution: Execution, key: Any) -> None:
        """The loop is an N+1: one finding per scope, told to the exporters once."""
        findings = self.findings
        finding = findings.get(key)
        new = finding is None
        if finding is None:
            if len(findings) >= MAX_FINDINGS:
                finding = _DROPPED
            else:
                first = loop.first
                kind = first.orm.kind if first.orm is not None else "repeated_statement"
                finding = findings[key] = _Finding(kind, first, loop)
        finding.add(loop.count, loop.total_ns, loop.sites)
        loop.finding = finding
        loop.seen = None
        loop.sites = {}
        if new and finding is not _DROPPED and self.scope.has_exporters(execution.tracker):
            self.scope.emit("on_n_plus_one", finding.record(), execution.tracker, execution)

    # -- reporting ------------------------------------------------------------

    def contribute(self, fields: dict[str, Any]) -> None:
        ranked = sorted(self.findings.values(), key=lambda f: (-f.count, -f.total_ns))
        fields["n_plus_one"] = tuple(f.record() for f in ranked)


def _system_only(tables: tuple[str, ...]) -> bool:
    """Catalog reads (reflection, ``checkfirst``) loop by design, and a statement
    that reads no table (``SELECT 1``, a sequence, unparseable SQL) has no rows
    to fetch in one go instead: never an N+1."""
    if not tables:
        return True
    for table in tables:
        name = table.lower()
        if not (name.startswith(_SYSTEM_SCHEMAS) or name.startswith(_SYSTEM_TABLES)):
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _mapped_tables(cls: type) -> frozenset[str]:
    """Unqualified, lower-case names of the tables a mapped class reads."""
    from sqlalchemy import inspect

    mapper: Any = inspect(cls, raiseerr=False)
    if mapper is None:
        return frozenset()
    return frozenset(table.name.lower() for table in mapper.tables if hasattr(table, "name"))


def _expired_reload(orm: OrmLoad) -> bool:
    """Whether a column load reloads expired objects rather than a deferred column.

    SQLAlchemy calls both a column load; an expired object's reload lists every
    expired attribute, its primary key and relationships among them, which a
    deferred column or ``load_only()`` never does.
    """
    parent = orm.parent
    if not isinstance(parent, tuple) or not parent or not isinstance(parent[0], type):
        return False
    return _reloads_identity(parent[0], orm.attribute)


@functools.lru_cache(maxsize=1024)
def _reloads_identity(cls: type, attribute: str) -> bool:
    from sqlalchemy import inspect

    mapper: Any = inspect(cls, raiseerr=False)
    if mapper is None:
        return False
    names = {part.strip().partition(".")[2] for part in attribute.split(",")}
    identity = {mapper.get_property_by_column(column).key for column in mapper.primary_key}
    return bool(names & (identity | set(mapper.relationships.keys())))


def _polymorphic_base(orm: OrmLoad, parent_tables: tuple[str, ...]) -> str | None:
    """The base class the parents were queried as, when a column load reads a
    joined-inheritance subclass's own table, else ``None``.

    ``select(Person)`` reads only the base table; each ``Engineer`` row then loads
    its own columns on first access. SQLAlchemy calls that a column load, as for a
    deferred column, but ``undefer()`` on that query changes nothing: the fix is
    to load the subclasses' tables with it. When the parents' query did read the
    subclass's table, ``load_only()`` left the column out: not this case.
    """
    parent = orm.parent
    if not isinstance(parent, tuple) or not parent or not isinstance(parent[0], type):
        return None
    found = _subclass_table_load(parent[0], orm.attribute)
    if found is None:
        return None
    base, own_tables = found
    read = {table.rsplit(".", 1)[-1].strip('"`').lower() for table in parent_tables}
    return None if read & own_tables else base


@functools.lru_cache(maxsize=1024)
def _subclass_table_load(cls: type, attribute: str) -> tuple[str, frozenset[str]] | None:
    """The hierarchy's base class and the subclass's own tables, when every column
    of ``attribute`` ("Engineer.lang, ...") is a non-deferred column of them."""
    from sqlalchemy import inspect
    from sqlalchemy.orm import ColumnProperty

    base: Any = inspect(cls, raiseerr=False)
    if base is None:
        return None
    # ``cls`` is the identity key's class, the hierarchy's base: the refreshed
    # object's own class is the one the attribute names
    owner = attribute.partition(".")[0]
    mapper = next((m for m in base.self_and_descendants if m.class_.__name__ == owner), None)
    if mapper is None or mapper.inherits is None:
        return None
    inherited = set(mapper.inherits.tables)
    own = frozenset(
        table.name.lower()
        for table in mapper.tables
        if table not in inherited and hasattr(table, "name")
    )
    for part in attribute.split(","):
        prop = mapper.attrs.get(part.strip().partition(".")[2])
        if not isinstance(prop, ColumnProperty) or prop.deferred:
            return None  # a deferred() column: undefer() is the fix
        if any(getattr(column, "table", None) in inherited for column in prop.columns):
            return None  # the base table's columns come with the base query
    return (str(mapper.base_mapper.class_.__name__), own) if own else None


def _parents_query(unit: _Unit, orm: OrmLoad) -> tuple[str | None, str | None, tuple[str, ...]]:
    """The most recent SELECT of the unit that read the parents' table.

    In a loop, that is the query whose rows the loop iterates; it can be another
    query when something else read the same table in between, and is unknown
    when the parents came from outside the unit (another request, a cache).
    """
    parent = orm.parent
    if not isinstance(parent, tuple) or not parent or not isinstance(parent[0], type):
        return None, None, ()
    wanted = _mapped_tables(parent[0])
    if not wanted:
        return None, None, ()
    best: tuple[int, StatementInfo, str | None] | None = None
    for tables, entry in unit.recent.items():
        if best is not None and entry[0] < best[0]:
            continue
        for table in tables:
            if table.rsplit(".", 1)[-1].strip('"`').lower() in wanted:
                best = entry
                break
    if best is None:
        return None, None, ()
    return best[1].normalized, best[2], best[1].tables


# -- suggestions --------------------------------------------------------------


def suggestion_for(
    kind: str,
    relationship: str | None,
    uselist: bool,
    tables: tuple[str, ...],
    *,
    via: str | None = None,
    expired: bool = False,
    polymorphic_base: str | None = None,
) -> str:
    """A sentence a developer can act on, naming the loader option where known."""
    if kind == "lazy_load" and relationship:
        owner, _, attribute = relationship.partition(".")
        if uselist:
            option = f"selectinload({relationship})"
            effect = f"all their {attribute} load in one more query"
        else:
            option = f"joinedload({relationship})"
            effect = f"each {attribute} comes in the same query"
        text = (
            f"Add .options({option}) to the query that loads the {owner} objects, "
            f"so {effect} instead of one query per {owner}"
        )
        if via is not None:
            text += (
                f"; those {owner} objects are themselves lazy-loaded through {via}, "
                f"so chain it: .options(selectinload({via}).{option})"
            )
        return text + "."
    if kind == "column_load" and relationship and expired:
        owner = relationship.partition(".")[0]
        return (
            f"These {owner} objects were expired (by commit() with expire_on_commit=True, "
            f"rollback() or expire()) and each one reloads on first access: read what you "
            f"need before committing, use expire_on_commit=False, or select the {owner} "
            "objects again in one query."
        )
    if kind == "column_load" and relationship and polymorphic_base:
        owner = relationship.partition(".")[0]
        return (
            f"{relationship} is in {owner}'s own table, which the query that loads the "
            f"{owner} objects as {polymorphic_base} does not read, so each {owner} loads it "
            f"on first access: add .options(selectin_polymorphic({polymorphic_base}, "
            f"[{owner}])) to that query, or select with_polymorphic({polymorphic_base}, "
            f"[{owner}]) (if load_only() left it out, list it there)."
        )
    if kind == "column_load" and relationship:
        columns = [c.strip() for c in relationship.split(",")]
        owner = columns[0].partition(".")[0]
        options = ", ".join(f"undefer({c})" for c in columns)
        return (
            f"{relationship} is deferred (or left out by load_only()) and loaded one "
            f"{owner} at a time: add .options({options}) to the query that loads the "
            f"{owner} objects, or list it in load_only()."
        )
    where = ", ".join(tables) if tables else "the same table"
    return (
        f"The same SELECT on {where} runs once per value from this line: fetch all the "
        "rows in one query (WHERE ... IN (...)) or with a JOIN, then look them up in a dict."
    )


# -- ignoring -----------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def matches_ignore(
    patterns: tuple[str, ...],
    relationship: str | None,
    tables: tuple[str, ...],
    site: CallSite | None,
) -> bool:
    """Whether an ``ignore`` pattern names the relationship, a table or the call site.

    Each pattern is an ``fnmatch`` glob tried against the relationship
    (``User.addresses``), each table (with and without its schema, any case) and
    the call site (``app/legacy/views.py:42 in index``, its path alone, and the
    absolute path). ``"*"`` matches everything.
    """
    names: list[str] = []
    if relationship:
        names.append(relationship)
        names.extend(part.strip() for part in relationship.split(",") if "," in relationship)
    table_names: list[str] = []
    for table in tables:
        lowered = table.lower()
        table_names.append(lowered)
        if "." in lowered:
            table_names.append(lowered.rsplit(".", 1)[-1])
    if site is not None:
        text = format_call_site(site)
        if text is not None:
            names.append(text)
            names.append(text.partition(":")[0] if ":" in text else text)
        names.append(site[0])
    for pattern in patterns:
        if pattern == "*":
            return True
        if any(fnmatchcase(name, pattern) for name in names):
            return True
        lowered_pattern = pattern.lower()
        if any(fnmatchcase(name, lowered_pattern) for name in table_names):
            return True
    return False


@contextlib.contextmanager
def ignoring(patterns: tuple[str, ...]) -> Iterator[None]:
    """Mark the statements of a block: ``ignore_n_plus_one`` (no patterns: all of them).

    The patterns ride on the scope chain the capture listener already reads, so
    the hot path pays nothing for them; nested blocks add up.
    """
    chain = current_chain.get()
    wanted = patterns or ("*",)
    if chain.n_plus_one_ignore:
        wanted = chain.n_plus_one_ignore + wanted
    token = current_chain.set(chain._replace(n_plus_one_ignore=tuple(dict.fromkeys(wanted))))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):  # left from another context
            current_chain.reset(token)
