"""
Apps that put the logged-in user into ContextVars on every request, in the
ways the README documents and, as positive controls, in ways that leak.

structlog's functions are imported by name here, at import time, before
any guard exists, as many apps do; the ``module`` pattern reaches them
through the module attribute instead. Flask-Login's ``request_loader``
hands out cached ``User`` objects, so a user's requests on one pooled
thread bind the very same objects again.
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Callable
from typing import Any

import structlog
import structlog.contextvars
from flask import Flask, g, request
from flask_login import LoginManager, UserMixin, current_user
from structlog.contextvars import (
    bind_contextvars,
    bound_contextvars,
    clear_contextvars,
    get_contextvars,
    reset_contextvars,
)

from flask_ctxguard import CtxGuard

tenant: contextvars.ContextVar[Any] = contextvars.ContextVar("tenant")


class User(UserMixin):
    """A user, loaded once and then handed out from a cache."""

    def __init__(self, name: str) -> None:
        self.id = f"user-{name}"
        self.tenant = f"tenant of {name}"


USERS: dict[str, User] = {}


def cached_user(name: str) -> User:
    user = USERS.get(name)
    if user is None:
        user = USERS[name] = User(name)
    return user


def _user_id() -> str | None:
    return current_user.id if current_user.is_authenticated else None


# -- the documented patterns: never reported -------------------------------


def clear_and_bind_through_the_module(app: Flask) -> None:
    @app.before_request
    def bind_log_context() -> None:
        structlog.contextvars.clear_contextvars()
        if current_user.is_authenticated:
            structlog.contextvars.bind_contextvars(user_id=current_user.id)


def clear_and_bind_by_name(app: Flask) -> None:
    @app.before_request
    def bind_log_context() -> None:
        clear_contextvars()
        if current_user.is_authenticated:
            bind_contextvars(user_id=current_user.id)


def bind_for_the_view(app: Flask) -> None:
    @app.before_request
    def bind_log_context() -> None:
        g.log_context = bound_contextvars(user_id=_user_id())
        g.log_context.__enter__()

    @app.teardown_request
    def unbind_log_context(exc: BaseException | None) -> None:
        g.log_context.__exit__(None, None, None)


def bind_and_reset(app: Flask) -> None:
    @app.before_request
    def bind_log_context() -> None:
        g.log_tokens = bind_contextvars(user_id=_user_id())

    @app.teardown_request
    def reset_log_context(exc: BaseException | None) -> None:
        reset_contextvars(**g.log_tokens)


def set_tenant_every_request(app: Flask) -> None:
    @app.before_request
    def set_tenant() -> None:
        tenant.set(
            current_user.tenant if current_user.is_authenticated else None
        )


# -- the positive controls: reported ---------------------------------------


def bind_without_clear(app: Flask) -> None:
    @app.before_request
    def bind_log_context() -> None:
        if current_user.is_authenticated:
            bind_contextvars(user_id=current_user.id)  # bind: never cleared


def set_tenant_for_users_only(app: Flask) -> None:
    @app.before_request
    def set_tenant() -> None:
        if current_user.is_authenticated:
            # A value of this request's own making, never reset.
            tenant.set("/".join([current_user.tenant, request.path]))


PATTERNS: dict[str, Callable[[Flask], None]] = {
    "module": clear_and_bind_through_the_module,
    "by_name": clear_and_bind_by_name,
    "bound": bind_for_the_view,
    "reset": bind_and_reset,
    "tenant": set_tenant_every_request,
    "no_clear": bind_without_clear,
    "tenant_for_users": set_tenant_for_users_only,
}
#: The patterns that leak, and what they leak.
CONTROLS = {
    "no_clear": "ContextVar structlog_user_id",
    "tenant_for_users": "ContextVar tenant",
}
#: The line of each control that set the leaked value, where it is known.
BIND_MARKER = "# bind: never cleared"


def create_app(pattern: str) -> Flask:
    """An app that binds the user in the way *pattern* names."""
    app = Flask(f"bindapp-{pattern}")
    app.secret_key = "not a secret"
    login = LoginManager(app)

    @login.request_loader
    def load_user_from_request(req: Any) -> User | None:
        name = req.headers.get("X-User")
        return cached_user(name) if name else None

    PATTERNS[pattern](app)

    @app.get("/whoami")
    def whoami() -> dict[str, Any]:
        structlog.get_logger("bindapp").info("whoami")
        return {
            "user": _user_id(),
            "log": get_contextvars(),
            "tenant": tenant.get(None),
        }

    @app.get("/health")
    def health() -> str:
        structlog.get_logger("bindapp").info("health")
        return "ok"

    return app


def guarded_app(pattern: str) -> tuple[Flask, CtxGuard]:
    """*pattern*'s app, guarded in log mode."""
    app = create_app(pattern)
    app.config["CTXGUARD_MODE"] = "log"
    return app, CtxGuard(app)


class _Lines:
    def msg(self, message: str) -> None:
        sys.stderr.write(message + "\n")
        sys.stderr.flush()

    info = warning = error = debug = critical = msg


def gunicorn_app(pattern: str) -> Flask:
    """The guarded app a gunicorn worker serves, logging JSON to stderr."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=lambda *args: _Lines(),
        cache_logger_on_first_use=False,
    )
    app, _ = guarded_app(pattern)
    structlog.get_logger("bindapp").info("worker-ready", pid=os.getpid())
    return app
