"""Where in the user's code a statement came from.

A statement passes through about fourteen SQLAlchemy frames before it reaches
the cursor, so the walk is the price of every call site. It stays cheap by
deciding once per code object whether a frame is "ours" (sqlwatch, SQLAlchemy,
the standard library) and caching the answer; ``traceback.extract_stack`` would
cost ten times more. The result is a ``(file, line, function)`` tuple, the same
tuple for every statement from one place, formatted to text only when someone
reads it.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from types import CodeType, FrameType

__all__ = [
    "CallSite",
    "CallSiteFinder",
    "classified_internal",
    "find_call_site",
    "format_call_site",
    "split_call_site",
]

CallSite = tuple[str, int, str]
"""``(file name, line, function)``: strings cache their hashes, code objects do not."""


def _package_dirs() -> tuple[str, ...]:
    import sqlalchemy

    sqlwatch_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sqlalchemy_dir = os.path.dirname(os.path.abspath(sqlalchemy.__file__))
    return _with_real_paths({sqlwatch_dir, sqlalchemy_dir})


def _stdlib_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return _with_real_paths({paths[key] for key in ("stdlib", "platstdlib") if key in paths})


def _with_real_paths(dirs: set[str]) -> tuple[str, ...]:
    # A venv may reach the same files through a symlinked base interpreter.
    every = {os.path.abspath(d) for d in dirs} | {os.path.realpath(d) for d in dirs}
    return tuple(sorted(d + os.sep for d in every))


_OUR_DIRS = _package_dirs()
_STDLIB_DIRS = _stdlib_dirs()
_THIRD_PARTY_MARKERS = (os.sep + "site-packages" + os.sep, os.sep + "dist-packages" + os.sep)
_MAX_CACHED = 50_000
_is_internal_file: dict[str, bool] = {}
"""Keyed by file name: a ``str`` caches its hash, a code object does not."""
classified_internal = _is_internal_file.get
"""Whether code in a file is sqlwatch's, SQLAlchemy's or the stdlib's, as far as
it is known already (``None``: not classified yet), in one C call: for hot paths
that fall back to a walk on ``None``."""
_formatted: dict[CallSite, str] = {}
_sites_at: dict[tuple[int, int], tuple[CodeType, CallSite]] = {}
"""(id(code), instruction offset) -> (the code, its call site). A frame's line
number is worked out by scanning its code's line table from the top, which
costs more the further down a long function the call is; a loop's statements
come from the same few offsets. The code object is kept in the value so that
its ``id`` cannot be reused while the entry lives; hence the smaller bound (code
generated at run time is let go once the cache is cleared)."""
_MAX_SITES_AT = 4_096


_GENERATED = ("<frozen", "<sqlalchemy generated", "<string>")
"""Code without a file of its own: frozen stdlib modules, and the wrappers SQLAlchemy
compiles at import (``Session._flush`` among them; ``<string>`` before SQLAlchemy 2.1)."""


_DEMO_DIRS = tuple(d + "_demo" + os.sep for d in _OUR_DIRS if d.endswith("sqlwatch" + os.sep))
"""``sqlwatch demo``'s blog application stands in for user code: its lines are the
call sites the demo shows."""


def _classify(filename: str) -> bool:
    if filename.startswith(_DEMO_DIRS):
        internal = False
    elif filename.startswith((*_OUR_DIRS, *_GENERATED)):
        internal = True
    elif filename.startswith(_STDLIB_DIRS):
        # Debian installs third-party packages below the stdlib tree: those are
        # the application's code, not the standard library.
        internal = not any(marker in filename for marker in _THIRD_PARTY_MARKERS)
    else:
        internal = False
    if len(_is_internal_file) >= _MAX_CACHED:
        _is_internal_file.clear()
    _is_internal_file[filename] = internal
    return internal


def find_call_site(depth: int = 2) -> CallSite | None:
    """The first frame outside sqlwatch, SQLAlchemy and the standard library,
    from ``depth`` frames up."""
    try:
        frame = sys._getframe(depth)
    except ValueError:  # a stack shorter than the frames known to be SQLAlchemy's
        frame = None
    return _first_outside(frame) or _find_in_parent_greenlet()


def _first_outside(frame: FrameType | None) -> CallSite | None:
    cache = _is_internal_file
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        internal = cache.get(filename)
        if internal is None:
            internal = _classify(filename)
        if not internal:
            return _site_at(frame, code)
        frame = frame.f_back
    return None


def _site_at(frame: FrameType, code: CodeType) -> CallSite:
    """The call site of an application frame running ``code``."""
    key = (id(code), frame.f_lasti)
    known = _sites_at.get(key)
    if known is not None and known[0] is code:
        return known[1]
    site = (code.co_filename, frame.f_lineno, code.co_name)
    if len(_sites_at) >= _MAX_SITES_AT:
        _sites_at.clear()
    _sites_at[key] = (code, site)
    return site


class CallSiteFinder:
    """``find_call_site`` for one place in sqlwatch that asks again and again (the
    statement listener, a pool checkout), learning where its walks leave the library.

    A walk costs one frame object per frame it looks at, and an ORM statement has
    twenty SQLAlchemy frames above the listener. But the frames between a given
    place in sqlwatch and the application are SQLAlchemy's own fixed code paths:
    once a walk has found that the frame at depth ``d`` runs ``Session.execute``
    and the one above it is the application's, another statement whose frame at
    depth ``d`` runs ``Session.execute`` has the application one above it too.
    So each walk's exit (the depth and code of the last library frame) is kept,
    and a later call first looks at the frame at each learned depth: one
    ``sys._getframe`` and one frame object per depth (the code paths of an ORM
    application leave at a handful of depths), and one more for the application's
    frame, where a walk would build twenty. No learned exit matching (another code
    path), the full walk runs and learns it.

    ``codes``: code objects to look out for below the application's frame (the
    ORM's bookkeeping methods); whether one was there is learned with the exit.

    ``key``: what the caller knows of the way in, before any walk (the statement's
    SQL string). One code path takes turns with others (an ORM unit of work runs a
    ``get``, a query, a flush, each leaving at its own depth), so the last exit
    often misses; the exit that matched last time for the same key is tried first
    (the last exit for a key not seen yet), then every learned depth. A SQL
    statement comes the same way nearly always.

    Code objects are compared by identity and looked up by ``id``, never hashed: a
    code object does not cache its hash, and hashing one hashes its constants and
    names (0.1 to 0.25 µs for a SQLAlchemy method). The learned exits hold their
    code objects, so an ``id`` there cannot be reused.
    """

    MAX_EXITS = 64
    """Exits kept; past it, forgotten and learned again (a bound, never reached by
    the code paths of one application)."""
    MAX_KEYS = 1_024
    """Keys whose exit is remembered; past it, forgotten and found again."""

    __slots__ = ("_by_key", "_code_ids", "_codes", "_count", "_exits", "_last")

    def __init__(self, codes: frozenset[CodeType] = frozenset()) -> None:
        self._codes = codes  # keeps alive the code objects whose ids are looked up
        self._code_ids = frozenset(id(code) for code in codes)
        self._exits: dict[int, dict[int, tuple[CodeType, bool]]] = {}
        """Depth (seen from ``find``'s frame) -> id(exit code) -> (the exit code,
        whether ``codes`` ran)."""
        self._count = 0
        self._last: tuple[int, CodeType | None, bool] = (0, None, False)
        """The exit that matched last (depth, code, whether ``codes`` ran): the first
        guess without a key, or for a key not seen yet, as most calls come the
        same way as the one before."""
        self._by_key: dict[int, tuple[int, CodeType | None, bool]] = {}
        """hash(key) -> the exit that matched for it last: the first guess. Kept by
        hash, so that no SQL string is kept alive; two keys sharing a hash only
        share a guess, which is checked like any other."""

    # ``find`` and ``find_noting`` spell out the same fast path: a shared helper
    # would be one more call on every statement, and one more frame under the
    # depths they learn.

    def find(self, depth: int, key: object = None) -> CallSite | None:
        """The call site, ``depth`` frames up, as ``find_call_site(depth)`` would
        find it called from the same place."""
        guess = self._last if key is None else self._by_key.get(hash(key), self._last)
        exit_depth, exit_code, _ = guess
        try:
            frame = sys._getframe(exit_depth)
        except ValueError:
            pass
        else:
            if frame.f_code is exit_code:
                caller = frame.f_back
                if caller is not None:
                    code = caller.f_code
                    if _is_internal_file.get(code.co_filename) is False:
                        known = _sites_at.get((id(code), caller.f_lasti))
                        if known is not None and known[0] is code:
                            return known[1]
                        return _site_at(caller, code)
        return self._search(depth, key)[0]

    def find_noting(self, depth: int, key: object = None) -> tuple[CallSite | None, bool]:
        """``find``, and whether one of ``codes`` ran below the application's frame.
        (Use one finder with one of the two methods: their frames are its depths.)"""
        guess = self._last if key is None else self._by_key.get(hash(key), self._last)
        exit_depth, exit_code, seen = guess
        try:
            frame = sys._getframe(exit_depth)
        except ValueError:
            pass
        else:
            if frame.f_code is exit_code:
                caller = frame.f_back
                if caller is not None:
                    code = caller.f_code
                    if _is_internal_file.get(code.co_filename) is False:
                        known = _sites_at.get((id(code), caller.f_lasti))
                        if known is not None and known[0] is code:
                            return known[1], seen
                        return _site_at(caller, code), seen
        return self._search(depth, key)

    def _search(self, depth: int, key: object) -> tuple[CallSite | None, bool]:
        """Every learned exit, then the full walk, which learns one. This frame is
        one below ``find``'s: depths seen from there are one more here."""
        getframe = sys._getframe
        for exit_depth, codes in self._exits.items():
            try:
                exit_frame = getframe(exit_depth + 1)
            except ValueError:
                continue
            learned = codes.get(id(exit_frame.f_code))
            if learned is not None:
                site = _site_above(exit_frame)
                if site is not None:
                    self._last = (exit_depth, *learned)
                    if key is not None:
                        self._remember(key)
                    return site, learned[1]
        index = depth + 1
        frame: FrameType | None
        try:
            frame = getframe(index)
        except ValueError:
            frame = None
        watched = self._code_ids
        cache = _is_internal_file
        seen = False
        below: CodeType | None = None
        while frame is not None:
            code = frame.f_code
            if watched and id(code) in watched:
                seen = True
            filename = code.co_filename
            internal = cache.get(filename)
            if internal is None:
                internal = _classify(filename)
            if not internal:
                if below is None:  # the first frame looked at: its callee is the exit
                    below = getframe(index - 1).f_code
                self._learn(index - 2, below, seen)  # the exit, seen from find's frame
                if key is not None:
                    self._remember(key)
                return _site_at(frame, code), seen
            below = code
            index += 1
            frame = frame.f_back
        return _find_in_parent_greenlet(), seen

    def _remember(self, key: object) -> None:
        """The exit just matched or learned is the one to try first for ``key``."""
        by_key = self._by_key
        if len(by_key) >= self.MAX_KEYS:
            by_key.clear()
        by_key[hash(key)] = self._last

    def _learn(self, exit_depth: int, code: CodeType, seen: bool) -> None:
        if self._count >= self.MAX_EXITS:
            self._exits, self._count = {}, 0
        exits = dict(self._exits)  # a new dict: other threads may be iterating
        exits[exit_depth] = {**exits.get(exit_depth, {}), id(code): (code, seen)}
        self._exits = exits
        self._last = (exit_depth, code, seen)
        self._count += 1


