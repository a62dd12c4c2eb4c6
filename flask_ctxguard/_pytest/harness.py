"""
The guard's side of a test harness: what the pytest plugin needs from the
guard, in one place.

- `AutoGuard` guards every Flask app that pushes a context or handles a
  request while it is active, without a change to the app's code, and
  remembers where each app context was pushed (for CG105's "pushed at").
- `report_leaked_contexts` reports (CG105) and optionally pops the
  contexts a test left pushed.
- `report_contextvars_left` reports (CG106) the ContextVars that requests
  of a test left set when the test ended, so that the test that leaked is
  blamed rather than the next one, and optionally restores them.

Only test harnesses use this module; nothing here runs in production.
"""

from __future__ import annotations

import contextvars
import threading
import weakref
from collections.abc import Callable, Container
from contextvars import Context, ContextVar
from typing import Any

from flask import Flask, appcontext_pushed, request_started

from flask_ctxguard._core.flaskcompat import (
    app_ctx_var,
    is_request_context,
    pushed_contexts,
    request_ctx_var,
)
from flask_ctxguard._core.violation import Violation
from flask_ctxguard._guard.extension import EXTENSION_KEY, CtxGuard
from flask_ctxguard._guard.lifecycle import arm_request
from flask_ctxguard._guard.state import AppState, state_of
from flask_ctxguard._reporting import sites as _sites
from flask_ctxguard._reporting.messages import (
    contextvar_hint,
    contextvar_left_by_test_message,
)
from flask_ctxguard._reporting.reporter import Reporter
from flask_ctxguard._rules.contextvar_leaks import LEFT_BEHIND, LeftBehind
from flask_ctxguard._rules.contextvar_names import stable_name
from flask_ctxguard._rules.pushed_contexts import (
    report_leaked_contexts as _report_leaked,
)
from flask_ctxguard._rules.structlog_binds import (
    bound_site,
    has_cleared,
    is_observed,
)

__all__ = [
    "AutoGuard",
    "LeftBehind",
    "adopt_left_behind",
    "left_behind",
    "pushed_context_ids",
    "report_contextvars_left",
    "report_leaked_contexts",
    "snapshot",
]


class AutoGuard:
    """
    Guards every Flask app that pushes a context or handles a request while
    active; activations nest.
    """

    def __init__(self) -> None:
        self.guard = CtxGuard()
        self.problems: list[str] = []
        self._problems_taken = 0
        #: Whether an app was guarded while active (its own guard or ours).
        self.guarded_any = False
        self._lock = threading.Lock()
        self._active = 0
        self._unguardable: weakref.WeakSet[Flask] = weakref.WeakSet()
        # Where each app context was pushed; weak, so contexts die freely.
        self._pushed_at: weakref.WeakKeyDictionary[Any, str] = (
            weakref.WeakKeyDictionary()
        )

    def activate(self) -> None:
        """Start guarding (again, if nested)."""
        with self._lock:
            self._active += 1
            if self._active > 1:
                return
        appcontext_pushed.connect(self._on_context_pushed, weak=False)
        request_started.connect(self._on_request_started, weak=False)

    def deactivate(self) -> None:
        """Undo one `activate`."""
        with self._lock:
            self._active -= 1
            if self._active > 0:
                return
        appcontext_pushed.disconnect(self._on_context_pushed)
        request_started.disconnect(self._on_request_started)

    def ensure_guarded(self, app: Flask) -> AppState | None:
        """*app*'s state, installing a guard in log mode if it has none."""
        state: AppState | None = app.extensions.get(EXTENSION_KEY)
        if state is None:
            if app in self._unguardable:
                return None
            try:
                state = self.guard._install(app, auto=True)
            except Exception as exc:  # noqa: BLE001 - never break the suite
                # A bad CTXGUARD_* value, or an app the guard cannot take:
                # said once per app, in the run's summary.
                self._unguardable.add(app)
                with self._lock:
                    self.problems.append(
                        f"app {app.name!r} not guarded: {exc}"
                    )
                return None
        if not self.guarded_any and state.settings.initial_mode != "off":
            self.guarded_any = True
        return state

    def take_problems(self) -> list[str]:
        """The problems said since the last call."""
        with self._lock:
            taken = self.problems[self._problems_taken :]
            self._problems_taken = len(self.problems)
        return taken

    def reporter_of(self, app: Flask) -> Reporter | None:
        """*app*'s reporter, installing a guard in log mode if it has none."""
        state = self.ensure_guarded(app)
        return None if state is None else state.reporter

    def pushed_at(self, ctx: Any) -> str | None:
        """Where *ctx* (or the app context it pushed) was pushed."""
        for each in (ctx, *_own_app_contexts(ctx)):
            try:
                site = self._pushed_at.get(each)
            except TypeError:  # pragma: no cover - not weakly referable
                site = None
            if site is not None:
                return site
        return None

    # Flask calls these from inside the app's own code: they must never
    # raise, or a test would fail because of the harness.

    def _on_context_pushed(self, sender: Flask, **_: Any) -> None:
        self.ensure_guarded(sender)
        ctx = app_ctx_var.get(None)
        if ctx is not None:
            # Only in test runs: a few frames walked per pushed context.
            site = _sites.capture_site(2)
            if site is not None:
                try:
                    self._pushed_at[ctx] = site
                except TypeError:  # pragma: no cover - a custom context
                    return

    def _on_request_started(self, sender: Flask, **_: Any) -> None:
        state = self.ensure_guarded(sender)
        if state is None or not state.auto:
            return
        if state.settings.mode != "off":
            arm_request(state)


