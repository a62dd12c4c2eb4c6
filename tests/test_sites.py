"""
Sites: where a report points, and how its stacks are trimmed.
"""

from __future__ import annotations

import flask_login
from flask import Flask, g

from flask_ctxguard import CtxGuard
from tests._compat import needs_shared_g


def _login_app() -> Flask:
    """An app whose '/private' is behind Flask-Login's login_required."""
    app = Flask("login")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
    manager = flask_login.LoginManager(app)
    alice = flask_login.UserMixin()
    alice.id = "alice"

    @manager.user_loader
    def load(user_id):
        return alice if user_id == "alice" else None

    @app.route("/login")
    def login():
        flask_login.login_user(alice)
        return "in"

    @app.route("/private")
    @flask_login.login_required
    def private():
        return "private"

    @app.route("/read")
    def read():
        return str(g.get("_login_user"))

    return app


def _share_g(app: Flask, path: str) -> None:
    """Log in, then request *path*, in one pushed app context."""
    client = app.test_client()
    with app.app_context():
        client.get("/login")
        client.get(path)


class TestAccessSite:
    @needs_shared_g
    def test_a_library_reading_in_a_request_is_the_site(self):
        """login_required reading 'g' before the view runs: the site is
        Flask-Login's reading frame, not the test that sent the request."""
        app = _login_app()
        guard = CtxGuard(app)

        _share_g(app, "/private")

        sites = {v.access_site for v in guard.violations}
        assert {"g._login_user"} == {v.subject for v in guard.violations}
        assert all("flask_login" in (site or "") for site in sites), sites
        assert not any(__file__ in (site or "") for site in sites)

    @needs_shared_g
    def test_the_users_view_is_the_site(self):
        """The positive control: a view reading 'g' itself is the site."""
        app = _login_app()
        guard = CtxGuard(app)

        _share_g(app, "/read")

        [violation] = guard.violations
        assert violation.access_site is not None
        assert violation.access_site.endswith("in read")
        assert "test_sites.py" in violation.access_site


class TestStacks:
    @needs_shared_g
    def test_stacks_fold_the_runner_and_the_web_stack(self):
        """Full stacks fold pytest's, pluggy's, Flask's and Werkzeug's
        frames and keep the user's."""
        app = _login_app()
        app.config.update(CTXGUARD_STACKS=True)
        guard = CtxGuard(app)

        _share_g(app, "/read")

        [violation] = guard.violations
        stack = violation.access_stack or ""
        assert "frames of" in stack
        assert "pluggy" in stack
        assert "/pluggy/" not in stack
        assert "/werkzeug/" not in stack
        assert f'File "{__file__}"' in stack
        assert "in _share_g" in stack

    def test_cg106_names_requests_not_lines(self):
        """A ContextVar leak names the requests during which it was set and
        held, and a fix for that variable, not structlog's."""
        import contextvars

        tenant = contextvars.ContextVar("tenant_sites")
        app = Flask("cv")
        app.config.update(CTXGUARD_MODE="log")

        @app.route("/set")
        def set_tenant():
            tenant.set(object())
            return "set"

        @app.route("/plain")
        def plain():
            return "plain"

        guard = CtxGuard(app)
        client = app.test_client()
        context = contextvars.copy_context()
        context.run(client.get, "/set")
        context.run(client.get, "/plain")

        [violation] = guard.violations
        assert "GET /set (endpoint 'set_tenant')" == violation.origin_site
        assert "GET /plain (endpoint 'plain')" == violation.access_site
        assert violation.hint.startswith(
            "reset 'tenant_sites' with the token its set() returned"
        )
