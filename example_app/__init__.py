"""
A multi-tenant notes API, guarded by flask_ctxguard.

Users of a tenant (a customer organisation) log in and share notes. The
app is built like any mid-sized Flask service: an application factory,
blueprints, a SQLite database, Flask-Login sessions and structlog, with
`flask_ctxguard.CtxGuard` installed through ``init_app``.

Its ordinary endpoints are clean. The ``buggy`` blueprint, registered only
with ``EXAMPLE_BUGGY = True``, holds one realistic contamination bug per
rule (see `example_app.buggy`).

Try it::

    flask --app example_app run
    curl -c jar -H 'Content-Type: application/json' \\
        -d '{"username": "alice", "password": "alice-secret"}' \\
        http://127.0.0.1:5000/auth/login
    curl -b jar http://127.0.0.1:5000/notes

With the bugs: ``FLASK_EXAMPLE_BUGGY=true flask --app example_app run``;
the whole tour under a real server: ``python -m example_app.demo``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from flask_ctxguard import CtxGuard

from . import audit, auth, db, logs, notes, service

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """
    Create the notes app.

    Args:
        config: Settings that replace the instance folder's ``config.py``
            and the ``FLASK_*`` environment variables (tests pass the
            database path here).

    The app reads, besides Flask's and flask_ctxguard's ``CTXGUARD_*``
    keys:

    - ``DATABASE``: path of the SQLite file, created on first run
      (default: ``notes.sqlite3`` in the instance folder).
    - ``EXAMPLE_SEED``: add demo tenants and users to a new database
      (default `True`; see `example_app.db.DEMO_USERS`).
    - ``EXAMPLE_BUGGY``: register the ``buggy`` blueprint (default
      `False`).
    - ``PASSWORD_HASH_METHOD``: for Werkzeug's ``generate_password_hash``
      (default ``"scrypt"``; tests use a cheap one).
    - ``AUDIT_FLUSH_INTERVAL``: seconds between audit-trail writes, or
      `None` to write only on flush (default ``1.0``).
    - ``LOG_FORMAT`` (``"auto"``, ``"console"`` or ``"json"``) and
      ``LOG_LEVEL`` (default ``"INFO"``).
    """
    app = Flask(__name__, instance_relative_config=True)
    app.config.from_mapping(
        SECRET_KEY="dev",
        DATABASE=os.path.join(app.instance_path, "notes.sqlite3"),
        EXAMPLE_SEED=True,
        EXAMPLE_BUGGY=False,
        PASSWORD_HASH_METHOD="scrypt",
        AUDIT_FLUSH_INTERVAL=1.0,
        LOG_FORMAT="auto",
        LOG_LEVEL="INFO",
    )
    if config is None:
        app.config.from_pyfile("config.py", silent=True)
        # FLASK_DATABASE=..., FLASK_EXAMPLE_BUGGY=true, FLASK_CTXGUARD_MODE=
        # raise: values are parsed as JSON where they can be.
        app.config.from_prefixed_env()
    else:
        app.config.from_mapping(config)

    # First, so that it guards everything the other extensions do.
    CtxGuard().init_app(app)
    logs.init_app(app)
    db.init_app(app)
    audit.init_app(app)
    auth.init_app(app)
    app.register_blueprint(service.bp)
    app.register_blueprint(notes.bp)
    if app.config["EXAMPLE_BUGGY"]:
        from . import buggy

        app.register_blueprint(buggy.bp)
    return app