def _own_app_contexts(ctx: Any) -> list[Any]:
    if not is_request_context(ctx):
        return []
    return [
        app_ctx
        for _, app_ctx in getattr(ctx, "_cv_tokens", ())
        if app_ctx is not None
    ]


def pushed_context_ids() -> set[int]:
    """The ids of the request and app contexts pushed right now."""
    return {id(ctx) for ctx in pushed_contexts()}


def report_leaked_contexts(
    auto: AutoGuard,
    known: Container[int],
    site: str,
    *,
    pop: bool,
) -> list[Violation]:
    """
    Report (CG105) the contexts pushed now whose ids are not in *known*,
    found at *site*; pop them too with *pop*.
    """
    leaked = [ctx for ctx in pushed_contexts() if id(ctx) not in known]
    found = _report_leaked(leaked, auto.reporter_of, site, auto.pushed_at)
    if pop:
        _pop_all(leaked)
    return found


def _pop_all(leaked: list[Any]) -> None:
    # Innermost first (request contexts, then app contexts); a request
    # context also pops the app context it pushed for itself. Only a
    # context that is on top can be popped.
    for ctx in leaked:
        var = request_ctx_var if is_request_context(ctx) else app_ctx_var
        if var.get(None) is ctx:
            try:
                ctx.pop()
            except Exception:  # noqa: BLE001 - pop the others
                continue


def left_behind() -> LeftBehind:
    """What requests left in ContextVars of the current context."""
    return dict(LEFT_BEHIND.get() or {})


def adopt_left_behind(since: LeftBehind) -> set[ContextVar[Any]]:
    """
    Take the ContextVars requests left set since *since* as set outside
    any request: never reported. For fixtures broader than a test.
    """
    now = left_behind()
    adopted = {
        var for var, entry in now.items() if since.get(var) is not entry
    }
    if adopted:
        LEFT_BEHIND.set(
            {v: e for v, e in now.items() if v not in adopted} or None
        )
    return adopted


def report_contextvars_left(
    start: LeftBehind,
    snapshot: Context,
    site: str,
    *,
    restore: bool,
    reported: Callable[[str, str], bool] = lambda subject, token: False,
) -> list[Violation]:
    """
    Report (CG106) the ContextVars that requests since *start* left set in
    the current context, found at *site* (the end of a test).

    A leak already reported for the same subject and origin request
    (*reported*) is not reported again. Either way the guard forgets it,
    so the next request is not blamed. With *restore*, each leaked
    ContextVar gets back the value it had in *snapshot*; one that had none
    cannot be unset and keeps its value (see docs/configuration.md), but
    structlog's are unbound as ``unbind_contextvars`` does.
    """
    now = left_behind()
    missing = object()
    found: list[Violation] = []
    leaked: list[ContextVar[Any]] = []
    for var, entry in now.items():
        if start.get(var) is entry:
            continue  # left before this test, or a fixture's
        value, origin = entry
        if var.get(missing) is not value:
            continue  # cleared or overwritten since
        if is_observed(var) and has_cleared(origin):
            # structlog's documented pattern: the request cleared the
            # context before it bound; the next one clears it too.
            continue
        leaked.append(var)
        name = stable_name(var)
        subject = f"ContextVar {name}"
        state = state_of(origin)
        if state.settings.mode == "off" or state.reporter.is_ignored(
            "CG106", subject
        ):
            continue
        tag = origin.tag()
        if reported(subject, tag.token):
            continue
        violation = state.reporter.build(
            "CG106",
            subject=subject,
            message=contextvar_left_by_test_message(name, tag),
            origin=tag,
            accessor=None,
            thread=threading.current_thread().name,
            origin_site=bound_site(origin, var) or _sites.during(tag),
            access_site=site,
            value=value,
            has_value=True,
            value_name=name,
            hint=contextvar_hint(name),
        )
        state.reporter.report(violation, raise_now=False)
        found.append(violation)
    if leaked:
        LEFT_BEHIND.set(
            {v: e for v, e in now.items() if v not in leaked} or None
        )
    if restore:
        for var in leaked:
            old = snapshot.get(var, missing)
            if old is not missing:
                var.set(old)
            elif is_observed(var):
                var.set(...)  # structlog's own mark of an unbound key
    return found


def snapshot() -> Context:
    """The current context, to restore ContextVars from later."""
    return contextvars.copy_context()
