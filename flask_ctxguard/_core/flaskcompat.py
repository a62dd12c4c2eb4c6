"""
Every private Flask detail flask_ctxguard depends on, in one place.

Flask exposes its contexts through the ``app_ctx`` proxies (and, up to
3.1, ``request_ctx``), but going through a proxy costs an exception on
every miss. The guard asks "which context is current?" on each checked
access, so it reads the ContextVars behind those proxies directly. It also
needs to know whether a request pushed its own app context or ran in one
already pushed (the case in which ``g`` is shared between requests). And
the guarded ``g`` class replaces ``_AppCtxGlobals.__setattr__`` (a Python
spelling of ``object.__setattr__``) with ``object.__setattr__`` itself.
Flask also forgets a context's token(s) when it pops it: a copy of the
context made with ``contextvars.copy_context()`` still holds the popped
context, and the request's checks tell it by that (`is_pushed`).

Two shapes are supported, told apart by what Flask has, never by its
version number:

- Flask 2.3 to 3.1: a ``RequestContext`` in ``flask.globals._cv_request``
  holds the request (``.request``) and its session; it pushes an app
  context of its own, or reuses one already pushed, and records which in
  ``RequestContext._cv_tokens``.
- Flask 3.2 merges ``RequestContext`` into ``AppContext``: one ContextVar,
  ``_cv_app``, holds a context that carries the request (``._request``)
  when it has one. A request always pushes its own context, so its ``g``
  is never shared with another request. ``flask.ctx.RequestContext`` and
  ``flask.globals.request_ctx`` are deprecated aliases that warn: this
  module never touches them (it looks in the modules' ``__dict__``, which
  does not go through their ``__getattr__``).
"""

from __future__ import annotations

import importlib.metadata
import operator
import sys
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

import flask.ctx
import flask.globals

__all__ = [
    "FLASK_CONTEXT_VARS",
    "FLASK_G_CLASS",
    "G_REFS_AT_CLOSE",
    "G_REFS_AT_METHOD",
    "G_REFS_AT_WRITE",
    "MERGED_CONTEXTS",
    "POP_UNLINKS_REQUEST",
    "REFS_AT_CLOSE",
    "REQUESTS_SHARE_G",
    "app_ctx_var",
    "check_support",
    "is_pushed",
    "is_request_context",
    "leaked_roots",
    "pushed_contexts",
    "request_ctx_var",
    "request_of",
    "session_of",
    "unsupported_reason",
]

_missing: ContextVar[Any] = ContextVar("flask_ctxguard.missing")
_ctx_module: dict[str, Any] = vars(flask.ctx)
_globals_module: dict[str, Any] = vars(flask.globals)

#: Flask up to 3.1 has a request context class apart from its app
#: context class; 3.2 has one context class (and a deprecated alias).
_REQUEST_CONTEXT_CLASS: type | None = _ctx_module.get("RequestContext")
_APP_CONTEXT_CLASS: type | None = _ctx_module.get("AppContext")
#: Whether a request context is an app context with a request (3.2).
MERGED_CONTEXTS: bool = _REQUEST_CONTEXT_CLASS is None and isinstance(
    getattr(_APP_CONTEXT_CLASS, "has_request", None), property
)

#: The ContextVar holding the current app context.
app_ctx_var: ContextVar[Any] = _globals_module.get("_cv_app", _missing)
#: The ContextVar holding the current request context: Flask 3.2's
#: contexts that carry a request are app contexts.
request_ctx_var: ContextVar[Any] = (
    app_ctx_var
    if MERGED_CONTEXTS
    else _globals_module.get("_cv_request", _missing)
)
#: The request of a request context (`None` for an app context on 3.2;
#: the null context the guard's checks use has both attributes).
request_of: Callable[[Any], Any] = operator.attrgetter(
    "_request" if MERGED_CONTEXTS else "request"
)
#: Whether a request context is still pushed (truthy) or was popped: Flask
#: empties ``_cv_tokens`` (up to 3.1) or clears ``_cv_token`` (3.2) when
#: it pops it. One C call, on the checked accesses' path.
is_pushed: Callable[[Any], Any] = operator.attrgetter(
    "_cv_token" if MERGED_CONTEXTS else "_cv_tokens"
)
#: Whether two requests can share one ``g``: up to 3.1 a request reuses an
#: app context already pushed (a test's ``with app.app_context():``);
#: from 3.2 each request pushes its own.
REQUESTS_SHARE_G: bool = not MERGED_CONTEXTS
#: Flask's ``g`` class, whose ``__setattr__`` is ``object.__setattr__``
#: in Python.
FLASK_G_CLASS: type = flask.ctx._AppCtxGlobals
#: Flask's own context variables, never reported as leaks.
FLASK_CONTEXT_VARS: frozenset[ContextVar[Any]] = frozenset(
    (request_ctx_var, app_ctx_var)
)


