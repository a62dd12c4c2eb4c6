"""
Where the CG106 walk starts: the code that runs for a request of an app.

`request_functions` lists, for one endpoint, the view, the app's and its
blueprints' URL value preprocessors, ``before_request``,
``after_request`` and ``teardown_request`` functions, the app's
``wsgi_app`` (a middleware installed there), the receivers of Flask's
per-request signals, and the callbacks the app registered with its
extensions (Flask-Login's ``user_loader`` and ``request_loader``, which
hand out the ``current_user`` a ``before_request`` sets a ContextVar
from). `cg106_walk.reachable_ids` walks their code.
"""

from __future__ import annotations

import functools
import types
from typing import Any

import flask

__all__ = ["extension_callbacks", "request_functions"]

_REQUEST_SIGNALS = (
    flask.signals.appcontext_pushed,
    flask.signals.request_started,
    flask.signals.request_finished,
    flask.signals.request_tearing_down,
    flask.signals.appcontext_tearing_down,
)

# Extension objects the app holds outside app.extensions.
_EXTENSION_ATTRIBUTES = ("login_manager",)
# At most this many callbacks are taken from one extension object.
_MAX_CALLBACKS = 64


def request_functions(
    app: flask.Flask, endpoint: str | None, blueprints: tuple[str, ...]
) -> list[Any]:
    """The code that runs for a request of *app* to *endpoint*."""
    functions: list[Any] = []
    view = app.view_functions.get(endpoint) if endpoint else None
    if view is not None:
        functions.append(view)
    for name in (None, *blueprints):
        for hooks in (
            app.url_value_preprocessors,
            app.before_request_funcs,
            app.after_request_funcs,
            app.teardown_request_funcs,
        ):
            functions.extend(hooks.get(name, ()))
    # Code that also runs for every request: a WSGI middleware installed
    # as app.wsgi_app, receivers of Flask's signals, and what the app's
    # extensions call back.
    functions.append(app.wsgi_app)
    functions.extend(_signal_receivers(app))
    functions.extend(extension_callbacks(app))
    return functions


def _signal_receivers(app: flask.Flask) -> list[Any]:
    """The receivers of Flask's per-request signals for *app*."""
    found: list[Any] = []
    for signal in _REQUEST_SIGNALS:
        try:
            found.extend(signal.receivers_for(app))
        except Exception:  # noqa: BLE001 - a receiver gone meanwhile
            continue
    return found


def extension_callbacks(app: flask.Flask) -> list[Any]:
    """
    The functions *app*'s extensions hold in their own state: callbacks
    the app registered (Flask-Login's ``_user_callback`` and
    ``_request_callback``), read without running any of the extensions'
    code. The walk skips those of libraries (their module says so).
    """
    holders: list[object] = []
    for name in _EXTENSION_ATTRIBUTES:
        holder = _instance_dict(app).get(name)
        if holder is not None:
            holders.append(holder)
    extensions = _instance_dict(app).get("extensions")
    if type(extensions) is dict:
        holders.extend(list(extensions.values()))
    found: list[Any] = []
    seen: set[int] = set()
    for holder in holders:
        if id(holder) in seen:
            continue
        seen.add(id(holder))
        state = _instance_dict(holder)
        callbacks = [
            value for value in list(state.values()) if _is_callback(value)
        ]
        found.extend(callbacks[:_MAX_CALLBACKS])
    return found


def _is_callback(value: object) -> bool:
    """
    Whether *value*, held by an extension, is code the app may have
    registered: a function, a bound method, a ``functools.partial`` or an
    ``lru_cache`` wrapper (judged by the real type: nothing runs).
    """
    kind = type(value)
    return (
        issubclass(kind, types.FunctionType | types.MethodType)
        or issubclass(kind, functools.partial)
        or hasattr(kind, "cache_info")
    )


def _instance_dict(obj: object) -> dict[str, Any]:
    """*obj*'s own ``__dict__`` (empty if none), through no property."""
    try:
        found = object.__getattribute__(obj, "__dict__")
    except Exception:  # noqa: BLE001 - no __dict__, or a hostile object
        return {}
    return found if type(found) is dict else {}
