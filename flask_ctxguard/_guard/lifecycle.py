"""
Arming and retiring a request: the per-request hot path.

A request is armed when its context is pushed and its session opened: the
guarded session interface's ``open_session`` creates a `RequestRecord` and
hands it to the request, its session and its ``g``. It is retired in its
class's ``close()``, which Flask calls when the context is popped: the
record is marked retired, the request's class is switched if something
still holds it, and the ContextVars are compared with those it started
with (CG106). Every request pays for both, so they are written inline,
with the rare cases out of line; any failure is contained here and
reported once as an internal error, never breaking the request.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from contextvars import copy_context
from random import random
from typing import Any

from flask_ctxguard._core.classes import (
    RECORD,
    SAMPLING_SESSION_INTERFACE,
    registry,
)
from flask_ctxguard._core.flaskcompat import (
    G_REFS_AT_CLOSE,
    MERGED_CONTEXTS,
    POP_UNLINKS_REQUEST,
    REFS_AT_CLOSE,
    app_ctx_var,
    request_ctx_var,
    request_of,
    session_of,
)
from flask_ctxguard._guard.g import g_outlives, own_g
from flask_ctxguard._guard.request import (
    late_request_class,
    retired_request_class,
)
from flask_ctxguard._guard.session import (
    NULL_SESSIONS,
    guard_session,
)
from flask_ctxguard._guard.shared_g import watch_shared_g
from flask_ctxguard._guard.state import EXTENSION_KEY, AppState, state_of
from flask_ctxguard._rules.access import NO_CONTEXT
from flask_ctxguard._rules.contextvar_leaks import (
    LEFT_BEHIND,
    detect_leaks,
    detect_unsampled_leaks,
)
from flask_ctxguard._rules.records import ARMED, RequestRecord
from flask_ctxguard._rules.structlog_binds import forget_outside

__all__ = [
    "REFS_AT_CLOSE",
    "arm",
    "arm_request",
    "install_fallback",
    "retiring_close",
]

_request_get = request_ctx_var.get
_app_get = app_ctx_var.get
_left_behind = LEFT_BEHIND.get
_refcount = sys.getrefcount
_set_attribute = object.__setattr__
# How many references a request has when Flask closes it, if nothing else
# keeps it (see REFS_AT_CLOSE). A request with more outlives its context,
# and its class is switched to the retired one; one with no more is freed
# when its context is popped. Learnt downwards: a path with fewer
# references lowers it (then more requests are switched than need be,
# never fewer).
_refs_at_close = REFS_AT_CLOSE
_refs_lock = threading.Lock()
# The name of the before_request function install_fallback adds.
_FALLBACK = "ctxguard_arm_request"


# -- arming -------------------------------------------------------------------


def arm_request(state: AppState) -> None:
    """
    Start guarding the current request of *state*'s app after its session
    was opened (when the session interface did not). Never raises: a
    failure is reported once and the request goes on unguarded.
    """
    ctx = _request_get(None)
    request = request_of(ctx) if ctx is not None else None
    if request is None:
        return
    rate = state.settings.sample_rate
    if rate < 1 and random() >= rate:
        return  # not sampled
    try:
        arm(state, ctx, request, session_of(ctx))
    except Exception as exc:  # noqa: BLE001 - never break a request
        state.reporter.internal_error("starting to guard a request", exc)


def arm(state: AppState, ctx: Any, request: Any, session: Any) -> None:
    """
    Guard *request*, just pushed with its context *ctx*, and its *session*
    (`None`: none, or not opened yet) and ``g``, for *state*'s app.

    Runs on every request: each line here is paid for by every request.
    """
    try:
        if request._ctxguard_record is not None:
            return  # already armed: the same request pushed again
    except AttributeError:
        # app.request_class was replaced after init_app, or the pytest
        # plugin found the app after this request was created.
        _set_attribute(
            request,
            "__class__",
            late_request_class(type(request), retire=retiring_close),
        )
    record = RequestRecord(state, id(ctx), request.method, request.path)
    request._ctxguard_record = record
    # A null session (no secret key) holds no data and refuses writes:
    # leaving it alone keeps Flask's exact-type checks on it fast.
    if session is not None:
        if type(session) is state.session_class:
            # Born guarded. Not through the class's own __setattr__, which
            # may store into the session's data.
            _set_attribute(session, RECORD, record)
        elif type(session) not in NULL_SESSIONS:
            guard_session(state, session, record)
    # The app context this request pushed, and so owns the g of; None if
    # it runs in one pushed before it, whose g it shares: up to Flask 3.1,
    # the one pushed with the request context's last token; from 3.2, the
    # request's context is its app context.
    app_ctx = ctx if MERGED_CONTEXTS else ctx._cv_tokens[-1][1]
    if app_ctx is None:
        app_ctx = _app_get(None)
        if app_ctx is not None:
            watch_shared_g(app_ctx.g, state)
    else:
        g = app_ctx.g
        if type(g) is state.g_class:
            # Into the slot, whatever the g class's own __setattr__ does.
            _set_attribute(g, RECORD, record)
        else:
            own_g(g, record)


def install_fallback(app: Any, state: AppState) -> None:
    """
    Arm *app*'s requests from a ``before_request`` function too, for those
    its session interface does not arm: an app whose ``session_interface``
    or ``request_class`` was replaced after ``init_app``, or a Flask that
    opens sessions lazily. Once a request shows arming at work, the
    function removes itself and later requests pay nothing for it; a
    guarded request that ends unarmed installs it again.
    """
    with state.hooks_lock:
        funcs = app.before_request_funcs.get(None, [])
        if any(getattr(f, "__name__", "") == _FALLBACK for f in funcs):
            return
        app.before_request_funcs[None] = [_fallback(app, state), *funcs]


def _fallback(app: Any, state: AppState) -> Callable[[], None]:
    """The ``before_request`` function `install_fallback` adds."""

    def ctxguard_arm_request() -> None:
        ctx = _request_get(None)
        request = request_of(ctx) if ctx is not None else None
        if getattr(request, RECORD, None) is not None or (
            registry.role(type(app.session_interface))
            == SAMPLING_SESSION_INTERFACE
        ):
            # Armed when its session opened (or left unsampled by the
            # sampling interface, which decides): not needed. Rebind the
            # list rather than mutate it: Flask is iterating over it.
            # An empty list left behind would still cost every request.
            with state.hooks_lock:
                funcs = app.before_request_funcs.get(None, [])
                kept = [f for f in funcs if f is not ctxguard_arm_request]
                if kept:
                    app.before_request_funcs[None] = kept
                else:
                    app.before_request_funcs.pop(None, None)
            return
        arm_request(state)

    return ctxguard_arm_request


def _unarmed(request: Any) -> RequestRecord | None:
    """
    *request*, of a guarded class, ends without having been armed (its
    session was not opened through the guard's interface: replaced, or
    opened lazily). Arm it now, so that it retires like any other, and
    its app's next requests from ``before_request``. Its record, or `None`
    if its app is not one the guard arms.
    """
    ctx = _request_get(None)
    if ctx is None or request_of(ctx) is not request:
        return None
    app = ctx.app
    state = app.extensions.get(EXTENSION_KEY)
    if (
        not isinstance(state, AppState)
        or state.auto  # the pytest plugin arms those
        or state.settings.mode == "off"
    ):
        return None
    try:
        install_fallback(app, state)
        arm(state, ctx, request, session_of(ctx))
    except Exception as exc:  # noqa: BLE001 - never break a request
        state.reporter.internal_error("starting to guard a request", exc)
        return None
    record: RequestRecord | None = getattr(request, RECORD, None)
    if record is not None:
        record.forget_snapshot()  # it started now: nothing to compare
    return record


# -- retiring -----------------------------------------------------------------


def retiring_close(base_close: Callable[..., Any]) -> Callable[[Any], None]:
    """
    The ``close()`` of a guarded request class over *base_close*, its
    base class's: after closing, it retires the request (unless a copy of
    its context popped in another thread while the request goes on).

    Flask closes every request when its context is popped: this is the
    retiring half of the per-request hot path, written inline.
    """

    def close(self: Any) -> None:
        try:
            base_close(self)
        finally:
            record = self._ctxguard_record
            if record is None:
                record = _unarmed(self)
            if record is not None and record.phase == ARMED:
                # (id(None) is no context's.)
                if id(_request_get(None)) != record.ctx_id:
                    # A copy of its context (copy_current_request_context)
                    # popped in another thread: the request goes on, but
                    # its environ may no longer refer to it (Flask up to
                    # 3.1 clears it).
                    record.unlink(POP_UNLINKS_REQUEST)
                else:
                    # Retire it: switch its class, check its ContextVars.
                    # Inline but for the record's own change: every
                    # request ends here, and a Python call is a good part
                    # of what the guard costs.
                    rule = self.url_rule
                    endpoint = None if rule is None else rule.endpoint
                    snapshot = record.retire(endpoint)
                    if endpoint not in record.app_state.sites:
                        # Once per endpoint (None: no route, no view): the
                        # view's site outlives the app, for reports about
                        # objects that do.
                        record.app_state.view_site(endpoint)
                    # Switch its class only if it outlives its context:
                    # switching costs about as much as all the rest.
                    refs = _refcount(self) + record.unlinked
                    if refs != _refs_at_close:
                        _outlives(self, record, refs)
                    # Its g too: one held by more than its context is
                    # switched to its escaped class, whose reads are
                    # checked (the g's own class reads at full speed).
                    g = _app_get(NO_CONTEXT).g
                    if _refcount(g) != G_REFS_AT_CLOSE:
                        g_outlives(g, record)
                    end = copy_context()
                    # The common case, compared in C: no ContextVar
                    # changed, and none is left over from before. The
                    # comparison calls the __eq__ of values that changed,
                    # which may raise (NumPy arrays, SQLAlchemy clauses):
                    # then they are diffed by identity.
                    try:
                        same = snapshot == end
                    except Exception:  # noqa: BLE001 - an app's __eq__
                        same = False
                    if (
                        not (same and _left_behind(None) is None)
                        or record.app_state.sampling
                    ):
                        _check_contextvars(self, record, snapshot, end)

    close.__doc__ = base_close.__doc__
    return close


def _outlives(request: Any, record: RequestRecord, refs: int) -> None:
    """
    *request*, which has ended, has *refs* references (see
    `_flaskcompat.REFS_AT_CLOSE`): switch it to its retired class if
    more than Flask's.
    """
    global _refs_at_close
    if refs < _refs_at_close:
        with _refs_lock:
            # Learnt under a lock: two requests lowering it at once must
            # leave the lower of their counts, never the higher; one that
            # now has more than the lowered count is switched below.
            if refs <= _refs_at_close:
                _refs_at_close = refs
                return
    try:
        retired = retired_request_class(type(request))
        _set_attribute(request, "__class__", retired)
    except Exception as exc:  # noqa: BLE001 - never break a request
        record.app_state.reporter.internal_error("retiring a request", exc)


def _check_contextvars(
    request: Any, record: RequestRecord, snapshot: Any, end: Any
) -> None:
    """
    Report the ContextVars (CG106) that *request*, which has just ended,
    found set by an earlier request and never changed.
    """
    if snapshot is None:
        return
    state = state_of(record)
    found: dict[bool, set[int]] = {}

    def own(fresh: bool = False) -> set[int]:
        # Worked out once (and once fresh), only if a comparison needs it.
        if fresh not in found:
            found[fresh] = _own_ids(request, state, fresh)
        return found[fresh]

    try:
        leaks = detect_leaks(snapshot, record, own, end)
        if state.sampling:
            known = {leak[0] for leak in leaks}
            leaks += detect_unsampled_leaks(snapshot, end, record, own, known)
        # structlog binds made before this request: taken into account.
        forget_outside()
    except Exception as exc:  # noqa: BLE001 - never break the request
        state.reporter.internal_error("comparing ContextVars", exc)
        return
    if leaks:
        state.report_contextvar_leaks(record, leaks)


def _own_ids(request: Any, state: AppState, fresh: bool) -> set[int]:
    """
    The ids of values the request could have set itself: its environ and
    URL values, and the objects the code that runs for its endpoint can
    name (*fresh*: walked again, not cached).
    """
    attributes = request.__dict__
    values = list(attributes.get("environ", {}).values())
    values.extend((attributes.get("view_args") or {}).values())
    ids = {id(value) for value in values}
    rule = attributes.get("url_rule")
    if rule is not None:
        ids.update((id(rule.endpoint), id(rule.rule)))
    ids |= state.request_code_ids(
        rule.endpoint if rule is not None else None,
        attributes.get("blueprints") or _blueprints_of(request),
        fresh=fresh,
    )
    return ids


def _blueprints_of(request: Any) -> tuple[str, ...]:
    try:
        return tuple(object.__getattribute__(request, "blueprints"))
    except Exception:  # noqa: BLE001 - a custom request class's property
        return ()
