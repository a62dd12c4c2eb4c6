"""
What a request does to structlog's context: the binds CG106 observes.

structlog keeps each key of its context-local context in a ContextVar of
its own, named ``structlog_<key>``, in the module dict
``structlog.contextvars._CONTEXT_VARS``. ``bind_contextvars``,
``reset_contextvars`` and ``unbind_contextvars`` (and
``bound_contextvars``, which calls them) look that dict up by name, at
call time, on every version from 21.1 to 26.1; ``clear_contextvars``
instead sets every ``structlog_`` variable of ``contextvars.copy_context()``
to ``...``, looking ``contextvars`` up in the module's globals, also at
call time. So replacing the dict by one that notes its lookups, and the
module's ``contextvars`` by a copy whose ``copy_context`` notes a call
from ``clear_contextvars``, observes every call path, including functions
an app imported by name before the guard existed
(``from structlog.contextvars import bind_contextvars``).

Each note goes on the record of the request current in the calling
context, with the first line of the user's code above the call (rendered
only when a report needs it): a variable the request bound, unbound or
reset, or any after it cleared, holds the request's own value, even if
it is the very object the previous request left (``ContextVar.set``
with it leaves no trace in the context). A note made outside any request
(a WSGI middleware binding before Flask pushes the context) is kept in a
ContextVar of our own until the next request ends; one made in a request
the guard does not guard (sampling) is not kept.

Cost: each bound key and each clear pays one Python call on top of
structlog's own (the current request, and the first frame outside
structlog, the guard and contextlib: about 1 µs on CPython 3.11); a log
call through ``merge_contextvars`` pays one small Python call (about
0.2 µs). Requests that do not touch structlog pay nothing.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import types
from contextvars import ContextVar
from typing import Any

import structlog.contextvars

from flask_ctxguard._core.classes import RECORD
from flask_ctxguard._core.flaskcompat import request_ctx_var, request_of
from flask_ctxguard._reporting import sites as _sites
from flask_ctxguard._rules.records import RequestRecord

__all__ = [
    "BOUND_OUTSIDE",
    "CLEARED",
    "bound_site",
    "forget_outside",
    "has_cleared",
    "is_observed",
    "observe_structlog",
    "touched",
]

#: The key of a ``clear_contextvars()`` call in a record's ``bound``.
CLEARED: Any = object()

_request_get = request_ctx_var.get
_getframe = sys._getframe
_copy_context = contextvars.copy_context

# What structlog variables were bound, unbound or reset in this context
# while no request was current (a middleware around the app, a test):
# taken as the next request's own, then forgotten.
_outside: ContextVar[frozenset[object] | None] = ContextVar(
    "flask_ctxguard.bound_outside", default=None
)
#: The guard's own variable of those notes: never request data.
BOUND_OUTSIDE = _outside

# Frames between the app's line and the note: structlog's own, the
# guard's, and contextlib's (bound_contextvars is a context manager).
_NOT_THE_APP = frozenset(("contextlib", "flask_ctxguard", "structlog"))

_install_lock = threading.Lock()
# The dict that replaced structlog's, once installed.
_observed: dict[str, ContextVar[Any]] | None = None
# The code of structlog's clear_contextvars, whose copy_context() calls
# are clears.
_clear_code: types.CodeType | None = None


def _note(key: object) -> None:
    """The current request (or none) bound, unbound or reset *key*."""
    ctx = _request_get(None)
    request = None if ctx is None else request_of(ctx)
    if request is None:
        # No request: a middleware before Flask pushes one, a script.
        before = _outside.get()
        if before is None or key not in before:
            _outside.set((before or frozenset()) | {key})
        return
    record = getattr(request, RECORD, None)
    if type(record) is not RequestRecord:
        # A request the guard does not guard (not sampled): what it
        # leaves is judged by the next guarded request.
        return
    record.note_bind(key, _sites.calling_line(2, _NOT_THE_APP))


class _ObservedVars(dict[str, ContextVar[Any]]):
    """
    structlog's ``_CONTEXT_VARS``: each lookup of a variable by key (a
    bind, unbind or reset of it) is noted for the current request.
    """

    __slots__ = ()

    # try/except rather than contextlib.suppress: this runs on every
    # bind, and suppress costs a few hundred nanoseconds more.

    def __getitem__(self, key: str) -> ContextVar[Any]:
        var = dict.__getitem__(self, key)
        try:  # noqa: SIM105 - see above
            _note(var)
        except Exception:  # noqa: BLE001 - never break a log call
            pass
        return var

    def __setitem__(self, key: str, var: ContextVar[Any]) -> None:
        # A key bound for the first time in the process: bound next.
        dict.__setitem__(self, key, var)
        try:  # noqa: SIM105 - see above
            _note(var)
        except Exception:  # noqa: BLE001 - never break a log call
            pass


def _observed_copy_context() -> contextvars.Context:
    """``contextvars.copy_context``, noting a call from a clear."""
    if _getframe(1).f_code is _clear_code:
        try:  # noqa: SIM105 - as in _ObservedVars
            _note(CLEARED)
        except Exception:  # noqa: BLE001 - never break a log call
            pass
    return _copy_context()


class _ContextvarsModule(types.ModuleType):
    """The ``contextvars`` module as structlog's functions see it."""


