"""
The ``buggy`` blueprint: mistakes real Flask code makes, one per rule.

Registered only when the config sets ``EXAMPLE_BUGGY = True``. Each route
works, returns what its author expected in a quick manual test, and leaks
one request's data into another request or thread under real traffic:

- ``GET /buggy/whoami`` (CG103): a module-level "current user" cache keeps
  the first request's ``g``.
- ``POST /buggy/notes/<id>/share`` (CG102): the audit writer thread is
  handed the request and reads it after the response.
- ``GET /buggy/search?q=`` (CG104): a thread-pool helper is handed the raw
  request.
- ``GET /buggy/reports/usage`` (CG106): a tenant ContextVar is set and
  never reset.
- ``POST /buggy/imports`` (CG106): structlog's ``bind_contextvars``
  without unbinding.
- ``POST /buggy/digests`` and ``flask --app example_app buggy
  send-digests`` (CG101): a maintenance job pushes an app context around
  test-client requests.
- ``POST /buggy/drafts`` and ``GET /buggy/drafts/current`` (no rule: only
  `flask_ctxguard.testing.hammer` finds it): the draft being edited is
  kept in a ``threading.local``, and a pooled server thread shows it to
  the next user it serves.

Each mistake is marked ``BUG:`` with the fix next to it.
"""

from __future__ import annotations

import contextvars
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click
import structlog
from flask import Blueprint, Flask, current_app, g, request
from flask_login import current_user, login_required
from structlog.contextvars import bind_contextvars

from .audit import audit_trail
from .auth import Tenant, all_users
from .db import connect, get_db
from .notes import note_to_dict

__all__ = [
    "bp",
    "draft_scratchpad",
    "report_tenant",
    "send_digests",
    "viewer_cache",
]

bp = Blueprint("buggy", __name__, url_prefix="/buggy", cli_group="buggy")
log = structlog.get_logger("example_app.buggy")


@bp.before_request
@login_required
def _require_login() -> None:
    """Every buggy route needs a logged-in user."""


# -- CG103: a module-level "current user" cache -------------------------------

# BUG: a process-wide cache of "who is looking". Resolving the viewer and
# their tenant costs two queries, so the first request's 'g' (which holds
# the loaded user and 'g.tenant') is kept and every later request reads the
# tenant from it: users of other tenants are shown the first one's.
# Fix: read 'g.tenant' (or 'current_user') in each request, or cache plain
# values keyed by the user id.
viewer_cache: dict[str, Any] = {}


def cached_viewer_tenant() -> Tenant:
    """The viewer's tenant, "cached"."""
    viewer = viewer_cache.get("g")
    if viewer is None:
        viewer = viewer_cache["g"] = g._get_current_object()
    return viewer.tenant  # type: ignore[no-any-return]


@bp.get("/whoami")
def whoami() -> Any:
    """Who is logged in, with the tenant from the viewer cache."""
    return {
        "user": current_user.username,
        "tenant": cached_viewer_tenant().slug,
    }


# -- CG102: an audit thread that reads the kept request -----------------------


@bp.post("/notes/<int:note_id>/share")
def share_note(note_id: int) -> Any:
    """Share a note with the whole tenant, and audit who did it."""
    row = (
        get_db()
        .execute(
            "SELECT id FROM notes WHERE id = ? AND tenant_id = ?",
            (note_id, g.tenant.id),
        )
        .fetchone()
    )
    if row is None:
        return {"error": "no such note"}, 404
    # BUG: the request itself is queued as the audit source ("it has
    # remote_addr and user_agent, why copy?"); the proxy 'request' failed
    # in the writer thread ("Working outside of request context"), so its
    # author reached for '_get_current_object()'. The writer reads it a
    # batch later: mostly after the response (CG102), now and then while
    # it is still in flight (CG104). Fix: source=Source.of(request).
    audit_trail().record(
        "note.shared",
        source=request._get_current_object(),  # type: ignore[attr-defined]
        tenant_id=g.tenant.id,
        actor_id=current_user.id,
        note_id=note_id,
    )
    return {"shared": note_id, "with": g.tenant.slug}


# -- CG104: a thread-pool helper handed the raw request -----------------------

_search_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="search")

Search = Callable[[Any, str, int], list[dict[str, Any]]]


def _search_titles(req: Any, database: str, tenant_id: int) -> list[Any]:
    return _search(req, database, tenant_id, "title")


def _search_bodies(req: Any, database: str, tenant_id: int) -> list[Any]:
    return _search(req, database, tenant_id, "body")


def _search(req: Any, database: str, tenant_id: int, column: str) -> list[Any]:
    # Each search reads its own parameters from the request it was given.
    pattern = f"%{req.args.get('q', '')}%"
    limit = req.args.get("limit", 20, type=int)
    db = connect(database)
    try:
        rows = db.execute(
            "SELECT notes.id, notes.title, notes.body, notes.created_at,"
            " users.username AS author FROM notes JOIN users"
            " ON users.id = notes.author_id WHERE notes.tenant_id = ?"
            f" AND notes.{column} LIKE ? ORDER BY notes.id LIMIT ?",
            (tenant_id, pattern, limit),
        )
        return [note_to_dict(row) for row in rows]
    finally:
        db.close()


def search_in_parallel(req: Any, *searches: Search) -> list[dict[str, Any]]:
    """Run *searches* on the shared pool and merge their hits."""
    database = current_app.config["DATABASE"]
    futures = [
        _search_pool.submit(search, req, database, g.tenant.id)
        for search in searches
    ]
    hits: dict[int, dict[str, Any]] = {}
    for future in futures:
        for note in future.result(timeout=10):
            hits[note["id"]] = note
    return sorted(hits.values(), key=lambda note: note["id"])


