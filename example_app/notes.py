"""
The notes API: a tenant's shared notes, and each user's weekly digest.

Every route needs a logged-in user and only ever sees the notes of that
user's tenant (``g.tenant``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import structlog
from flask import (
    Blueprint,
    Response,
    abort,
    g,
    request,
    stream_with_context,
)
from flask_login import current_user, login_required

from .audit import Source, audit_trail
from .db import get_db

__all__ = ["bp", "note_to_dict"]

bp = Blueprint("notes", __name__, url_prefix="/notes")
log = structlog.get_logger("example_app.notes")

_NOTE_COLUMNS = (
    "notes.id, notes.title, notes.body, notes.created_at,"
    " users.username AS author"
)
_FROM = "FROM notes JOIN users ON users.id = notes.author_id"


@bp.before_request
@login_required
def _require_login() -> None:
    """Every notes route needs a logged-in user."""


def note_to_dict(row: Any) -> dict[str, Any]:
    """A ``notes`` row (with its author) as JSON."""
    return {
        "id": row["id"],
        "title": row["title"],
        "body": row["body"],
        "author": row["author"],
        "created_at": row["created_at"],
    }


def _get_note(note_id: int) -> Any:
    row = (
        get_db()
        .execute(
            f"SELECT {_NOTE_COLUMNS}, notes.author_id {_FROM}"
            " WHERE notes.id = ? AND notes.tenant_id = ?",
            (note_id, g.tenant.id),
        )
        .fetchone()
    )
    if row is None:
        abort(404)
    return row


@bp.get("")
def list_notes() -> Any:
    """The tenant's notes, newest first; ``?q=`` searches titles and
    bodies."""
    query = request.args.get("q", "")
    limit = request.args.get("limit", 50, type=int)
    rows = get_db().execute(
        f"SELECT {_NOTE_COLUMNS} {_FROM} WHERE notes.tenant_id = ?"
        " AND (notes.title LIKE ? OR notes.body LIKE ?)"
        " ORDER BY notes.created_at DESC, notes.id DESC LIMIT ?",
        (g.tenant.id, f"%{query}%", f"%{query}%", max(1, min(limit, 200))),
    )
    return {"notes": [note_to_dict(row) for row in rows]}


@bp.post("")
def create_note() -> Any:
    """Create a note from ``title`` and ``body``."""
    data = request.get_json(silent=True) or {}
    title = str(data.get("title", "")).strip()
    if not title:
        return {"error": "a note needs a 'title'"}, 400
    db = get_db()
    cursor = db.execute(
        "INSERT INTO notes (tenant_id, author_id, title, body)"
        " VALUES (?, ?, ?, ?)",
        (g.tenant.id, current_user.id, title, str(data.get("body", ""))),
    )
    db.commit()
    note_id = int(cursor.lastrowid or 0)
    audit_trail().record(
        "note.created",
        source=Source.of(request),
        tenant_id=g.tenant.id,
        actor_id=current_user.id,
        note_id=note_id,
    )
    log.info("note.created", note_id=note_id)
    return note_to_dict(_get_note(note_id)), 201


@bp.get("/<int:note_id>")
def get_note(note_id: int) -> Any:
    """One note of the tenant."""
    return note_to_dict(_get_note(note_id))


@bp.delete("/<int:note_id>")
def delete_note(note_id: int) -> Any:
    """Delete a note; only its author or an admin may."""
    row = _get_note(note_id)
    if row["author_id"] != current_user.id and not current_user.is_admin:
        return {"error": "only the author or an admin may delete it"}, 403
    db = get_db()
    db.execute("DELETE FROM notes WHERE id = ?", (note_id,))
    db.commit()
    audit_trail().record(
        "note.deleted",
        source=Source.of(request),
        tenant_id=g.tenant.id,
        actor_id=current_user.id,
        note_id=note_id,
    )
    log.info("note.deleted", note_id=note_id)
    return {"deleted": note_id}


@bp.get("/digest")
def digest() -> Any:
    """The current user's weekly digest: the tenant's notes of the last
    seven days."""
    rows = get_db().execute(
        f"SELECT {_NOTE_COLUMNS} {_FROM} WHERE notes.tenant_id = ?"
        " AND notes.created_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now',"
        " '-7 days') ORDER BY notes.created_at DESC",
        (g.tenant.id,),
    )
    notes = [note_to_dict(row) for row in rows]
    return {
        "recipient": current_user.username,
        "tenant": g.tenant.slug,
        "notes": notes,
    }


@bp.get("/export.csv")
def export_csv() -> Response:
    """
    The tenant's notes as CSV, streamed row by row.

    The generator runs after the view returned, while the server sends the
    body; `stream_with_context` keeps the request context alive for it.
    """
    rows = (
        get_db()
        .execute(
            f"SELECT {_NOTE_COLUMNS} {_FROM} WHERE notes.tenant_id = ?"
            " ORDER BY notes.id",
            (g.tenant.id,),
        )
        .fetchall()
    )

    def generate() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        columns = ("id", "title", "author", "created_at", "body")
        if request.args.get("header", "1") == "1":
            writer.writerow(columns)
        for row in rows:
            writer.writerow([row[column] for column in columns])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()

    return Response(
        stream_with_context(generate()),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=notes.csv"},
    )
