"""What sqlglot's tree says a statement touches: tables and the OTel query summary.

Parse failures are data: every error sqlglot (or a recursion limit) can raise
ends as ``None``, and the analyzer falls back to the scanner's result.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ErrorLevel

__all__ = ["MAX_SUMMARY_CHARS", "Parsed", "parse"]

MAX_SUMMARY_CHARS: Final = 255
"""The semantic conventions' cap on ``db.query.summary``."""

_WITH_KEYS: Final = ("with_", "with")  # sqlglot renamed the arg in v27


def _classes(*names: str) -> tuple[type[exp.Expression], ...]:
    """The named expression classes this sqlglot version has."""
    found = (getattr(exp, name, None) for name in names)
    return tuple(cls for cls in found if isinstance(cls, type))


_DML: Final[dict[type[exp.Expression], str]] = {
    exp.Select: "SELECT",
    exp.Insert: "INSERT",
    exp.Update: "UPDATE",
    exp.Delete: "DELETE",
    exp.Merge: "MERGE",
}
_DDL: Final = _classes("Create", "Drop", "Alter", "TruncateTable")
_WORDLESS: Final = _classes("SetOperation", "Union", "Subquery", "Values", "Paren")
_STATEMENTS: Final = (
    tuple(_DML)
    + _DDL
    + _WORDLESS
    + _classes(
        "Query",
        "Pragma",
        "Set",
        "Use",
        "Describe",
        "Show",
        "Transaction",
        "Commit",
        "Rollback",
        "Analyze",
        "Copy",
        "Grant",
        "Revoke",
        "Comment",
        "Cache",
        "Uncache",
        "Refresh",
        "LoadData",
        "Kill",
        "Attach",
        "Detach",
        "Summarize",
    )
)
"""Roots that mean sqlglot understood a statement. Anything else (a ``Command``,
or ``Alias`` for ``hello world``) is a parse failure to us."""

_TABLE_KINDS: Final = frozenset({"TABLE", "VIEW"})
"""DDL kinds whose object is a table in the ``tables`` sense."""


@dataclass(frozen=True, slots=True)
class Parsed:
    """What only a parse can tell: the tables, and the summary built from them."""

    tables: tuple[str, ...]
    summary: str


# sqlglot logs a warning each time it falls back to a ``Command``. For sqlwatch
# that fallback is an ordinary outcome, so the warning is dropped while (and
# only while) this thread is parsing for sqlwatch.
_parsing = threading.local()


class _QuietWhileParsing(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_parsing, "active", False)


_QUIET_FILTER: Final = _QuietWhileParsing()
logging.getLogger("sqlglot").addFilter(_QUIET_FILTER)


_CAST_PLACEHOLDER: Final = re.compile(r"\?(?=::)")


def parse(dialect: Dialect, sql: str, operation: str) -> Parsed | None:
    """Tables and summary of ``sql``, or None if sqlglot does not understand it.

    sqlglot reads ``?::INTEGER`` in no dialect but ``$1::INTEGER`` in all, and
    SQLAlchemy 2.1 casts every PostgreSQL parameter that way.
    """
    _parsing.active = True
    try:
        sql = _CAST_PLACEHOLDER.sub("$1", sql)
        trees = dialect.parse(sql, error_level=ErrorLevel.IMMEDIATE)
        statements = [tree for tree in trees if isinstance(tree, exp.Expression)]
        if not statements or not all(isinstance(s, _STATEMENTS) for s in statements):
            return None
        return _extract(statements, dialect, operation)
    except Exception:  # sqlglot raises many kinds; RecursionError on deep trees
        return None
    finally:
        _parsing.active = False


def _extract(statements: list[exp.Expression], dialect: Dialect, operation: str) -> Parsed:
    tables: dict[str, None] = {}
    summary: list[str] = []
    for n, statement in enumerate(statements):
        own = operation if n == 0 else _operation_of(statement)
        _Statement(statement, dialect, own).read(tables, summary)
    return Parsed(tuple(tables), _truncate(summary or [operation]))