def _session_getter() -> Callable[[Any], Any]:
    # Flask 3.1 made the context's session a property that marks the
    # session accessed (which adds 'Vary: Cookie' to the response), and
    # 3.2 opens it there if it was not: the guard must look at the
    # session without touching it.
    cls = _REQUEST_CONTEXT_CLASS or _APP_CONTEXT_CLASS
    attribute = getattr(cls, "session", None)
    if isinstance(attribute, property):
        return operator.attrgetter("_session")
    return operator.attrgetter("session")


#: The session of a request context, read without marking it accessed
#: (`None` if not opened yet).
session_of: Callable[[Any], Any] = _session_getter()


def check_support() -> str | None:
    """
    `None` if this Flask has what the guard relies on, else what is missing.
    """
    if MERGED_CONTEXTS:
        cls, needed = _APP_CONTEXT_CLASS, {"_request", "_session", "_cv_token"}
    else:
        cls, needed = _REQUEST_CONTEXT_CLASS, {"_cv_tokens"}
    if app_ctx_var is _missing or request_ctx_var is _missing:
        return "flask.globals has no '_cv_request' / '_cv_app' ContextVars"
    code = getattr(getattr(cls, "__init__", None), "__code__", None)
    missing = needed - set(code.co_names if code is not None else ())
    if missing:
        return f"flask.ctx's context class sets no {sorted(missing)}"
    return None


def unsupported_reason() -> str | None:
    """
    `None` if the guard can run on this Flask, else one sentence saying
    why not, with Flask's version and the supported ones.
    """
    problem = check_support()
    if problem is None:
        return None
    try:
        version = f"Flask {importlib.metadata.version('flask')}"
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        version = "this Flask"
    return (
        f"flask_ctxguard cannot guard {version}: {problem}. Supported are"
        " Flask 2.3, 3.0, 3.1 and 3.2."
    )


def pushed_contexts() -> list[Any]:
    """
    Every request and app context pushed in the current context, innermost
    first.
    """
    found: list[Any] = []
    seen: set[int] = set()
    for var in (request_ctx_var, app_ctx_var):
        ctx = var.get(None)
        while ctx is not None and id(ctx) not in seen:
            seen.add(id(ctx))
            found.append(ctx)
            ctx = _previous(ctx)
    return found


def leaked_roots(contexts: list[Any]) -> list[Any]:
    """
    *contexts* without the app contexts that a request context among them
    pushed for itself: popping the request context pops those too.
    """
    implicit = {
        id(app_ctx)
        for ctx in contexts
        if is_request_context(ctx)
        for _, app_ctx in getattr(ctx, "_cv_tokens", ())
        if app_ctx is not None
    }
    return [ctx for ctx in contexts if id(ctx) not in implicit]


def _previous(ctx: Any) -> Any:
    """The context *ctx* replaced when it was first pushed, if any."""
    token = getattr(ctx, "_cv_token", None)  # Flask 3.2: one token
    if token is None:
        tokens = getattr(ctx, "_cv_tokens", None)
        if not tokens:
            return None
        token = tokens[0]
        if isinstance(token, tuple):  # RequestContext: (token, app context)
            token = token[0]
    old = token.old_value
    return None if old is token.MISSING else old


def is_request_context(ctx: Any) -> bool:
    """Whether *ctx* is a request context (else an app context)."""
    if MERGED_CONTEXTS:
        return request_of(ctx) is not None
    return hasattr(ctx, "request")


def _pop_code() -> Any:
    cls = _REQUEST_CONTEXT_CLASS or _APP_CONTEXT_CLASS
    return getattr(getattr(cls, "pop", None), "__code__", None)


#: 1 if popping a copy of a request's context drops the reference its
#: environ holds to the request (Flask up to 3.1 clears
#: ``environ["werkzeug.request"]``, 3.2 leaves it), else 0.
POP_UNLINKS_REQUEST: int = int(
    _pop_code() is not None and "werkzeug.request" in _pop_code().co_consts
)


