"""ORM sessions opened and left open, from two class-level ``SessionEvents``.

A ``Session`` has no "opened" or "closed" event, and no closed state either:
``close()`` releases its connections and objects and leaves it ready for reuse.
What matters for a leak is what a session holds, so sqlwatch follows that:

- a session **opens** when its root transaction begins (the first query,
  ``add()`` or ``begin()`` after it was created or last released): the
  ``after_transaction_create`` event for a transaction without a parent;
- it is **closed** once it holds nothing: no transaction (so no connection),
  no objects in its identity map, nothing pending. ``close()`` ends the root
  transaction after expunging everything, so ``after_transaction_end`` sees
  that at once; a session that committed and was closed later (``close()``
  with no transaction emits no event) is seen released when a report is taken;
- it is **unclosed** if it still holds something when its scope ends (or, for
  the process-wide report, when the report is taken). A session the garbage
  collector took counts as closed: a connection it held shows up as a
  ``garbage_collected`` leak of the pool.

``AsyncSession`` is a ``Session`` underneath (``async_session.sync_session``), so
the same events see it. Sessions are held by weak reference only. The listeners
are installed while at least one engine is instrumented; they see every
session of the process, whatever engine it is bound to.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from sqlwatch._capture.call_sites import CallSite, CallSiteFinder, format_call_site
from sqlwatch._context import current_chain
from sqlwatch._guard import report_internal_error
from sqlwatch._pipeline import PIPELINE
from sqlwatch.records import SessionStats

if TYPE_CHECKING:
    from sqlwatch.scope import Scope

__all__ = ["SESSION_KEY", "SessionCounts", "SessionListener"]

SESSION_KEY = "sessions"
"""``scope.extensions[SESSION_KEY]`` is the scope's ``SessionCounts``."""
MAX_REPORTED_SITES = 20
_SWEEP_AT = 1_024


def _holds_nothing(session: Session) -> bool:
    return not (
        session.in_transaction() or len(session.identity_map) or session.new or session.deleted
    )


class _Tracked:
    """One session that opened and has not been seen released."""

    __slots__ = ("counts", "ref", "site")

    def __init__(self, session: Session, site: CallSite | None) -> None:
        self.ref = weakref.ref(session)
        self.site = site
        self.counts: list[SessionCounts] = []


class SessionCounts:
    """One scope's sessions. Guarded by the listener's lock."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self.call_sites = scope.options.capture_call_sites
        self.opened = 0
        self.closed = 0
        self.live: dict[int, _Tracked] = {}
        """Sessions opened in this scope, not yet seen released (by ``id``)."""
        self.final: SessionStats | None = None


class SessionListener:
    """The class-level listeners, shared by every instrumented engine."""

    def __init__(self) -> None:
        self.installed = False
        self.lock = threading.RLock()
        self.tracked: dict[int, _Tracked] = {}
        self._sweep_at = _SWEEP_AT
        self._sites = CallSiteFinder()

    def install(self) -> None:
        if not self.installed:
            event.listen(Session, "after_transaction_create", self._on_create)
            event.listen(Session, "after_transaction_end", self._on_end)
            self.installed = True

    def remove(self) -> None:
        if self.installed:
            for identifier, fn in (
                ("after_transaction_create", self._on_create),
                ("after_transaction_end", self._on_end),
            ):
                if event.contains(Session, identifier, fn):
                    event.remove(Session, identifier, fn)
            self.installed = False
        with self.lock:
            self.tracked.clear()

    # -- events -----------------------------------------------------------------

    def _on_create(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return  # a savepoint or subtransaction: the session is already open
        try:
            self._opened(session)
        except Exception as exc:
            report_internal_error("session listener", exc)

    def _on_end(self, session: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is not None:
            return
        try:
            tracked = self.tracked.get(id(session))
            if tracked is not None and tracked.ref() is session and _holds_nothing(session):
                with self.lock:
                    self._release(id(session), tracked)
        except Exception as exc:
            report_internal_error("session listener", exc)

    def _opened(self, session: Session) -> None:
        chain = current_chain.get()
        targets: list[SessionCounts] = []
        wants_site = chain.call_sites
        process = PIPELINE.process_scope
        for scope in (process, *chain.scopes):
            if scope is None or scope.closed:
                continue
            counts = scope.extensions.get(SESSION_KEY)
            if counts is not None:
                targets.append(counts)
                wants_site = wants_site or counts.call_sites
        if not targets:
            return
        key = id(session)
        tracked = self.tracked.get(key)
        if tracked is not None and tracked.ref() is session:
            for counts in targets:
                if counts not in tracked.counts:
                    break
            else:
                return  # open in every scope already: a new transaction after a commit
            site = tracked.site
        elif wants_site:
            site = self._sites.find(2)
        else:
            site = None
        with self.lock:
            tracked = self.tracked.get(key)
            if tracked is not None and tracked.ref() is not session:
                # A collected session whose ``id`` the new one reuses: it counts
                # as closed, rather than being overwritten (and lost) here.
                self._release(key, tracked)
                tracked = None
            if tracked is None:
                tracked = self.tracked[key] = _Tracked(session, site)
            for counts in targets:
                if counts not in tracked.counts:
                    tracked.counts.append(counts)
                    previous = counts.live.get(key)
                    if previous is None or previous.ref() is not session:
                        if previous is not None:  # collected, its ``id`` reused
                            counts.closed += 1
                        counts.opened += 1
                    # else: counted open before the listeners were removed and
                    # installed again (``remove()`` forgets ``tracked``): once.
                    counts.live[key] = tracked
            if len(self.tracked) >= self._sweep_at:
                self._sweep()

    def _release(self, key: int, tracked: _Tracked) -> None:
        """Lock held."""
        if self.tracked.get(key) is tracked:
            del self.tracked[key]
        for counts in tracked.counts:
            if counts.live.get(key) is tracked:
                del counts.live[key]
                counts.closed += 1

    def _sweep(self) -> None:
        """Lock held. Forget sessions that are gone or released without an event."""
        for key, tracked in list(self.tracked.items()):
            session = tracked.ref()
            if session is None or _holds_nothing(session):
                self._release(key, tracked)
        self._sweep_at = max(_SWEEP_AT, 2 * len(self.tracked))

    # -- reports ------------------------------------------------------------------

    def stats(self, counts: SessionCounts, *, final: bool) -> SessionStats:
        if counts.final is not None:
            return counts.final
        with self.lock:
            unclosed_sites: list[str] = []
            unclosed = 0
            for key, tracked in list(counts.live.items()):
                session = tracked.ref()
                if session is None or _holds_nothing(session):
                    self._release(key, tracked)
                    continue
                unclosed += 1
                text = format_call_site(tracked.site)
                if text is not None and len(unclosed_sites) < MAX_REPORTED_SITES:
                    unclosed_sites.append(text)
            stats = SessionStats(
                opened=counts.opened,
                closed=counts.closed,
                unclosed=unclosed,
                unclosed_call_sites=tuple(unclosed_sites),
            )
            if final:
                counts.final = stats
                for key, tracked in list(counts.live.items()):
                    if counts in tracked.counts:
                        tracked.counts.remove(counts)
                    if not tracked.counts and self.tracked.get(key) is tracked:
                        del self.tracked[key]
                counts.live.clear()
            return stats
