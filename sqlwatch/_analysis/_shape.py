"""The shape of a statement: its text with the values taken out.

This runs on every statement the exact-text cache has not seen, so it is a few
regex passes, linear in the length of the SQL, with Python code only where a
value was found. It replaces literals and bound parameters with ``?``, comments
with a space, and collapses IN lists, ``ARRAY[...]`` and repeated VALUES rows.
Statements that differ only in values share a shape, so the expensive work
(normalizing, parsing) happens once per shape however many literal variations
an application inlines.

It only has to be good enough to be a cache key; ``_normalize`` makes the
fingerprint exact. But it must never merge two statements that are different,
so it lexes strings, comments and quoted identifiers as each dialect does.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlwatch._analysis._dialects import ScanFlags

__all__ = ["Shaper"]

# Cheap tests first: most statements have no list to collapse, and the
# case-insensitive searches cost a few microseconds each.
_REPEATED_VALUE = re.compile(r"\?\s*(?:::\s*\w+\s*)?,\s*(?:-\s*)?\?")
_REPEATED_ROW = re.compile(r"\)\s*,\s*\(")
# Keywords match case-insensitively in ASCII only, ``(?a:...)``: under Unicode
# rules ``in`` would also match a dotless i (U+0131) for its i, and ``values`` a
# long s (U+017F) for its s, which no database reads as keywords (nor does the
# normalizer).
# The optional ``::TYPE`` is PostgreSQL's cast, which SQLAlchemy 2.1 puts on
# every parameter: ``IN (%(id_1)s::INTEGER, %(id_2)s::INTEGER)``.
_CAST = r"((?:\s*::\s*\w+)?)"
_IN_LIST = re.compile(
    rf"\b(?a:(in))\s*\(\s*(?:-\s*)?\?{_CAST}(?:\s*,\s*(?:-\s*)?\?\2)+\s*\)", re.IGNORECASE
)
_ARRAY_LIST = re.compile(
    rf"\b(?a:(array))\s*\[\s*(?:-\s*)?\?{_CAST}(?:\s*,\s*(?:-\s*)?\?\2)+\s*\]", re.IGNORECASE
)
_IN_TUPLES = re.compile(r"\b(?a:(in))\s*\(\s*(\([^()]*\))(?:\s*,\s*\2)+\s*\)", re.IGNORECASE)
_VALUES = re.compile(r"\b(?a:values)\b", re.IGNORECASE)
# One row of a VALUES list: parentheses nested at most one level deep (``now()``).
_ROW_TEXT = r"\([^()]*(?:\([^()]*\)[^()]*)*\)"
_ROW = re.compile(_ROW_TEXT)
_ROWS = re.compile(rf"\s*{_ROW_TEXT}(?:\s*,\s*{_ROW_TEXT})*")

_TCL_HEAD = re.compile(
    r"[\s(;]*(?a:begin|start|commit|end|rollback|abort|savepoint|release|save)\b", re.IGNORECASE
)
_SAVEPOINT_NAME = re.compile(
    r"\b((?a:savepoint|release|to|(?:save|rollback|commit|begin)\s+tran(?:saction)?))\s+"
    r"(?!(?a:savepoint|to|isolation|read|with|and)\b)"
    r"(?:\"[^\"]*\"|`[^`]*`|\[[^\]]*\]|[^\W\d][\w$]*)",
    re.IGNORECASE,
)


def _string(quote: str, backslash_escapes: bool, name: str) -> str:
    """A string literal's body after its opening ``quote``.

    An unterminated string runs to the end and matches the empty group ``name``
    there, so the replacement can keep the statement broken (``?'``):
    unparseable input must stay unparseable, without its contents. Written as
    unrolled loops so no input can make the regex backtrack badly.
    """
    q = re.escape(quote)
    end = rf"(?:{q}|(?P<{name}>\Z))"
    if backslash_escapes:
        return rf"[^{q}\\]*(?:(?:{q}{q}|\\[\s\S])[^{q}\\]*)*\\?{end}"
    return rf"[^{q}]*(?:{q}{q}[^{q}]*)*{end}"


_MAX_COMMENT_NESTING = 4


def _nested_comment_body(levels: int) -> str:
    """A block comment's body after its ``/*``, comments inside it nested up to
    ``levels`` deep, then its ``*/``. Unrolled (runs of ordinary characters
    between a lone ``*``, a lone ``/`` or an inner comment), so no input makes
    it backtrack badly. A deeper or unclosed comment fails here and is then
    taken as running to the end, like any unclosed comment."""
    body = r"[^*/]*(?:(?:\*(?!/)|/(?!\*))[^*/]*)*\*/"
    for _ in range(levels):
        body = rf"[^*/]*(?:(?:\*(?!/)|/(?!\*)|/\*{body})[^*/]*)*\*/"
    return body


_NESTED_COMMENT_BODY = _nested_comment_body(_MAX_COMMENT_NESTING) + "(?P<drop3>)"
"""Where comments nest, the first ``*/`` may end only an inner comment: what
follows it is still comment (and an apostrophe there no string's start)."""

_Q_QUOTED = (
    r"(?<=')(?:(?<=(?<![\w$])[qQ]')|(?<=(?<![\w$])[nN][qQ]'))"
    r"(?:\[[\s\S]*?\]'|\{[\s\S]*?\}'|\([\s\S]*?\)'|<[\s\S]*?>'"
    r"|(?P<qdelimiter>[^\s\[{(<])[\s\S]*?(?P=qdelimiter)'|[\s\S]*(?P<broken4>\Z))"
)
"""Oracle's alternative quoting after its ``q'`` (or ``nq'``): the text between a
delimiter and its match (``[]``, ``{}``, ``()``, ``<>``, or the same character
twice) followed by a quote. Quotes inside are text, so the plain string rule
would end the literal early and leave its rest in the statement."""


def _shape_pattern(flags: ScanFlags) -> re.Pattern[str]:
    """One regex for every literal, parameter, comment and quoted identifier.

    Each alternative starts by re-checking, with a lookbehind, the character the
    shared leading character class consumed. The class lets the regex engine
    skip the ordinary characters of SQL (letters, spaces) in C without trying
    any alternative there; that alone makes the scan about five times faster.
    The empty named groups say which alternative matched (see ``_replacer``).
    """
    backslash = flags.backslash_escapes
    alternatives = [
        r"(?<=`)[^`]*(?:``[^`]*)*`(?P<keep0>)",
        r"(?<=-)-[^\n]*(?P<drop0>)",
        r"(?<=/)\*"
        + (_NESTED_COMMENT_BODY if flags.nested_comments else r"[\s\S]*?\*/(?P<drop1>)"),
        r"(?<=/)\*[\s\S]*(?P<open0>)",
        # Dollar quoting never appears by accident: recognized in every dialect.
        # A tag is spelled like an unquoted identifier (without "$"), and
        # PostgreSQL takes any non-ASCII character in those: $é$...$é$.
        r"(?<=\$)(?<![\w$]\$)(?P<tag>(?:(?:[^\W\d]|[^\x00-\x7f])(?:\w|[^\x00-\x7f])*)?)\$"
        r"[\s\S]*?(?:\$(?P=tag)\$|(?P<broken0>\Z))",
        # T-SQL's money ($12.50) is a value; $1 (asyncpg) a parameter, but a$1 a name.
        r"(?<=\$)(?<![\w$]\$)\d+\.\d*(?![\w$])",
        r"(?<=\$)(?<![\w$]\$)\d+(?P<param0>)",
        # E'...' (PostgreSQL escape strings) always take backslash escapes. The
        # prefix letter (E, N, X, B, Q) stays in the shape; the normalizer drops it.
        r"(?<=')(?<=(?<![\w$])[Ee]')" + _string("'", True, "broken1"),
        # Before the plain string: q'{it's}' is one literal, not 'it' and a stray s.
        *([_Q_QUOTED] if flags.q_quotes else []),
        r"(?<=')" + _string("'", backslash, "broken2"),
        # Hexadecimal, octal and binary integers (0x1F, 0o17, 0b101: PostgreSQL 16,
        # MySQL); PostgreSQL 16 also takes underscores between digits (1_000_000).
        r"(?<=0)(?<![\w$.]0)(?:[xX]_?[0-9A-Fa-f]+(?:_[0-9A-Fa-f]+)*|[oO]_?[0-7]+(?:_[0-7]+)*"
        r"|[bB]_?[01]+(?:_[01]+)*)(?![\w$])",
        # A number starts at a digit not inside a word; in ".5" the dot stays in
        # the shape (dots are everywhere in SQL, too common to start a match on)
        # and the normalizer drops it.
        r"(?<=\d)(?:(?<![\w$.]\d)|(?<=(?<![\w$.])\.\d))(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?"
        r"(?:[eE][+-]?\d(?:_?\d)*)?(?![\w$])",
        r"(?<=\?)\d+(?P<param1>)",  # ?1 (sqlite); a bare ? is already what it should become
        r"(?<=%)(?<!%%)(?:\([^()\s]*\))?[sbt](?![\w$])(?P<param2>)",  # %s %(name)s
        # :name :1, Oracle's :"name" (SQLAlchemy quotes names it must), :été; not ::cast
        r'(?<=:)(?<![:\w]:)(?:[^\W\d]\w*|\d+|"[^"]*")(?P<param3>)',
    ]
    first = "`\\-/$'0-9?%:"
    if flags.double_quoted_strings:
        alternatives.append(r'(?<=")' + _string('"', backslash, "broken3"))
    else:
        alternatives.append(r'(?<=")[^"]*(?:""[^"]*)*"(?P<keep1>)')
    first += '"'
    if flags.bracket_identifiers:
        alternatives.append(r"(?<=\[)[^\]]*\](?P<keep2>)")
        first += "\\["
    if flags.hash_comments:
        alternatives.append(r"(?<=#)[^\n]*(?P<drop2>)")
        first += "#"
    return re.compile(f"[{first}](?:{'|'.join(alternatives)})")


def _replacer(
    pattern: re.Pattern[str], *, keep_parameters: bool = False
) -> Callable[[re.Match[str]], str]:
    """The substitution for one shape pattern, dispatching on the group that matched.

    Quoted identifiers stay, comments become a space, literals and parameters
    ``?``; anything unterminated leaves a mark that keeps the statement broken.
    With ``keep_parameters``, parameter placeholders stay as written: what
    remains is the statement with only its values taken out (``Shaper.redact``).
    """
    actions = [""] * (pattern.groups + 1)
    for name, index in pattern.groupindex.items():
        actions[index] = name.rstrip("0123456789")
    replacements = {"drop": " ", "open": " /*", "broken": "?'"}
    kept = {"keep", "param"} if keep_parameters else {"keep"}

    def replace(match: re.Match[str]) -> str:
        group = match.lastindex
        if group is None:
            return "?"
        action = actions[group]
        if action in kept:
            return match.group()
        return replacements.get(action, "?")

    return replace


def _collapse_values(shape: str) -> str:
    """Keep one of each distinct VALUES row shape: the row count must not matter.

    Rows whose values differ only as literals (``(1, 'a')``, ``(2, 'b')``) are
    already identical here; rows of another shape (``(?, NULL)``) stay, once
    each, in order of first appearance.
    """
    pieces: list[str] = []
    done = 0
    for found in _VALUES.finditer(shape):
        if found.start() < done:
            continue
        rows = _ROWS.match(shape, found.end())
        if rows is None:
            continue
        unique = dict.fromkeys(_ROW.findall(rows.group()))
        pieces += [shape[done : found.end()], " ", ", ".join(unique)]
        done = rows.end()
    if not pieces:
        return shape
    pieces.append(shape[done:])
    return "".join(pieces)


class Shaper:
    """The shape pass for one dialect's lexical rules."""

    __slots__ = ("_pattern", "_redact", "_replace")

    def __init__(self, flags: ScanFlags) -> None:
        self._pattern = _shape_pattern(flags)
        self._replace = _replacer(self._pattern)
        self._redact = _replacer(self._pattern, keep_parameters=True)

    def redact(self, sql: str) -> str:
        """``sql`` as written, but with every literal value ``?`` and comments
        dropped: safe to let out of the process, still the statement sent."""
        return self._pattern.sub(self._redact, sql)

    def redacted_spans(self, sql: str) -> list[tuple[int, int, str]]:
        """Where ``redact`` replaces something: start, end and the replacement."""
        replace = self._redact
        spans = []
        for match in self._pattern.finditer(sql):
            text = replace(match)
            if text != match.group():
                spans.append((match.start(), match.end(), text))
        return spans

    def __call__(self, sql: str) -> str:
        """``sql`` with values as ``?``, comments as spaces, value lists collapsed."""
        shape = self._pattern.sub(self._replace, sql)
        if _REPEATED_VALUE.search(shape) is not None:
            shape = _IN_LIST.sub(r"\1 (?\2)", shape)
            shape = _ARRAY_LIST.sub(r"\1[?\2]", shape)
        if _REPEATED_ROW.search(shape) is not None:
            shape = _IN_TUPLES.sub(r"\1 (\2)", shape)
            shape = _collapse_values(shape)
        if _TCL_HEAD.match(shape) is not None:
            # SQLAlchemy numbers its savepoints: sa_savepoint_1, sa_savepoint_2...
            shape = _SAVEPOINT_NAME.sub(r"\1 ?", shape)
        return shape
