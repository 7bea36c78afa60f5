"""The literal scanner: what a statement looks like with its values taken out.

Two passes, both regex-driven and linear in the length of the SQL:

``shape`` runs on every statement the exact-text cache has not seen. It replaces
literals and bound parameters with ``?``, comments with a space, and collapses
IN lists, ``ARRAY[...]`` and repeated VALUES rows. Statements that differ only in
values share a shape, so sqlglot parses each shape once, however many literal
variations an application inlines.

``normalize`` runs once per shape. It re-spaces the tokens canonically and
upper-cases reserved words, so statements that differ only in whitespace or
keyword case share a normalized text, and so a fingerprint. Being a scanner of
our own, not sqlglot's generator, keeps fingerprints stable across sqlglot
versions and identical for SQL sqlglot cannot parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlwatch._analysis._dialects import ScanFlags
from sqlwatch._analysis._keywords import (
    FUNCTION_KEYWORDS,
    RESERVED,
    TCL_KEYWORDS,
    TCL_WORDS,
    WITH_BODIES,
)

__all__ = ["MAX_NORMALIZED_CHARS", "Normalized", "Scanner"]

MAX_NORMALIZED_CHARS: Final = 16_384
"""Longer normalized texts are cut (the fingerprint still covers all of it):
reports and spans carry them, and a megabyte of SQL helps nobody there."""

_TRUNCATED: Final = " /* truncated */"
_MAX_OPERATION_CHARS: Final = 32

_KEEP: Final = 1  # group of quoted identifiers: kept verbatim
_DROP: Final = 2  # group of comments: replaced by a space

# -- shape -------------------------------------------------------------------

_IN_LIST = re.compile(r"\b(in)\s*\(\s*(?:-\s*)?\?(?:\s*,\s*(?:-\s*)?\?)+\s*\)", re.IGNORECASE)
_IN_TUPLES = re.compile(r"\b(in)\s*\(\s*(\([\s?,-]*\))(?:\s*,\s*\2)+\s*\)", re.IGNORECASE)
_ARRAY_LIST = re.compile(
    r"\b(array)\s*\[\s*(?:-\s*)?\?(?:\s*,\s*(?:-\s*)?\?)+\s*\]", re.IGNORECASE
)
_VALUES = re.compile(r"\bvalues\b", re.IGNORECASE)
# One row of a VALUES list: parentheses nested at most one level deep (``now()``).
_ROW = re.compile(r"\s*(\([^()]*(?:\([^()]*\)[^()]*)*\))")
_ROW_SEPARATOR = re.compile(r"\s*,")

_TCL_HEAD = re.compile(
    r"[\s(;]*(?:begin|start|commit|end|rollback|abort|savepoint|release|save)\b", re.IGNORECASE
)
_SAVEPOINT_NAME = re.compile(
    r"\b(savepoint|release|to|(?:save|rollback|commit|begin)\s+tran(?:saction)?)\s+"
    r"(?!(?:savepoint|to|isolation|read|with|and)\b)"
    r"(?:\"[^\"]*\"|`[^`]*`|\[[^\]]*\]|[^\W\d][\w$]*)",
    re.IGNORECASE,
)


def _string(quote: str, backslash_escapes: bool) -> str:
    """A string literal's body after its opening ``quote``; unterminated runs to the end.

    Written as unrolled loops so no input can make the regex backtrack badly.
    """
    q = re.escape(quote)
    if backslash_escapes:
        return rf"[^{q}\\]*(?:(?:{q}{q}|\\[\s\S])[^{q}\\]*)*\\?(?:{q}|\Z)"
    return rf"[^{q}]*(?:{q}{q}[^{q}]*)*(?:{q}|\Z)"


def _shape_pattern(flags: ScanFlags) -> re.Pattern[str]:
    identifiers = [r"`[^`]*(?:``[^`]*)*`"]
    if not flags.double_quoted_strings:
        identifiers.append(r'"[^"]*(?:""[^"]*)*"')
    if flags.bracket_identifiers:
        identifiers.append(r"\[[^\]]*\]")
    comments = [r"--[^\n]*", r"/\*[\s\S]*?(?:\*/|\Z)"]
    if flags.hash_comments:
        comments.append(r"#[^\n]*")
    literals = [
        r"(?<![\w$])[Ee]'" + _string("'", True),
        r"(?<![\w$])(?:[XxBbNn]|[Uu]&)'" + _string("'", flags.backslash_escapes),
        "'" + _string("'", flags.backslash_escapes),
    ]
    if flags.double_quoted_strings:
        literals.append('"' + _string('"', flags.backslash_escapes))
    if flags.dollar_quotes:
        literals.append(r"(?<![\w$])\$(?P<tag>(?:[A-Za-z_]\w*)?)\$[\s\S]*?(?:\$(?P=tag)\$|\Z)")
    literals += [
        r"(?<![\w$.])0[xX][0-9A-Fa-f]+(?![\w$])",
        r"(?<![\w$.])(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?![\w$])",
        r"\?\d+",  # ?1 (sqlite); a bare ? is already what it should become
        r"(?<!%)%(?:\([^()\s]*\))?[sbt](?![\w$])",  # %s %(name)s (format, pyformat)
        r"(?<![:\w]):(?:[A-Za-z_]\w*|\d+)",  # :name :1 (named, numeric), not ::cast
        r"\$\d+",  # $1 (asyncpg)
    ]
    pattern = (
        f"({'|'.join(identifiers)})"
        f"|({'|'.join(comments)})"
        f"|{'|'.join(f'(?:{lit})' for lit in literals)}"
    )
    return re.compile(pattern)


def _replace(match: re.Match[str]) -> str:
    group = match.lastindex
    if group == _KEEP:
        return match.group()
    if group == _DROP:
        return " "
    return "?"


def _collapse_values(shape: str) -> str:
    """Keep one of each run of identical VALUES rows: row count must not matter."""
    pieces: list[str] = []
    done = 0
    for found in _VALUES.finditer(shape):
        if found.start() < done:
            continue
        rows, end = _rows_after(shape, found.end())
        if len(rows) < 2:
            continue
        kept = [row for i, row in enumerate(rows) if i == 0 or row != rows[i - 1]]
        pieces += [shape[done : found.end()], " ", ", ".join(kept)]
        done = end
    if not pieces:
        return shape
    pieces.append(shape[done:])
    return "".join(pieces)


def _rows_after(shape: str, pos: int) -> tuple[list[str], int]:
    rows: list[str] = []
    end = pos
    while True:
        row = _ROW.match(shape, pos)
        if row is None:
            return rows, end
        rows.append(row.group(1))
        end = row.end()
        separator = _ROW_SEPARATOR.match(shape, end)
        if separator is None:
            return rows, end
        pos = separator.end()


# -- normalize ---------------------------------------------------------------

_WORD, _KW, _QID, _PH, _OPEN, _CLOSE, _LBRACK, _RBRACK, _COMMA, _DOT, _SEMI, _CAST, _OP = range(13)
_PUNCTUATION: Final = {
    "(": _OPEN,
    ")": _CLOSE,
    "[": _LBRACK,
    "]": _RBRACK,
    ",": _COMMA,
    ".": _DOT,
    ";": _SEMI,
    "::": _CAST,
    "?": _PH,
}
_NO_SPACE_AFTER: Final = frozenset({_OPEN, _LBRACK, _DOT, _CAST})
_NO_SPACE_BEFORE: Final = frozenset({_CLOSE, _RBRACK, _COMMA, _DOT, _SEMI, _CAST})
_GLUED_TO_PAREN: Final = frozenset({_WORD, _QID, _CLOSE, _RBRACK})
_BEFORE_UNARY: Final = frozenset({_OPEN, _LBRACK, _COMMA, _OP, _CAST, _SEMI, _KW})
_UNARY: Final = frozenset({"-", "+", "~"})
_TCL_TOKENS: Final = frozenset({_WORD, _KW, _QID, _PH, _COMMA})
_OPERATION = re.compile(r"[A-Za-z][A-Za-z_]*\Z")

_OPERATORS = r"::|<=>|->>|#>>|<>|<=|>=|!=|\|\||->|#>|@>|<@|&&|:=|=>|<<|>>|!~\*|!~|~\*|\*\*"


def _token_pattern(flags: ScanFlags) -> re.Pattern[str]:
    quoted = [r'"[^"]*(?:""[^"]*)*"', r"`[^`]*(?:``[^`]*)*`"]
    if flags.bracket_identifiers:
        quoted.append(r"\[[^\]]*\]")
    words = [r"[@#]*[^\W\d][\w$]*", r"\w+"]
    return re.compile(rf"\s*({'|'.join(quoted + words)}|\?|{_OPERATORS}|\S)")


@dataclass(frozen=True, slots=True)
class Normalized:
    """A shape re-spaced canonically, with what the analyzer needs from its tokens."""

    text: str
    operation: str
    """The leading keyword, upper-cased (``WITH`` resolved to its body); "OTHER" if none."""
    depth: int
    """Deepest bracket nesting: deeper statements are not handed to sqlglot."""
    simple_tcl: bool
    """Transaction control of only words and names: no parser needed."""


class Scanner:
    """Literal scanning and normalization for one dialect's lexical rules."""

    __slots__ = ("_shape", "_tokens")

    def __init__(self, flags: ScanFlags) -> None:
        self._shape = _shape_pattern(flags)
        self._tokens = _token_pattern(flags)

    def shape(self, sql: str) -> str:
        """``sql`` with values as ``?``, comments as spaces, value lists collapsed."""
        shape = self._shape.sub(_replace, sql)
        if "?" in shape:
            shape = _IN_LIST.sub(r"\1 (?)", shape)
            shape = _ARRAY_LIST.sub(r"\1[?]", shape)
            if "(" in shape:
                shape = _IN_TUPLES.sub(r"\1 (\2)", shape)
        if _VALUES.search(shape) is not None:
            shape = _collapse_values(shape)
        if _TCL_HEAD.match(shape) is not None:
            # SQLAlchemy numbers its savepoints: sa_savepoint_1, sa_savepoint_2...
            shape = _SAVEPOINT_NAME.sub(r"\1 ?", shape)
        return shape

    def normalize(self, shape: str) -> Normalized:
        """Canonical spacing and keyword case of a shape (see the module docstring)."""
        tokens = self._tokens.findall(shape.strip())
        while tokens and tokens[-1] == ";":
            tokens.pop()
        while tokens and tokens[0] == ";":
            del tokens[0]
        operation, lead = _leading_word(tokens)
        tcl = operation in TCL_KEYWORDS
        pieces, kinds, depth = _format(tokens, RESERVED | TCL_WORDS if tcl else RESERVED, lead)
        if operation == "WITH":
            operation = _with_body(tokens) or operation
        text = "".join(pieces)
        if len(text) > MAX_NORMALIZED_CHARS:
            text = text[:MAX_NORMALIZED_CHARS] + _TRUNCATED
        simple = tcl and all(kind in _TCL_TOKENS for kind in kinds)
        return Normalized(text, operation, depth, simple)