def _operation_of(statement: exp.Expression) -> str:
    """The leading keyword of a statement after the first in a text, from its tree.

    The scanner only read the first statement's keyword: ``SELECT 1; DELETE
    FROM b`` must not summarize its DELETE as a SELECT.
    """
    word = _DML.get(type(statement))
    if word is None:
        word = "BEGIN" if isinstance(statement, exp.Transaction) else statement.key.upper()
    return word


class _Statement:
    """One parsed statement, read once in text order for its tables and summary."""

    __slots__ = ("ctes", "dialect", "objects", "operation", "root")

    def __init__(self, root: exp.Expression, dialect: Dialect, operation: str) -> None:
        self.root = root
        self.dialect = dialect
        self.operation = operation
        self.ctes = _cte_names(root)
        self.objects = _ddl_objects(root) if isinstance(root, _DDL) else []

    def read(self, tables: dict[str, None], summary: list[str]) -> None:
        """Add the statement's tables (first appearance first) and summary parts.

        A DDL statement's objects are read apart: they are named in the summary
        as they are, not as tables (``CREATE INDEX ix``), and are tables only for
        the kinds that create or drop one.
        """
        skip = {id(o) for o in self.objects}
        for obj in self.objects:
            for table in _object_tables(obj, self.root):
                self._add_table(table, tables)
        for node in _in_text_order(self.root, skip):
            if node is self.root:
                summary += self._root_words()
            elif isinstance(node, exp.Table):
                if self._add_table(node, tables):
                    target = _render(node, self.dialect)
                    if not summary or summary[-1] != target:  # a self-join adds nothing
                        summary.append(target)
            else:
                word = _DML.get(type(node))
                if word is not None and (word == "SELECT" or _has_target(node)):
                    summary.append(word)  # not MERGE's WHEN ... THEN UPDATE

    def _root_words(self) -> list[str]:
        """The root speaks with the statement's own leading keyword (``REPLACE``,
        or the ``SELECT`` a ``WITH`` introduces); a DDL with its kind and objects."""
        if isinstance(self.root, _DDL):
            names = (_object_name(o, self.dialect) for o in self.objects)
            return [_ddl_word(self.root), *(name for name in names if name)]
        if isinstance(self.root, _WORDLESS):
            return []
        return [self.operation]

    def _add_table(self, table: exp.Table, tables: dict[str, None]) -> bool:
        name = _table_name(table, self.ctes)
        if name:
            tables.setdefault(name)
        return bool(name)


def _has_target(node: exp.Expression) -> bool:
    target = node.args.get("this")
    if isinstance(target, exp.Schema):
        target = target.this
    return isinstance(target, exp.Table)


def _in_text_order(root: exp.Expression, skip: set[int]) -> Iterator[exp.Expression]:
    """Pre-order over the tree in the order of the query text.

    sqlglot's own walk is that order but for a WITH, which it visits after the
    query the WITH prefixes; statements without one (nearly all) take it, as it
    is several times faster than walking in Python. Foreign-key references and
    ``skip`` are not entered: a table a constraint refers to is not touched.
    """
    if root.find(exp.With) is None:
        for node in root.walk(bfs=False, prune=lambda n: _pruned(n, skip)):
            if isinstance(node, exp.Expression) and not _pruned(node, skip):
                yield node
        return
    yield from _walk_with_first(root, skip)


def _pruned(node: object, skip: set[int]) -> bool:
    return id(node) in skip or isinstance(node, exp.Reference)


