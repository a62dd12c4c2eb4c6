"""
The service's own routes: what it is, and whether it is up.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, url_for

from .db import get_db

__all__ = ["bp"]

bp = Blueprint("service", __name__)


@bp.get("/")
def index() -> Any:
    """What this service is and where to start."""
    return {
        "service": "notes",
        "login": url_for("auth.login"),
        "notes": url_for("notes.list_notes"),
    }


@bp.get("/healthz")
def healthz() -> Any:
    """Whether the service can reach its database."""
    get_db().execute("SELECT 1").fetchone()
    return {"status": "ok"}