@bp.get("/search")
def search() -> Any:
    """Search titles and bodies at the same time."""
    # BUG: the pool's threads get the real request and read 'args' from
    # it while this request is in flight, without its context. Fix: pass
    # the values (q, limit), or wrap the function with
    # 'copy_current_request_context'.
    req = request._get_current_object()  # type: ignore[attr-defined]
    notes = search_in_parallel(req, _search_titles, _search_bodies)
    return {"notes": notes}


# -- CG106: a tenant ContextVar that is never reset ---------------------------

#: The tenant whose report is being computed, so that the query helpers
#: need not pass it around.
report_tenant: contextvars.ContextVar[Tenant] = contextvars.ContextVar(
    "report_tenant"
)


def _count(sql: str) -> int:
    tenant = report_tenant.get()
    return int(get_db().execute(sql, (tenant.id,)).fetchone()[0])


@bp.get("/reports/usage")
def usage_report() -> Any:
    """How much the tenant uses the service."""
    # BUG: set and never reset. The server thread keeps the tenant into
    # every later request it serves, and any code that reads
    # 'report_tenant' there gets another tenant's id. Fix: keep the token
    # and 'report_tenant.reset(token)' in a 'finally' (or teardown).
    report_tenant.set(g.tenant)
    return {
        "tenant": report_tenant.get().slug,
        "notes": _count("SELECT count(*) FROM notes WHERE tenant_id = ?"),
        "authors": _count(
            "SELECT count(DISTINCT author_id) FROM notes WHERE tenant_id = ?"
        ),
    }


# -- CG106: structlog's bind_contextvars without unbinding --------------------


@bp.post("/imports")
def import_notes() -> Any:
    """Import a batch of notes: ``{"notes": [{"title", "body"}, ...]}``."""
    data = request.get_json(silent=True) or {}
    notes = [note for note in data.get("notes", []) if note.get("title")]
    import_id = uuid.uuid4().hex[:12]
    # BUG: every log line of the import should carry its id, so it is
    # bound to the context, and never unbound: every later request on
    # this thread logs the stale 'import_id'. Fix: use
    # 'with structlog.contextvars.bound_contextvars(import_id=...):', or
    # reset the tokens 'bind_contextvars' returns.
    bind_contextvars(import_id=import_id)
    log.info("import.started", notes=len(notes))
    db = get_db()
    with db:
        db.executemany(
            "INSERT INTO notes (tenant_id, author_id, title, body)"
            " VALUES (?, ?, ?, ?)",
            [
                (
                    g.tenant.id,
                    current_user.id,
                    str(note["title"]),
                    str(note.get("body", "")),
                )
                for note in notes
            ],
        )
    log.info("import.finished", notes=len(notes))
    return {"import_id": import_id, "imported": len(notes)}, 201


# -- CG101: a maintenance job that pushes an app context ----------------------


def send_digests(app: Flask) -> list[dict[str, Any]]:
    """
    Render every user's weekly digest through the API, as that user.

    Returns one entry per user: whom it was for, whom the API rendered it
    for, and how many notes it holds.
    """
    sent = []
    # BUG: every test-client request below reuses this app context, and
    # so its 'g'. Flask-Login keeps the loaded user in 'g._login_user':
    # the first user's is found there by every later request, and every
    # digest is the first user's (and their tenant's notes). Fix: don't
    # push an app context around the requests; open the one you need for
    # 'all_users()' and close it before the loop.
    with app.app_context():
        for user in all_users():
            client = app.test_client(user=user)
            response = client.get("/notes/digest")
            digest = response.get_json()
            sent.append(
                {
                    "recipient": user.username,
                    "rendered_for": digest["recipient"],
                    "tenant": digest["tenant"],
                    "notes": len(digest["notes"]),
                }
            )
            log.info(
                "digest.sent",
                recipient=user.username,
                notes=len(digest["notes"]),
            )
    return sent


@bp.post("/digests")
def send_digests_now() -> Any:
    """Send the weekly digests now (admins only)."""
    if not current_user.is_admin:
        return {"error": "only admins may send the digests"}, 403
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return {"digests": send_digests(app)}


@bp.cli.command("send-digests")
def send_digests_command() -> None:
    """Send every user's weekly digest."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for digest in send_digests(app):
        click.echo(
            f"{digest['recipient']}: {digest['notes']} notes, rendered for"
            f" {digest['rendered_for']!r} ({digest['tenant']})"
        )


# -- no rule: the draft in a threading.local (only hammer finds it) -----------

# BUG: "one thread per user" is how the author pictured the server, so the
# draft being edited is kept on the thread. Under gunicorn's gthread worker
# or waitress a thread serves whichever user comes next, and that user is
# shown the previous one's draft. The guard cannot see it: it is neither
# the request, the session, 'g' nor a ContextVar. `hammer` finds it as a
# crossover. Fix: keep the draft in the session or the database.
draft_scratchpad = threading.local()


@bp.post("/drafts")
def save_draft() -> Any:
    """Keep the draft being edited: ``{"title", "body"}``."""
    data = request.get_json(silent=True) or {}
    draft_scratchpad.draft = {
        "title": str(data.get("title", "")),
        "body": str(data.get("body", "")),
        "author": current_user.username,
    }
    return {"saved": True}


@bp.get("/drafts/current")
def current_draft() -> Any:
    """The draft being edited, if any."""
    return {"draft": getattr(draft_scratchpad, "draft", None)}