def _site_above(exit_frame: FrameType) -> CallSite | None:
    """The call site, if the frame above a library exit is the application's."""
    caller = exit_frame.f_back
    if caller is not None:
        code = caller.f_code
        if _is_internal_file.get(code.co_filename) is False:
            return _site_at(caller, code)
    return None


def _find_in_parent_greenlet() -> CallSite | None:
    """Continue the walk in the greenlet that awaited the statement.

    With an ``AsyncEngine``, SQLAlchemy runs the sync machinery in a child
    greenlet whose stack ends at the greenlet's entry point; the user's ``await``
    is on the parent greenlet's stack.
    """
    greenlet_module = sys.modules.get("greenlet")
    if greenlet_module is None:
        return None
    current = greenlet_module.getcurrent()
    parent = getattr(current, "parent", None)
    while parent is not None:
        site = _first_outside(parent.gr_frame)
        if site is not None:
            return site
        parent = getattr(parent, "parent", None)
    return None


def format_call_site(site: CallSite | None) -> str | None:
    """``"path/to/file.py:42 in func"``, the path relative to the working directory."""
    if site is None:
        return None
    text = _formatted.get(site)
    if text is None:
        filename, line, function = site
        try:
            relative = os.path.relpath(filename)
            if not relative.startswith(".."):
                filename = relative
        except (ValueError, OSError):  # another drive on Windows; a deleted working directory
            pass
        text = f"{filename}:{line} in {function}"
        if len(_formatted) >= _MAX_CACHED:
            _formatted.clear()
        _formatted[site] = text
    return text


def split_call_site(text: str) -> tuple[str, int | None, str | None]:
    """``(path, line, function)`` from a formatted call site, for exporters."""
    location, _, function = text.rpartition(" in ")  # a path may hold " in ", a name not
    if not location:
        location, function = text, ""
    path, _, line = location.rpartition(":")
    if not path or not line.isdigit():
        return text, None, function or None
    return path, int(line), function or None