def _refs_held_by_the_call(bound_first: bool) -> int:
    """
    How many references to an object ``close()`` finds while it runs: one
    held by its owner (standing in for the context), the ones the call
    itself holds, and getrefcount()'s argument. Measured, not assumed, in
    the shape Flask calls it in: through a bound method kept in a local
    variable (*bound_first*, Flask up to 3.1), or as
    ``self._request.close()``, which before Python 3.11 also keeps the
    object on the caller's stack.
    """
    counts: list[int] = []

    class Probe:
        def close(self) -> None:
            counts.append(sys.getrefcount(self))

    class Owner:
        pass

    owner = Owner()
    owner.probe = Probe()  # type: ignore[attr-defined]
    if bound_first:
        probe_close = getattr(owner.probe, "close", None)  # type: ignore[attr-defined]
        if probe_close is not None:
            probe_close()
    else:
        owner.probe.close()  # type: ignore[attr-defined]
    return counts[0]


#: How many references a request has when Flask closes it, if nothing
#: else keeps it: its context, the call's (close()'s own frame, plus the
#: bound ``close`` that ``pop()`` keeps in a local variable up to Flask
#: 3.1, or, before Python 3.11, the caller's stack when Flask 3.2 calls
#: ``self._request.close()`` directly), getrefcount()'s argument, and its
#: environ ('werkzeug.request', counted even when a copy of the context
#: popped earlier cleared it, see `POP_UNLINKS_REQUEST`).
REFS_AT_CLOSE: int = 1 + _refs_held_by_the_call(
    _pop_code() is not None and "request_close" in _pop_code().co_varnames
)


def _refs_through_the_g_proxy() -> tuple[int, int]:
    """
    How many references an app context's ``g`` has when Flask's ``g``
    proxy writes one of its attributes (``g.user = ...``), and when it
    calls one of its methods (``g.pop(...)``), if nothing else keeps it:
    the context's, the call's, and getrefcount()'s argument. Measured
    through Flask's own proxy on a stand-in context, not assumed: the
    counts depend on Werkzeug's proxy and on the interpreter (a method
    call keeps one more before Python 3.11).
    """
    counts: dict[str, int] = {}

    class Probe:
        def __setattr__(self, name: str, value: Any) -> None:
            counts["write"] = sys.getrefcount(self)

        def pop(self, name: str, default: Any = None) -> Any:
            counts["method"] = sys.getrefcount(self)
            return default

    class Context:
        pass

    context = Context()
    context.g = Probe()  # type: ignore[attr-defined]
    proxy = _globals_module["g"]
    token = app_ctx_var.set(context)
    try:
        proxy.probe = None
        proxy.pop("probe")
    finally:
        app_ctx_var.reset(token)
    return counts["write"], counts["method"]


def _refs_of_an_attribute() -> int:
    """
    How many references an object has when read from its owner into a
    local variable, as the guard reads ``g`` from its context at a
    request's close: the owner's, the local's and getrefcount()'s.
    """

    class Owner:
        pass

    owner = Owner()
    owner.g = Owner()  # type: ignore[attr-defined]
    g = owner.g  # type: ignore[attr-defined]
    return sys.getrefcount(g)


try:
    _G_PROXY_REFS = _refs_through_the_g_proxy()
except Exception:  # noqa: BLE001 - a Flask the probe does not fit  # pragma: no cover
    # The fewest there can be: then any g that is written to counts as
    # escaped, and is checked on every read, as if it had.
    _G_PROXY_REFS = (2, 2)

#: How many references a request's own ``g`` has while Flask's ``g``
#: proxy writes to it, if nothing else keeps it (4 in CPython 3.10-3.13):
#: a write that finds more is the first sign that it escaped its request.
G_REFS_AT_WRITE: int = _G_PROXY_REFS[0]
#: The same, while the proxy calls one of its methods (``pop``,
#: ``setdefault``): 3, or 4 before Python 3.11.
G_REFS_AT_METHOD: int = _G_PROXY_REFS[1]
#: How many references a request's own ``g`` has at the request's close,
#: read from its context into a local, if nothing else keeps it (3).
G_REFS_AT_CLOSE: int = _refs_of_an_attribute()
