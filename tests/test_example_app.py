"""
The example app: its ordinary routes are clean, each buggy route is caught
with its code, and the demo reports every code.
"""

from __future__ import annotations

import contextvars
import json
import os
import sqlite3
import subprocess
import sys
import threading
import urllib.request
from http.cookiejar import CookieJar

import pytest
import structlog
from werkzeug.serving import make_server

from example_app import buggy, create_app, demo
from example_app.db import DEMO_USERS
from flask_ctxguard import ContaminationError
from flask_ctxguard._core.docs_site import DOCS_URL
from tests._compat import needs_shared_g
from tests.helpers import codes, kept_request_control

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Browser:
    """
    One user's test client, served by one pooled server thread.

    A pooled thread (gunicorn's gthread, waitress) keeps its context from
    one request to the next: here that is one `contextvars.Context`, which
    also keeps each test's ContextVars away from every other test.
    """

    def __init__(self, client, worker):
        self.client = client
        self.worker = worker

    def open(self, method, path, **kwargs):
        # Buffered, so that a streamed body is read in the worker's
        # context too, as a server thread would.
        return self.worker.run(
            self.client.open, path, method=method, buffered=True, **kwargs
        )

    def get(self, path, **kwargs):
        return self.open("GET", path, **kwargs)

    def post(self, path, **kwargs):
        return self.open("POST", path, **kwargs)

    def delete(self, path, **kwargs):
        return self.open("DELETE", path, **kwargs)


def config(tmp_path, **overrides):
    settings = {
        "TESTING": True,
        "SECRET_KEY": "test",
        "DATABASE": str(tmp_path / "notes.sqlite3"),
        "EXAMPLE_BUGGY": True,
        "CTXGUARD_MODE": "log",
        # Scrypt is slow on purpose; the tests need no protection.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "AUDIT_FLUSH_INTERVAL": None,
        "LOG_FORMAT": "json",
    }
    settings.update(overrides)
    return settings


@pytest.fixture(name="app")
def _app(tmp_path):
    """A notes app with its buggy routes and a database of its own."""
    # The "current user" cache is module-level: that is its bug.
    buggy.viewer_cache.clear()
    app = create_app(config(tmp_path))
    yield app
    app.extensions["audit"].close()
    buggy.viewer_cache.clear()


@pytest.fixture(name="guard")
def _guard(app):
    """The app's own CtxGuard."""
    return app.extensions["ctxguard"].guard


@pytest.fixture(name="worker")
def _worker():
    """The context of one pooled server thread."""
    return contextvars.Context()


@pytest.fixture(name="log_in")
def _log_in(app, worker):
    """Log a demo user in, in a browser of their own."""

    def log_in(username):
        browser = Browser(app.test_client(), worker)
        response = browser.post(
            "/auth/login",
            json={"username": username, "password": f"{username}-secret"},
        )
        assert 200 == response.status_code
        return browser

    return log_in


class TestCreateApp:
    def test_database_is_created_where_configured(self, app, tmp_path):
        """A new database, with the demo tenants and users, is created at
        DATABASE."""
        db = sqlite3.connect(tmp_path / "notes.sqlite3")
        try:
            users = db.execute(
                "SELECT users.username, tenants.slug FROM users JOIN tenants"
                " ON tenants.id = users.tenant_id ORDER BY users.id"
            ).fetchall()
        finally:
            db.close()

        assert [
            ("alice", "acme"),
            ("bob", "acme"),
            ("carol", "globex"),
            ("dave", "globex"),
        ] == users

    def test_buggy_routes_need_the_setting(self, tmp_path):
        """Without EXAMPLE_BUGGY the buggy blueprint is not registered."""
        app = create_app(config(tmp_path, EXAMPLE_BUGGY=False))

        assert "buggy" not in app.blueprints
        assert "ctxguard" in app.extensions

    def test_environment_configures_the_app(self, tmp_path, monkeypatch):
        """Without a config mapping, FLASK_* variables configure the app."""
        monkeypatch.setenv("FLASK_DATABASE", str(tmp_path / "env.sqlite3"))
        monkeypatch.setenv("FLASK_EXAMPLE_BUGGY", "true")
        monkeypatch.setenv("FLASK_CTXGUARD_MODE", "off")
        monkeypatch.setenv("FLASK_PASSWORD_HASH_METHOD", "pbkdf2:sha256:1")

        app = create_app()

        assert "buggy" in app.blueprints
        assert "off" == app.config["CTXGUARD_MODE"]
        assert (tmp_path / "env.sqlite3").exists()


