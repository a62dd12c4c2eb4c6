"""
The guarded session classes.

A request's session is made of a generated subclass of its class whose
dict methods (every way to read or write its data) first check that the
session is used in its own request's context. Sessions are born of the
guarded class when the session interface builds them from its
``session_class`` (Flask's does); another session's class is switched when
its request is armed. A null session (no secret key) is left alone.

A session is in its own context when the current request context holds
it and is still pushed: a copy of the context
(``contextvars.copy_context()``) that runs after the request ended still
holds it, popped (CG102).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask.sessions import NullSession

from flask_ctxguard._core.classes import RECORD, SESSION, registry, subclass
from flask_ctxguard._core.flaskcompat import (
    is_pushed,
    request_ctx_var,
    session_of,
)
from flask_ctxguard._rules.access import NO_CONTEXT, report_access
from flask_ctxguard._rules.records import RequestRecord

if TYPE_CHECKING:
    from flask_ctxguard._guard.state import AppState

__all__ = [
    "CHECKED_SESSION_METHODS",
    "NULL_SESSIONS",
    "guard_session",
    "guarded_session_class",
]

_request_get = request_ctx_var.get
_set_attribute = object.__setattr__
#: Session classes never guarded: they hold no data and refuse writes.
NULL_SESSIONS = frozenset({NullSession})

# The session's dict API: every way to read or write its data. ``len()``
# and ``bool()`` are left to dict's C implementation: Flask calls them when
# saving the session, and they reveal no values.
CHECKED_SESSION_METHODS = (
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__iter__",
    "__setitem__",
    "clear",
    "copy",
    "get",
    "items",
    "keys",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "values",
)


def _session_used(session: Any) -> None:
    """*session* was used outside its own request context."""
    record = getattr(session, RECORD, None)
    if record is not None:
        # Frames: this one and the checked method.
        report_access(record, "session", "", 2)


_NO_DEFAULT: Any = object()


def _session_method(name: str, method: Callable[..., Any]) -> Any:
    """
    *method* of the session class, checked: one wrapper per signature, as
    packing arguments costs more than the check.
    """
    checked: Callable[..., Any]
    if name in {"clear", "copy", "items", "keys", "values", "popitem"} or (
        name == "__iter__"
    ):

        def checked_0(self: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if session_of(ctx) is not self or not is_pushed(ctx):
                _session_used(self)
            return method(self)

        checked = checked_0
    elif name in {"__contains__", "__delitem__", "__getitem__"}:

        def checked_1(self: Any, key: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if session_of(ctx) is not self or not is_pushed(ctx):
                _session_used(self)
            return method(self, key)

        checked = checked_1
    elif name == "__setitem__":

        def checked_2(self: Any, key: Any, value: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if session_of(ctx) is not self or not is_pushed(ctx):
                _session_used(self)
            return method(self, key, value)

        checked = checked_2
    elif name in {"get", "pop", "setdefault"}:

        def checked_default(
            self: Any, key: Any, default: Any = _NO_DEFAULT
        ) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if session_of(ctx) is not self or not is_pushed(ctx):
                _session_used(self)
            if default is _NO_DEFAULT:
                return method(self, key)
            return method(self, key, default)

        checked = checked_default
    else:

        def checked_any(self: Any, *args: Any, **kwargs: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if session_of(ctx) is not self or not is_pushed(ctx):
                _session_used(self)
            return method(self, *args, **kwargs)

        checked = checked_any
    checked.__name__ = name
    checked.__qualname__ = name
    checked.__doc__ = method.__doc__
    return checked


def guarded_session_class(base: type) -> type | None:
    """
    The guarded subclass of the session class *base* (cached); `None` if
    its instances cannot carry the guard's record (no ``__dict__``).
    """
    if registry.role(base) == SESSION:
        return base
    return registry.get_or_make(base, SESSION, _make_guarded_session_class)


def _make_guarded_session_class(base: type) -> type | None:
    if not base.__dictoffset__:
        # Instances need a __dict__ for the record; a session class
        # without one (all __slots__) is not guarded.
        return None
    namespace: dict[str, Any] = {RECORD: None}
    for name in CHECKED_SESSION_METHODS:
        method = getattr(base, name, None)
        if method is not None:
            namespace[name] = _session_method(name, method)
    return subclass(base, namespace)


def _decline_session(state: AppState, cls: type) -> None:
    state.reporter.declined(
        f"session class {cls.__module__}.{cls.__qualname__}",
        "its instances cannot carry the guard's record (no __dict__, or a"
        " class that cannot be switched); sessions of this class are not"
        " checked for CG102-CG104. Give the class a __dict__ (drop"
        " __slots__) to have them guarded.",
    )


def guard_session(
    state: AppState, session: Any, record: RequestRecord
) -> None:
    """
    Give *session*, of a class not born guarded, its request's *record*,
    switching its class to the guarded one.
    """
    base = type(session)
    cls = guarded_session_class(base)
    if cls is None:
        _decline_session(state, base)
        return
    try:
        if base is not cls:
            _set_attribute(session, "__class__", cls)
        _set_attribute(session, RECORD, record)
    except (TypeError, AttributeError):
        # A session class whose layout forbids the swap (a C type, slots):
        # the guard declines for sessions of this class.
        registry.decline(base, SESSION)
        _decline_session(state, base)
