"""
The guarded session interface: where each request is armed.

Flask opens the session of every request context it pushes, right after
the context becomes current: the cheapest moment to start guarding. The
guard installs a copy of the app's session interface, of a subclass of its
own class, whose ``open_session`` arms the request (`lifecycle.arm`); with
``CTXGUARD_SAMPLE_RATE`` below 1, only a random share of requests.
"""

from __future__ import annotations

import contextlib
import copy
from random import random
from typing import Any

from flask_ctxguard._core.classes import (
    SAMPLING_SESSION_INTERFACE,
    SESSION_INTERFACE,
    method,
    registry,
)
from flask_ctxguard._core.flaskcompat import request_ctx_var, request_of
from flask_ctxguard._guard.g import late_g_class
from flask_ctxguard._guard.lifecycle import arm, retiring_close
from flask_ctxguard._guard.request import late_request_class
from flask_ctxguard._guard.session import (
    NULL_SESSIONS,
    guarded_session_class,
)
from flask_ctxguard._guard.state import EXTENSION_KEY, AppState
from flask_ctxguard._rules.access import NO_CONTEXT

__all__ = [
    "guarded_session_interface",
    "is_guarded_session_interface",
    "prepare_sampling",
]

_request_get = request_ctx_var.get
# The sample rate of a sampling interface copy, in its __dict__.
_RATE = "_ctxguard_sample_rate"


def is_guarded_session_interface(interface: Any) -> bool:
    """Whether *interface* is one `guarded_session_interface` made."""
    return registry.role(type(interface)) in (
        SESSION_INTERFACE,
        SAMPLING_SESSION_INTERFACE,
    )


def guarded_session_interface(
    interface: Any, *, sample_rate: float = 1.0
) -> Any:
    """
    A copy of the app's session *interface* whose ``open_session`` arms
    the request.

    Flask opens the session of every request context it pushes, right
    after the context becomes current: the cheapest moment to start
    guarding (a ``before_request`` function goes through Flask's
    ``ensure_sync`` on every request). The copy is of a subclass of the
    interface's own class, so it behaves exactly like it.

    With a *sample_rate* below 1, it guards that share of requests, picked
    at random, and leaves the others to Flask alone: an unsampled request
    costs the interface one call and one random number.
    """
    base = type(interface)
    if is_guarded_session_interface(interface):
        return interface
    sampling = sample_rate < 1
    cls = registry.get_or_make(
        base,
        SAMPLING_SESSION_INTERFACE if sampling else SESSION_INTERFACE,
        lambda base: _make_guarded_session_interface(base, sampling=sampling),
    )
    guarded = copy.copy(interface)
    object.__setattr__(guarded, "__class__", cls)
    if sampling:
        # The sessions stay Flask's: a sampled one is switched when its
        # request is armed.
        object.__setattr__(guarded, _RATE, sample_rate)
        return guarded
    # Sessions born guarded: an interface that builds its sessions from
    # `session_class` (Flask's own does) then needs no class switch per
    # request.
    session_class = getattr(interface, "session_class", None)
    if isinstance(session_class, type) and session_class not in NULL_SESSIONS:
        guarded_class = guarded_session_class(session_class)
        if guarded_class is not None:
            with contextlib.suppress(AttributeError, TypeError):
                guarded.session_class = guarded_class
    return guarded


def prepare_sampling(app: Any, state: AppState) -> None:
    """
    Make the classes a sampled request of *app*, its session and its
    ``g`` are switched to now, rather than during the first sampled
    request, and keep them on *state* for as long as the app. Never
    raises.
    """
    try:
        made: list[type | None] = [
            late_request_class(app.request_class, retire=retiring_close),
            late_g_class(app.app_ctx_globals_class),
        ]
        session_class = getattr(app.session_interface, "session_class", None)
        if isinstance(session_class, type):
            made.append(guarded_session_class(session_class))
        state.keep_sampled_classes([cls for cls in made if cls is not None])
    except Exception as exc:  # noqa: BLE001 - they are made when needed
        state.reporter.internal_error("preparing to sample", exc)


def _make_guarded_session_interface(base: type, *, sampling: bool) -> type:
    base_open = method(base, "open_session")

    def open_session(self: Any, app: Any, request: Any) -> Any:
        session = base_open(self, app, request)
        # Arm the request whose context is being pushed (not a session
        # opened by hand, as session_transaction() does).
        ctx = _request_get(NO_CONTEXT)
        if request_of(ctx) is request:
            state = app.extensions.get(EXTENSION_KEY)
            if state is not None:
                try:
                    arm(state, ctx, request, session)
                except Exception as exc:  # noqa: BLE001 - contain
                    state.reporter.internal_error(
                        "starting to guard a request", exc
                    )
        return session

    def open_sampled_session(self: Any, app: Any, request: Any) -> Any:
        # The decision is all an unsampled request pays for.
        if random() >= self.__dict__[_RATE]:
            return base_open(self, app, request)
        return open_session(self, app, request)

    chosen = open_sampled_session if sampling else open_session
    chosen.__doc__ = base_open.__doc__
    # No __slots__: session interfaces are plain classes whose instances
    # carry a __dict__ (copied).
    return type(
        base.__name__,
        (base,),
        {
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
            "__doc__": base.__doc__,
            "open_session": chosen,
        },
    )
