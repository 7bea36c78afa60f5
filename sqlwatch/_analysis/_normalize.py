"""The normalized text of a shape: the canonical form a fingerprint is taken of.

This runs once per shape. It splits the shape into tokens and writes them back
with canonical spacing and reserved words upper-cased, after dropping the sign
of negative values and collapsing value lists (IN, ``ARRAY[...]``, VALUES rows)
once more, now token by token: the shape's regexes only catch the common forms.
So statements that differ only in values, whitespace or keyword case share a
normalized text, and so a fingerprint.

Being our own tokenizer, not sqlglot's generator, keeps fingerprints stable
across sqlglot versions, and identical for SQL sqlglot cannot parse.
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

__all__ = ["Normalized", "Normalizer"]

_MAX_OPERATION_CHARS: Final = 32
_MAX_LIST_NESTING: Final = 32
"""Lists inside lists deeper than this are left as they are (recursion guard)."""

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
_SIGNS: Final = frozenset({"-", "+"})
_UNARY: Final = frozenset({"-", "+", "~"})
_TCL_KINDS: Final = frozenset({_WORD, _KW, _QID, _PH, _COMMA})
_OPERATION = re.compile(r"[A-Za-z][A-Za-z_]*\Z")

_OPERATORS: Final = (
    r"::|<=>|->>|#>>|<>|<=|>=|!=|==|!<|!>|\|\||->|#>|@>|<@|&&|:=|=>|<<|>>|!~\*|!~|~\*|\*\*"
)
_PREFIXED: Final = r"(?:[EeXxBbNn]|[Uu]&|[Nn]?[Qq])\?"
"""A prefixed string literal after the shape pass: ``E'a\\nb'`` became ``E?``,
Oracle's ``q'[it's]'`` ``q?``."""

_Token = tuple[str, int]
"""A token's text and kind."""


def _quoted_identifiers(flags: ScanFlags) -> list[str]:
    """Patterns of the dialect's quoted identifiers: a ``?`` in them is a name's."""
    quoted = [r'"[^"]*(?:""[^"]*)*"', r"`[^`]*(?:``[^`]*)*`"]
    if flags.bracket_identifiers:
        quoted.append(r"\[[^\]]*\]")
    return quoted


def _token_pattern(flags: ScanFlags) -> re.Pattern[str]:
    quoted = _quoted_identifiers(flags)
    words = [r"[@#]*[^\W\d][\w$]*", r"\w+"]
    return re.compile(rf"\s*({_PREFIXED}|{'|'.join(quoted + words)}|\?|{_OPERATORS}|\S)")


@dataclass(frozen=True, slots=True)
class Normalized:
    """A shape written canonically, with what the analyzer needs from its tokens."""

    text: str
    operation: str
    """The leading keyword, upper-cased (``WITH`` resolved to its body); "OTHER" if none."""
    depth: int
    """Deepest bracket nesting: deeper statements are not handed to sqlglot."""
    simple_tcl: bool
    """Transaction control made of words and names only: no parser needed."""


class Normalizer:
    """The normalize pass for one dialect's lexical rules."""

    __slots__ = ("_placeholders", "_tokens")

    def __init__(self, flags: ScanFlags) -> None:
        self._tokens = _token_pattern(flags)
        self._placeholders = re.compile(f"{'|'.join(_quoted_identifiers(flags))}|(\\?)")

    def __call__(self, shape: str) -> Normalized:
        words: list[str] = self._tokens.findall(shape.strip())
        while words and words[-1] == ";":
            words.pop()
        while words and words[0] == ";":
            del words[0]
        operation, lead = _leading_word(words)
        tcl = operation in TCL_KEYWORDS
        tokens = _classify(words, RESERVED | TCL_WORDS if tcl else RESERVED, lead)
        tokens = _collapse_lists(_drop_value_signs(tokens), 0)
        text, depth = _format(tokens)
        if operation == "WITH":
            operation = _with_body(tokens) or operation
        simple = tcl and all(kind in _TCL_KINDS for _, kind in tokens)
        return Normalized(text, operation, depth, simple)

    def with_strings(self, text: str) -> str:
        """A normalized ``text`` with each placeholder an empty string literal.

        sqlglot reads a string in places where it reads no ``?``
        (``DATE '2024-01-01'``, ``_utf8mb4'x'``). Parsing this when the
        normalized text fails, rather than one statement's own text, keeps the
        answer the same for every statement of the shape, whichever came first.
        """
        return self._placeholders.sub(_empty_string, text)


def _empty_string(match: re.Match[str]) -> str:
    return "''" if match.group(1) else match.group()


def _leading_word(words: list[str]) -> tuple[str, int]:
    """The statement's first word, upper-cased, and its index; ("OTHER", -1) if none."""
    for i, word in enumerate(words):
        if word == "(":
            continue
        if len(word) <= _MAX_OPERATION_CHARS and _OPERATION.match(word):
            return word.upper(), i
        break
    return "OTHER", -1


def _classify(words: list[str], keywords: frozenset[str], lead: int) -> list[_Token]:
    """Kind each token; upper-case keywords and the leading word; ``E?`` becomes ``?``.

    The leading word is upper-cased even when it is no reserved word (``vacuum``,
    ``pragma``): it is never an identifier.
    """
    tokens: list[_Token] = []
    previous = ""
    last = len(words) - 1
    for i, word in enumerate(words):
        following = words[i + 1] if i < last else ""
        if following == "." and i + 2 <= last and words[i + 2] == "?":
            following = ""  # "SELECT .5": a value's dot, not a qualifier's
        kind = _kind(word, keywords, previous, following)
        if kind == _PH:
            tokens.append(("?", kind))
        elif kind == _KW or i == lead:
            tokens.append((word.upper(), kind))
        else:
            tokens.append((word, kind))
        previous = word
    return tokens


def _kind(word: str, keywords: frozenset[str], previous: str, following: str) -> int:
    kind = _PUNCTUATION.get(word)
    if kind is not None:
        return kind
    first = word[0]
    if word[-1] == "?" and first in "EeXxBbNnUuQq":
        return _PH  # a prefixed string literal
    if first in '"`' or (first == "[" and len(word) > 1):
        return _QID
    if first.isalnum() or first == "_" or (first in "@#" and len(word) > 1):
        # ASCII only: "\u017felect".upper() (long s) is "SELECT"; no database reads it so.
        if previous != "." and following != "." and word.isascii() and word.upper() in keywords:
            return _KW
        return _WORD
    return _OP


def _drop_value_signs(tokens: list[_Token]) -> list[_Token]:
    """``-5`` is a value like ``5``: drop unary signs in front of a value.

    The dot of ``.5`` goes too: the shape pass leaves it (see ``_shape``).
    Backwards, so that ``- .5`` loses both.
    """
    kept: list[_Token] = []
    value_follows = False
    for i in range(len(tokens) - 1, -1, -1):
        word, kind = tokens[i]
        prefix = word in _SIGNS or kind == _DOT
        if value_follows and prefix and (i == 0 or tokens[i - 1][1] in _BEFORE_UNARY):
            continue
        kept.append((word, kind))
        value_follows = kind == _PH
    kept.reverse()
    return kept


def _collapse_lists(tokens: list[_Token], nesting: int) -> list[_Token]:
    """One item for IN and ARRAY lists of values, one of each distinct VALUES row."""
    if nesting > _MAX_LIST_NESTING:
        return tokens
    out: list[_Token] = []
    i = 0
    while i < len(tokens):
        word, kind = tokens[i]
        end = _list_end(tokens, i)
        if end < 0:
            out.append(tokens[i])
            i += 1
            continue
        if word == "VALUES" and kind == _KW:
            rows, end = _rows(tokens, i + 1, nesting)
            unique = list(dict.fromkeys(rows))
            out.append(tokens[i])
            for n, row in enumerate(unique):
                out += [(",", _COMMA)] * (n > 0) + list(row)
        else:
            items = [
                tuple(_collapse_lists(item, nesting + 1)) for item in _split(tokens, i + 1, end)
            ]
            if len(items) > 1 and len(set(items)) == 1 and all(map(_is_value, items)):
                items = items[:1]
            out += [tokens[i], tokens[i + 1]]
            for n, item in enumerate(items):
                out += [(",", _COMMA)] * (n > 0) + list(item)
            out.append(tokens[end])
        i = end + 1
    return out


def _list_end(tokens: list[_Token], i: int) -> int:
    """Where the list starting at ``tokens[i]`` ends, or -1 if no list starts there.

    A list is ``IN (...)``, ``ARRAY[...]`` or ``VALUES (...), (...)``; for VALUES
    only the first row's end is known here (``_rows`` finds the others).
    """
    word, kind = tokens[i]
    if kind != _KW or word not in ("IN", "ARRAY", "VALUES") or i + 1 >= len(tokens):
        return -1
    opening = tokens[i + 1][1]
    if opening != (_LBRACK if word == "ARRAY" else _OPEN):
        return -1
    return _closing(tokens, i + 1)


def _closing(tokens: list[_Token], start: int) -> int:
    """The index of the bracket closing ``tokens[start]``, or -1 if unbalanced."""
    depth = 0
    for j in range(start, len(tokens)):
        kind = tokens[j][1]
        if kind in (_OPEN, _LBRACK):
            depth += 1
        elif kind in (_CLOSE, _RBRACK):
            depth -= 1
            if depth == 0:
                return j
    return -1


def _split(tokens: list[_Token], start: int, end: int) -> list[list[_Token]]:
    """The comma-separated items of ``tokens[start + 1:end]`` (inside one bracket)."""
    items: list[list[_Token]] = [[]]
    depth = 0
    for token in tokens[start + 1 : end]:
        kind = token[1]
        if kind == _COMMA and depth == 0:
            items.append([])
            continue
        if kind in (_OPEN, _LBRACK):
            depth += 1
        elif kind in (_CLOSE, _RBRACK):
            depth -= 1
        items[-1].append(token)
    return items


def _rows(tokens: list[_Token], start: int, nesting: int) -> tuple[list[tuple[_Token, ...]], int]:
    """The rows of a VALUES list starting at ``tokens[start]``, and the last row's end."""
    rows: list[tuple[_Token, ...]] = []
    end = start - 1
    position = start
    while position < len(tokens) and tokens[position][1] == _OPEN:
        close = _closing(tokens, position)
        if close < 0:
            break
        rows.append(tuple(_collapse_lists(tokens[position : close + 1], nesting + 1)))
        end = close
        if close + 2 >= len(tokens) or tokens[close + 1][1] != _COMMA:
            break
        position = close + 2
    return rows, end


def _is_value(item: tuple[_Token, ...]) -> bool:
    """A ``?``, maybe cast (``?::INTEGER``), or a parenthesized tuple of those."""
    if not item:
        return False
    kind = item[0][1]
    if kind == _PH:
        return len(item) == 1 or item[1][1] == _CAST
    if kind == _OPEN and item[-1][1] == _CLOSE and len(item) > 2:
        inner = [("(", _OPEN), *item[1:-1], (")", _CLOSE)]
        return all(_is_value(tuple(part)) for part in _split(inner, 0, len(inner) - 1))
    return False


def _format(tokens: list[_Token]) -> tuple[str, int]:
    """Join tokens with canonical spacing; return the text and the deepest nesting."""
    pieces: list[str] = []
    previous_word, previous_kind = "", -1
    unary = False
    depth = max_depth = 0
    for i, (word, kind) in enumerate(tokens):
        # After a unary sign only a space that keeps "- -1" from reading "--".
        if i and (word[0] in "-/*" if unary else _spaced(kind, previous_kind, previous_word)):
            pieces.append(" ")
        pieces.append(word)
        unary = kind == _OP and word in _UNARY and (i == 0 or previous_kind in _BEFORE_UNARY)
        if kind in (_OPEN, _LBRACK):
            depth += 1
            max_depth = max(max_depth, depth)
        elif kind in (_CLOSE, _RBRACK) and depth:
            depth -= 1
        previous_word, previous_kind = word, kind
    return "".join(pieces), max_depth


def _spaced(kind: int, previous_kind: int, previous_word: str) -> bool:
    if previous_kind in _NO_SPACE_AFTER or kind in _NO_SPACE_BEFORE:
        return False
    if kind == _OPEN:
        if previous_kind == _KW:
            return previous_word not in FUNCTION_KEYWORDS
        return previous_kind not in _GLUED_TO_PAREN
    if kind == _LBRACK:
        return previous_kind not in _GLUED_TO_PAREN and previous_kind != _KW
    return True


def _with_body(tokens: list[_Token]) -> str | None:
    """The statement a WITH introduces: the first DML keyword outside brackets."""
    depth = 0
    for word, kind in tokens:
        if kind in (_OPEN, _LBRACK):
            depth += 1
        elif kind in (_CLOSE, _RBRACK):
            depth = max(depth - 1, 0)
        elif depth == 0 and kind == _KW and word in WITH_BODIES:
            return word
    return None