def _leading_word(tokens: list[str]) -> tuple[str, int]:
    """The statement's first word, upper-cased, and its index; ("OTHER", -1) if none."""
    for i, token in enumerate(tokens):
        if token == "(":
            continue
        if len(token) <= _MAX_OPERATION_CHARS and _OPERATION.match(token):
            return token.upper(), i
        break
    return "OTHER", -1


def _with_body(tokens: list[str]) -> str | None:
    """The statement a WITH introduces: the first DML keyword outside brackets."""
    depth = 0
    previous = ""
    for token in tokens:
        if token in ("(", "["):
            depth += 1
        elif token in (")", "]"):
            depth = max(depth - 1, 0)
        elif depth == 0 and previous != "." and token.upper() in WITH_BODIES:
            return token.upper()
        previous = token
    return None


def _kind(token: str, keywords: frozenset[str], previous: str, following: str) -> int:
    kind = _PUNCTUATION.get(token)
    if kind is not None:
        return kind
    first = token[0]
    if first in '"`' or (first == "[" and len(token) > 1):
        return _QID
    if first.isalnum() or first == "_" or (first in "@#" and len(token) > 1):
        if previous != "." and following != "." and token.upper() in keywords:
            return _KW
        return _WORD
    return _OP


def _format(
    tokens: list[str], keywords: frozenset[str], lead: int
) -> tuple[list[str], list[int], int]:
    """Join tokens with canonical spacing; return the pieces, token kinds and depth.

    ``lead`` is the index of the statement's leading word, upper-cased even when
    it is no reserved word (``vacuum``, ``pragma``): it is never an identifier.
    """
    pieces: list[str] = []
    kinds: list[int] = []
    previous_kind = -1
    previous = ""
    unary = False
    depth = max_depth = 0
    last = len(tokens) - 1
    for i, token in enumerate(tokens):
        following = tokens[i + 1] if i < last else ""
        kind = _kind(token, keywords, previous, following)
        if kind == _KW or i == lead:
            token = token.upper()
        if i and not unary and _spaced(kind, previous_kind, previous):
            pieces.append(" ")
        pieces.append(token)
        kinds.append(kind)
        unary = kind == _OP and token in _UNARY and (i == 0 or previous_kind in _BEFORE_UNARY)
        if kind in (_OPEN, _LBRACK):
            depth += 1
            max_depth = max(max_depth, depth)
        elif kind in (_CLOSE, _RBRACK) and depth:
            depth -= 1
        previous_kind, previous = kind, token
    return pieces, kinds, max_depth


def _spaced(kind: int, previous_kind: int, previous: str) -> bool:
    if previous_kind in _NO_SPACE_AFTER or kind in _NO_SPACE_BEFORE:
        return False
    if kind == _OPEN:
        if previous_kind == _KW:
            return previous not in FUNCTION_KEYWORDS
        return previous_kind not in _GLUED_TO_PAREN
    if kind == _LBRACK:
        return previous_kind not in _GLUED_TO_PAREN and previous_kind != _KW
    return True
