"""
Every private Flask detail flask_ctxguard depends on, in one place.

Flask exposes its request and app contexts through the ``request_ctx`` and
``app_ctx`` proxies, but going through a proxy costs an exception on every
miss. The guard asks "which context is current?" on each checked access, so
it reads the ContextVars behind those proxies directly. It also needs to
know whether a request pushed its own app context or reused one that was
already pushed (the case in which ``g`` is shared between requests); Flask
records that only in ``RequestContext._cv_tokens``, which Flask also
empties when it pops the context: a copy of the context made with
``contextvars.copy_context()`` still holds the popped context, and the
request's checks tell it by its empty ``_cv_tokens``. And the guarded ``g``
class replaces ``_AppCtxGlobals.__setattr__`` (a Python spelling of
``object.__setattr__``) with ``object.__setattr__`` itself.

Both have the same shape in Flask 2.3, 3.0 and 3.1 and are tested against
each. Flask's unreleased main merges ``RequestContext`` into
``AppContext``; this module is the seam to adapt.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

__all__ = [
    "FLASK_CONTEXT_VARS",
    "FLASK_G_CLASS",
    "app_ctx_var",
    "check_support",
    "is_request_context",
    "leaked_roots",
    "pushed_contexts",
    "request_ctx_var",
    "session_of",
]

import flask.ctx
import flask.globals

_missing: ContextVar[Any] = ContextVar("flask_ctxguard.missing")

#: The ContextVar holding the current ``flask.ctx.RequestContext``.
request_ctx_var: ContextVar[Any] = getattr(
    flask.globals, "_cv_request", _missing
)
#: The ContextVar holding the current ``flask.ctx.AppContext``.
app_ctx_var: ContextVar[Any] = getattr(flask.globals, "_cv_app", _missing)
#: Flask's ``g`` class, whose ``__setattr__`` is ``object.__setattr__``
#: in Python.
FLASK_G_CLASS: type = flask.ctx._AppCtxGlobals
#: Flask's own context variables, never reported as leaks.
FLASK_CONTEXT_VARS: frozenset[ContextVar[Any]] = frozenset(
    (request_ctx_var, app_ctx_var)
)


def _session_getter() -> Callable[[Any], Any]:
    # Flask 3.1 made RequestContext.session a property that marks the
    # session accessed (which adds 'Vary: Cookie' to the response); the
    # guard must look at the session without touching it.
    import flask.ctx

    attribute = getattr(flask.ctx.RequestContext, "session", None)
    if isinstance(attribute, property):
        return operator.attrgetter("_session")
    return operator.attrgetter("session")


#: The session of a request context, read without marking it accessed.
session_of: Callable[[Any], Any] = _session_getter()


def check_support() -> str | None:
    """
    `None` if this Flask has what the guard relies on, else what is missing.
    """
    import flask.ctx

    if request_ctx_var is _missing or app_ctx_var is _missing:
        return "flask.globals has no '_cv_request' / '_cv_app' ContextVars"
    probe = flask.ctx.RequestContext.__init__.__code__.co_names
    if "_cv_tokens" not in probe:
        return "flask.ctx.RequestContext has no '_cv_tokens'"
    return None


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
    return hasattr(ctx, "request")
