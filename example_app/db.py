"""
The SQLite database: schema, demo data and one connection per app context.

The database is a real file (``DATABASE`` in the config, by default
``notes.sqlite3`` in the instance folder), created with its schema and a
little demo data the first time the app starts. Request code gets its
connection from `get_db`; background threads open their own with
`connect`, because an ``sqlite3`` connection belongs to one thread.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3

import click
from flask import Flask, current_app, g
from werkzeug.security import generate_password_hash

__all__ = [
    "DEMO_USERS",
    "DemoUser",
    "close_db",
    "connect",
    "create_database",
    "get_db",
    "init_app",
]

SCHEMA = """
CREATE TABLE tenants (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);
CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE notes (
    id INTEGER PRIMARY KEY,
    tenant_id INTEGER NOT NULL REFERENCES tenants (id),
    author_id INTEGER NOT NULL REFERENCES users (id),
    title TEXT NOT NULL,
    body TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
        DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX notes_by_tenant ON notes (tenant_id, created_at);
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY,
    event TEXT NOT NULL,
    tenant_id INTEGER,
    actor_id INTEGER,
    note_id INTEGER,
    remote_addr TEXT,
    user_agent TEXT,
    created_at TEXT NOT NULL
        DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
"""


@dataclasses.dataclass(frozen=True, slots=True)
class DemoUser:
    """One seeded account: who, which tenant, and the password to use."""

    username: str
    display_name: str
    tenant: str
    password: str
    is_admin: bool = False


#: The accounts created with a new database. The passwords are for trying
#: the app out; a real deployment starts from an empty database.
DEMO_USERS = (
    DemoUser("alice", "Alice Archer", "acme", "alice-secret", is_admin=True),
    DemoUser("bob", "Bob Baker", "acme", "bob-secret"),
    DemoUser("carol", "Carol Chen", "globex", "carol-secret", is_admin=True),
    DemoUser("dave", "Dave Diaz", "globex", "dave-secret"),
)

_TENANTS = (("acme", "Acme Corporation"), ("globex", "Globex"))

_NOTES = (
    ("alice", "Q3 roadmap", "Ship the notes API; retire the fax gateway."),
    ("bob", "Customer call: Initech", "They want SSO before renewal."),
    ("carol", "Hiring plan", "Two backend engineers, one designer."),
    ("dave", "Incident 42 follow-up", "Rotate the staging credentials."),
)


def connect(path: str) -> sqlite3.Connection:
    """
    A new connection to the database at *path*, for the calling thread.
    """
    db = sqlite3.connect(path, timeout=10)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA foreign_keys = ON")
    return db


def get_db() -> sqlite3.Connection:
    """
    The current app context's connection, opened on first use.

    Valid inside an app context, such as in a view function.
    """
    if "db" not in g:
        g.db = connect(current_app.config["DATABASE"])
    return g.db  # type: ignore[no-any-return]


def close_db(exc: BaseException | None = None) -> None:
    """Close the app context's connection, if it opened one."""
    db = g.pop("db", None)
    if db is not None:
        db.close()


def create_database(path: str, *, seed: bool, hash_method: str) -> None:
    """
    Create the schema at *path*, with the demo data when *seed*.

    WAL mode lets the server's threads read while one of them writes.
    """
    db = connect(path)
    try:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(SCHEMA)
        if seed:
            _seed(db, hash_method)
        db.commit()
    finally:
        db.close()


def _seed(db: sqlite3.Connection, hash_method: str) -> None:
    tenants = {}
    for slug, name in _TENANTS:
        cursor = db.execute(
            "INSERT INTO tenants (slug, name) VALUES (?, ?)", (slug, name)
        )
        tenants[slug] = cursor.lastrowid
    users = {}
    for user in DEMO_USERS:
        cursor = db.execute(
            "INSERT INTO users (tenant_id, username, display_name,"
            " password_hash, is_admin) VALUES (?, ?, ?, ?, ?)",
            (
                tenants[user.tenant],
                user.username,
                user.display_name,
                generate_password_hash(user.password, method=hash_method),
                user.is_admin,
            ),
        )
        users[user.username] = (cursor.lastrowid, tenants[user.tenant])
    for author, title, body in _NOTES:
        author_id, tenant_id = users[author]
        db.execute(
            "INSERT INTO notes (tenant_id, author_id, title, body)"
            " VALUES (?, ?, ?, ?)",
            (tenant_id, author_id, title, body),
        )


@click.command("init-db")
@click.option(
    "--seed/--no-seed", default=True, help="Add the demo tenants and users."
)
def init_db_command(*, seed: bool) -> None:
    """Create a new database, replacing the existing one."""
    path = current_app.config["DATABASE"]
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    create_database(
        path,
        seed=seed,
        hash_method=current_app.config["PASSWORD_HASH_METHOD"],
    )
    click.echo(f"Created {path}.")


def init_app(app: Flask) -> None:
    """
    Create the database on first run and wire its connection to *app*.
    """
    path = app.config["DATABASE"]
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # Built aside and renamed into place, so that a second process
        # starting at the same moment never sees a half-made database.
        building = f"{path}.{os.getpid()}.new"
        create_database(
            building,
            seed=app.config["EXAMPLE_SEED"],
            hash_method=app.config["PASSWORD_HASH_METHOD"],
        )
        os.replace(building, path)
    app.teardown_appcontext(close_db)
    app.cli.add_command(init_db_command)