def _walk_with_first(root: exp.Expression, skip: set[int]) -> Iterator[exp.Expression]:
    """The same order, the WITH first; iterative, as chains nest thousands deep."""
    stack: list[tuple[exp.Expression, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if _pruned(node, skip):
            continue
        with_ = _with(node)
        if with_ is not None and not ready:
            stack.append((node, True))
            stack.append((with_, False))
            continue
        yield node
        children = [c for c in node.iter_expressions() if c is not with_]
        stack.extend((child, False) for child in reversed(children))


def _with(node: exp.Expression) -> exp.Expression | None:
    for key in _WITH_KEYS:
        value = node.args.get(key)
        if isinstance(value, exp.Expression):
            return value
    return None


def _cte_names(statement: exp.Expression) -> frozenset[str]:
    return frozenset(cte.alias.lower() for cte in statement.find_all(exp.CTE) if cte.alias)


def _table_name(table: exp.Table, ctes: frozenset[str]) -> str:
    """``schema.name`` without quotes; empty for CTE references and table functions."""
    if not isinstance(table.this, exp.Identifier):
        return ""
    name = table.name
    if not name or (not table.db and name.lower() in ctes):
        return ""
    return ".".join(part for part in (table.catalog, table.db, name) if part)


def _render(node: exp.Expression, dialect: Dialect) -> str:
    """A name as the query wrote it, quotes included (as the conventions ask)."""
    if isinstance(node, exp.Table):
        parts = [node.args.get(key) for key in ("catalog", "db", "this")]
        return ".".join(_render(part, dialect) for part in parts if part is not None)
    if isinstance(node, exp.Identifier):
        if not node.quoted:
            return node.name
        start = getattr(dialect, "IDENTIFIER_START", '"')
        end = getattr(dialect, "IDENTIFIER_END", '"')
        return f"{start}{node.name.replace(end, end * 2)}{end}"
    return node.name


def _object_tables(obj: exp.Expression, statement: exp.Expression) -> list[exp.Table]:
    """The tables among a DDL object: itself for CREATE TABLE, its table for an index."""
    if isinstance(obj, exp.Index):
        table = obj.args.get("table")
        return [table] if isinstance(table, exp.Table) else []
    if isinstance(obj, exp.Table) and _holds_tables(statement):
        return [obj]
    return []


def _ddl_word(statement: exp.Expression) -> str:
    if isinstance(statement, exp.TruncateTable):
        return "TRUNCATE TABLE"
    verb = type(statement).__name__.upper()
    kind = str(statement.args.get("kind") or "").upper()
    if kind == "VIEW" and _materialized(statement):
        kind = "MATERIALIZED VIEW"
    return f"{verb} {kind}".strip()


def _materialized(statement: exp.Expression) -> bool:
    if statement.args.get("materialized"):
        return True
    return statement.find(exp.MaterializedProperty) is not None


def _ddl_objects(statement: exp.Expression) -> list[exp.Expression]:
    """What a CREATE, DROP, ALTER or TRUNCATE acts on."""
    if isinstance(statement, exp.TruncateTable) or isinstance(statement.args.get("tables"), list):
        key = "expressions" if isinstance(statement, exp.TruncateTable) else "tables"
        return [o for o in statement.args.get(key) or [] if isinstance(o, exp.Expression)]
    target = statement.this
    if isinstance(target, exp.Schema):
        target = target.this
    return [target] if isinstance(target, exp.Expression) else []


def _holds_tables(statement: exp.Expression) -> bool:
    if isinstance(statement, exp.TruncateTable):
        return True
    return str(statement.args.get("kind") or "").upper() in _TABLE_KINDS


def _object_name(node: exp.Expression, dialect: Dialect) -> str:
    """A DDL object's name for the summary: a table, an index, a function..."""
    if isinstance(node, exp.Schema):
        node = node.this
    if isinstance(node, (exp.Index, exp.UserDefinedFunction)):
        node = node.this
    if isinstance(node, (exp.Table, exp.Identifier)):
        return _render(node, dialect)
    return ""


def _truncate(parts: list[str]) -> str:
    """Whole parts up to the cap: never a cut name."""
    summary = ""
    for part in parts:
        candidate = f"{summary} {part}" if summary else part
        if len(candidate) > MAX_SUMMARY_CHARS:
            break
        summary = candidate
    return summary or parts[0][:MAX_SUMMARY_CHARS]