def _is_installed() -> bool:
    return _observed is not None


def observe_structlog() -> bool:
    """
    Observe structlog's binds, unbinds, resets and clears from now on, in
    this process. Idempotent and thread-safe; returns whether structlog's
    functions are observed (`False`: a structlog whose ``contextvars``
    module is not laid out as expected, left alone).
    """
    global _observed, _clear_code
    if _is_installed():
        return True
    module = structlog.contextvars
    with _install_lock:
        if _is_installed():  # by another thread meanwhile
            return True
        current = getattr(module, "_CONTEXT_VARS", None)
        clear = getattr(module, "clear_contextvars", None)
        code = getattr(clear, "__code__", None)
        if (
            type(current) is not dict
            or getattr(module, "contextvars", None) is not contextvars
            or not isinstance(code, types.CodeType)
            or "copy_context" not in code.co_names
        ):
            return False
        observed = _ObservedVars(current)
        proxy = _ContextvarsModule(contextvars.__name__, contextvars.__doc__)
        proxy.__dict__.update(vars(contextvars))
        proxy.copy_context = _observed_copy_context  # type: ignore[attr-defined]
        _clear_code = code
        # Each of structlog's functions looks both names up when called:
        # from here on, every call goes through them. (A variable another
        # thread adds to the old dict in between is copied just after.)
        module._CONTEXT_VARS = observed
        module.contextvars = proxy  # type: ignore[attr-defined]
        for key, var in list(current.items()):
            dict.setdefault(observed, key, var)
        _observed = observed
        return True


def is_observed(var: ContextVar[Any]) -> bool:
    """Whether *var* is structlog's, and its binds are observed."""
    observed = _observed
    return observed is not None and dict.get(observed, var.name) is var


def touched(record: RequestRecord, var: ContextVar[Any]) -> bool:
    """
    Whether *record*'s request bound, unbound, reset or cleared the
    structlog variable *var* (or it was before any request, in this
    context, since the last request ended).
    """
    bound = getattr(record, "bound", None)
    if bound is not None and (var in bound or CLEARED in bound):
        return True
    before = _outside.get()
    return before is not None and (var in before or CLEARED in before)


def has_cleared(record: RequestRecord) -> bool:
    """Whether *record*'s request called ``clear_contextvars()``."""
    bound = getattr(record, "bound", None)
    return bound is not None and CLEARED in bound


def forget_outside() -> None:
    """Forget what was bound outside requests: a request has ended."""
    if _outside.get() is not None:
        _outside.set(None)


def bound_site(
    record: RequestRecord | None, var: ContextVar[Any]
) -> str | None:
    """
    The user's line that last bound *var* during *record*'s request, as
    ``"app.py:42 in bind_log_context"``, or `None` if it was not observed.
    """
    bound = getattr(record, "bound", None)
    site = None if bound is None else bound.get(var)
    return None if site is None else _sites.describe_line(site)
