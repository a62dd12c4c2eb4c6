"""
Accounts and sessions: Flask-Login, the ``auth`` blueprint and the tenant.

A user belongs to exactly one tenant. Once Flask-Login has loaded the user
of a request, `load_tenant` puts that tenant on ``g.tenant``; every query
of the notes API is scoped to it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import Blueprint, Flask, g, request
from flask_login import (
    FlaskLoginClient,
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from werkzeug.security import check_password_hash

from .db import get_db
from .logs import bind_request_values

__all__ = ["Tenant", "User", "bp", "init_app", "login_manager"]

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager = LoginManager()


@dataclasses.dataclass(frozen=True)
class Tenant:
    """A customer organisation; it owns its users and notes."""

    id: int
    slug: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        """The tenant as JSON."""
        return {"slug": self.slug, "name": self.name}


@dataclasses.dataclass(frozen=True, eq=False)
class User(UserMixin):  # type: ignore[misc]
    """A signed-up person, as Flask-Login sees them."""

    id: int
    tenant_id: int
    username: str
    display_name: str
    is_admin: bool

    def to_dict(self) -> dict[str, Any]:
        """The user as JSON."""
        return {
            "username": self.username,
            "display_name": self.display_name,
            "is_admin": self.is_admin,
        }


_USER_COLUMNS = "id, tenant_id, username, display_name, is_admin"


def _user(row: Any) -> User:
    return User(
        id=row["id"],
        tenant_id=row["tenant_id"],
        username=row["username"],
        display_name=row["display_name"],
        is_admin=bool(row["is_admin"]),
    )


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """The user with the id Flask-Login kept in the session."""
    row = (
        get_db()
        .execute(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        .fetchone()
    )
    return None if row is None else _user(row)


@login_manager.unauthorized_handler
def unauthorized() -> tuple[dict[str, str], int]:
    """An API answers 401 with JSON instead of redirecting to a form."""
    return {"error": "log in first: POST /auth/login"}, 401


def all_users() -> list[User]:
    """Every user, for maintenance jobs."""
    rows = get_db().execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY id")
    return [_user(row) for row in rows]


def load_tenant() -> None:
    """
    Put the current user's tenant on ``g.tenant`` and into the log
    context.
    """
    if not current_user.is_authenticated:
        return
    row = (
        get_db()
        .execute(
            "SELECT id, slug, name FROM tenants WHERE id = ?",
            (current_user.tenant_id,),
        )
        .fetchone()
    )
    g.tenant = Tenant(id=row["id"], slug=row["slug"], name=row["name"])
    bind_request_values(user=current_user.username, tenant=row["slug"])


@bp.post("/login")
def login() -> Any:
    """Log in with ``username`` and ``password`` (JSON or a form)."""
    data = request.get_json(silent=True) or request.form
    username = str(data.get("username", ""))
    password = str(data.get("password", ""))
    row = (
        get_db()
        .execute(
            f"SELECT {_USER_COLUMNS}, password_hash FROM users"
            " WHERE username = ?",
            (username,),
        )
        .fetchone()
    )
    if row is None or not check_password_hash(row["password_hash"], password):
        return {"error": "unknown username or wrong password"}, 401
    user = _user(row)
    login_user(user)
    load_tenant()
    return {"user": user.to_dict(), "tenant": g.tenant.to_dict()}


@bp.post("/logout")
@login_required
def logout() -> Any:
    """End the session."""
    logout_user()
    return {"logged_out": True}


@bp.get("/me")
@login_required
def me() -> Any:
    """Who is logged in, and for which tenant."""
    return {"user": current_user.to_dict(), "tenant": g.tenant.to_dict()}


def init_app(app: Flask) -> None:
    """Install Flask-Login and the ``auth`` blueprint on *app*."""
    login_manager.init_app(app)
    # Scripts and tests act as a user with app.test_client(user=user).
    app.test_client_class = FlaskLoginClient
    app.before_request(load_tenant)
    app.register_blueprint(bp)