CLEAN_ROUTES = [
    ("GET", "/", None, 200),
    ("GET", "/healthz", None, 200),
    ("GET", "/auth/me", None, 200),
    ("GET", "/notes", None, 200),
    ("GET", "/notes?q=plan&limit=5", None, 200),
    ("POST", "/notes", {"title": "Standup", "body": "notes"}, 201),
    ("POST", "/notes", {"body": "no title"}, 400),
    ("GET", "/notes/digest", None, 200),
    ("GET", "/notes/export.csv", None, 200),
    ("GET", "/notes/999", None, 404),
    ("POST", "/auth/logout", None, 200),
]


class TestCleanRoutes:
    @pytest.mark.parametrize(
        "route",
        CLEAN_ROUTES,
        ids=[f"{method} {path}" for method, path, _, _ in CLEAN_ROUTES],
    )
    def test_two_tenants_in_turn_report_nothing(
        self, app, guard, log_in, route
    ):
        """A clean route used by users of two tenants in turn, on one
        server thread, reports nothing."""
        method, path, body, status = route
        users = [log_in(name) for name in ("alice", "carol", "bob")]

        statuses = [
            browser.open(method, path, json=body).status_code
            for browser in users
        ]

        assert [] == codes(guard)
        assert ["CG104"] == kept_request_control(app, guard)
        assert [status] * 3 == statuses

    def test_deleting_a_note_reports_nothing(self, app, guard, log_in):
        """Deleting a note, and the audit entry it writes, report
        nothing."""
        alice = log_in("alice")
        note = alice.post("/notes", json={"title": "Scratch"}).get_json()

        response = alice.delete(f"/notes/{note['id']}")
        app.extensions["audit"].flush()

        assert [] == codes(guard)
        assert ["CG104"] == kept_request_control(app, guard)
        assert 200 == response.status_code
        assert 404 == alice.get(f"/notes/{note['id']}").status_code

    def test_tenants_only_see_their_own_notes(self, app, guard, log_in):
        """A note of one tenant is not found by a user of another."""
        alice, carol = log_in("alice"), log_in("carol")
        note = alice.post("/notes", json={"title": "Acme only"}).get_json()

        response = carol.get(f"/notes/{note['id']}")

        assert 404 == response.status_code
        assert [] == codes(guard)
        assert ["CG104"] == kept_request_control(app, guard)

    def test_anonymous_requests_are_refused(self, app, worker, guard):
        """Without a session the API answers 401, and reports nothing."""
        browser = Browser(app.test_client(), worker)

        response = browser.get("/notes")

        assert 401 == response.status_code
        assert [] == codes(guard)
        assert ["CG104"] == kept_request_control(app, guard)

    def test_audit_trail_stores_plain_values(self, app, guard, log_in):
        """Creating a note queues an audit entry the writer thread stores
        without touching the request."""
        alice = log_in("alice")
        note = alice.post("/notes", json={"title": "Audited"}).get_json()

        assert app.extensions["audit"].flush()
        db = sqlite3.connect(app.config["DATABASE"])
        try:
            rows = db.execute(
                "SELECT event, note_id, remote_addr FROM audit_log"
            ).fetchall()
        finally:
            db.close()

        assert [("note.created", note["id"], "127.0.0.1")] == rows
        assert [] == codes(guard)
        assert ["CG104"] == kept_request_control(app, guard)

    def test_request_log_values_are_reset(self, worker, log_in):
        """The values each request binds to the log context are reset when
        it ends."""
        alice = log_in("alice")
        alice.get("/notes")

        assert {} == worker.run(structlog.contextvars.get_contextvars)

    def test_concurrent_users_on_a_threaded_server(self, app, guard):
        """Four users at once on Werkzeug's threaded server report
        nothing."""
        server = make_server("127.0.0.1", 0, app, threaded=True)
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        base = f"http://127.0.0.1:{server.server_port}"
        start = threading.Barrier(4)
        failures = []

        def use(username):
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}),
                urllib.request.HTTPCookieProcessor(CookieJar()),
            )

            def call(path, body=None):
                data = None if body is None else json.dumps(body).encode()
                request = urllib.request.Request(
                    base + path,
                    data=data,
                    headers={"Content-Type": "application/json"},
                )
                with opener.open(request, timeout=10) as response:
                    return response.status

            start.wait(timeout=10)
            password = f"{username}-secret"
            statuses = [
                call(
                    "/auth/login",
                    {"username": username, "password": password},
                )
            ]
            for number in range(3):
                statuses.append(call("/notes"))
                statuses.append(call("/notes", {"title": f"{number}"}))
                statuses.append(call("/notes/digest"))
                statuses.append(call("/auth/me"))
            if set(statuses) - {200, 201}:
                failures.append((username, statuses))

        clients = [
            threading.Thread(target=use, args=(name,))
            for name in ("alice", "bob", "carol", "dave")
        ]
        try:
            for client in clients:
                client.start()
            for client in clients:
                client.join(timeout=30)
        finally:
            server.shutdown()
            serving.join(timeout=10)
            server.server_close()

        assert [] == failures
        assert [] == codes(guard)
        assert ["CG104"] == kept_request_control(app, guard)

    def test_concurrent_users_under_gunicorn(self, tmp_path):
        """Four users at once on gunicorn's pooled gthread workers log no
        contamination; a buggy route on the same server then logs its
        CG103."""
        server = demo.Server(str(tmp_path), threads=4)
        traffic = demo.Traffic()

        def credentials_of(client):
            return {
                "username": client.user.username,
                "password": client.user.password,
            }

        def use(client):
            traffic.call(client, "POST", "/auth/login", credentials_of(client))
            for number in range(3):
                traffic.call(client, "GET", "/notes")
                traffic.call(client, "POST", "/notes", {"title": f"{number}"})
                traffic.call(client, "GET", "/notes/digest")
                traffic.call(client, "GET", "/notes/export.csv")
                traffic.call(client, "GET", "/auth/me")

        try:
            port = server.start(timeout=30)
            demo.wait_until_healthy(port, timeout=30)
            clients = [
                threading.Thread(target=use, args=(demo.Client(port, user),))
                for user in DEMO_USERS
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join(timeout=60)
            # The positive control: the same server, the same log.
            control = demo.Client(port, DEMO_USERS[0])
            use_buggy = ["/buggy/whoami", "/buggy/whoami"]
            traffic.call(
                control, "POST", "/auth/login", credentials_of(control)
            )
            for path in use_buggy:
                traffic.call(control, "GET", path)
        finally:
            server.stop()
        finished = [
            event
            for event, _ in server.events()
            if event["event"] == "request.finished"
            and event["endpoint"] != "service.healthz"
        ]
        found = {
            (event["code"], event["accessor"]["path"])
            for event, _ in server.contamination()
        }

        assert [] == traffic.failed
        assert 4 * 16 + 1 + len(use_buggy) == len(finished)
        assert {("CG103", "/buggy/whoami")} == found


class TestBuggyRoutes:
    def test_current_user_cache_is_cg103(self, guard, log_in):
        """The module-level viewer cache serves the first request's 'g' to
        the next: CG103."""
        alice, carol = log_in("alice"), log_in("carol")
        alice.get("/buggy/whoami")

        seen = carol.get("/buggy/whoami").get_json()

        assert ["CG103"] == codes(guard)
        violation = guard.violations[0]
        assert "g" == violation.subject
        assert "buggy.whoami" == violation.origin.endpoint
        assert "buggy.whoami" == violation.accessor.endpoint
        assert {"user": "carol", "tenant": "acme"} == seen

    def test_audit_thread_reading_the_request_is_cg102(
        self, app, guard, log_in
    ):
        """The audit writer reads the kept request after the response:
        CG102."""
        alice = log_in("alice")
        response = alice.post("/buggy/notes/1/share")

        assert app.extensions["audit"].flush()

        assert 200 == response.status_code
        assert {"CG102"} == set(codes(guard))
        violation = guard.violations[0]
        assert "request" == violation.subject
        assert "audit-writer" == violation.thread
        assert violation.accessor is None

    def test_search_pool_reading_the_request_is_cg104(self, guard, log_in):
        """The search pool's threads read the in-flight request: CG104."""
        alice = log_in("alice")

        notes = alice.get("/buggy/search?q=roadmap").get_json()["notes"]

        assert ["Q3 roadmap"] == [note["title"] for note in notes]
        assert {"CG104"} == set(codes(guard))
        assert {"buggy.search"} == {
            v.origin.endpoint for v in guard.violations
        }

    def test_tenant_contextvar_never_reset_is_cg106(self, guard, log_in):
        """The report tenant set without a reset is still there for the
        thread's next request: CG106."""
        alice = log_in("alice")
        alice.get("/buggy/reports/usage")

        assert [] == codes(guard)

        alice.get("/notes")

        assert ["CG106"] == codes(guard)
        violation = guard.violations[0]
        assert "ContextVar report_tenant" == violation.subject
        assert "buggy.usage_report" == violation.origin.endpoint
        assert "notes.list_notes" == violation.accessor.endpoint

    def test_bind_contextvars_without_unbinding_is_cg106(self, guard, log_in):
        """structlog's bind_contextvars without unbinding leaks the import
        id into the next request: CG106."""
        alice = log_in("alice")
        response = alice.post(
            "/buggy/imports", json={"notes": [{"title": "x"}]}
        )

        alice.get("/auth/me")

        assert 201 == response.status_code
        assert ["CG106"] == codes(guard)
        violation = guard.violations[0]
        assert "ContextVar structlog_import_id" == violation.subject
        assert "buggy.import_notes" == violation.origin.endpoint

    @needs_shared_g
    def test_digest_job_in_an_app_context_is_cg101(self, guard, log_in):
        """The digest job's requests share its app context, and the first
        user's 'g._login_user': CG101."""
        alice = log_in("alice")

        digests = alice.post("/buggy/digests").get_json()["digests"]

        assert {"CG101"} == set(codes(guard))
        assert {"g._login_user"} == {v.subject for v in guard.violations}
        assert {"alice"} == {digest["rendered_for"] for digest in digests}
        assert ["alice", "bob", "carol", "dave"] == [
            digest["recipient"] for digest in digests
        ]

    @needs_shared_g
    def test_digest_command_is_cg101(self, app, guard, worker):
        """'flask buggy send-digests' renders every digest as the first
        user: CG101."""
        runner = app.test_cli_runner()

        result = worker.run(runner.invoke, args=["buggy", "send-digests"])

        assert 0 == result.exit_code, result.output
        assert "carol: 2 notes, rendered for 'alice' (acme)" in result.output
        assert {"CG101"} == set(codes(guard))

    def test_raise_mode_fails_the_request(self, tmp_path, worker):
        """In raise mode, the default under TESTING, the second whoami
        raises ContaminationError."""
        app = create_app(config(tmp_path, CTXGUARD_MODE="raise"))
        alice = Browser(app.test_client(), worker)
        alice.post(
            "/auth/login",
            json={"username": "alice", "password": "alice-secret"},
        )
        alice.get("/buggy/whoami")

        with pytest.raises(ContaminationError, match=r"^CG103 "):
            alice.get("/buggy/whoami")


class TestLogs:
    def test_violation_is_one_json_line(self, capsys, log_in, guard):
        """A violation is logged as one JSON object per line, with the
        request's own log context."""
        alice, carol = log_in("alice"), log_in("carol")
        alice.get("/buggy/whoami")
        capsys.readouterr()

        carol.get("/buggy/whoami")

        assert ["CG103"] == codes(guard)
        events = [
            json.loads(line)
            for line in capsys.readouterr().err.splitlines()
            if line.startswith("{")
        ]
        (event,) = [e for e in events if e["event"] == "contamination"]
        assert {
            "code": "CG103",
            "level": "warning",
            "logger": "flask_ctxguard",
            "user": "carol",
            "docs": "https://flask-ctxguard.readthedocs.io/en/latest/rules/cg103.html",
        } == {
            key: event[key]
            for key in ("code", "level", "logger", "user", "docs")
        }
        assert guard.violations[0].log_fields()["message"] == event["message"]


class TestDemo:
    @needs_shared_g
    def test_demo_reports_every_code(self, tmp_path):
        """'python -m example_app.demo' exits 0, shows a full report of
        each runtime code and writes the HTML report."""
        html = tmp_path / "demo.html"
        result = subprocess.run(
            [sys.executable, "-m", "example_app.demo", "--html", str(html)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )

        assert 0 == result.returncode, result.stdout + result.stderr
        for code in ("CG101", "CG102", "CG103", "CG104", "CG106"):
            url = f"{DOCS_URL}rules/{code.lower()}.html"
            assert f"docs: {url}" in result.stdout
        assert "Reported: CG101, CG102, CG103, CG104, CG106." in (
            result.stdout
        )
        assert result.stdout.endswith(
            f"The HTML report, a timeline per finding: {html}\n"
        )
        page = html.read_text(encoding="utf-8")
        for code in ("CG101", "CG102", "CG103", "CG104", "CG106"):
            assert f">{code}</a>" in page
        assert page.count('<svg xmlns="http://www.w3.org/2000/svg"') >= 5
