"""
Sites: where a report points, and how its stacks are trimmed.
"""

from __future__ import annotations

import inspect
import re
from concurrent.futures import ThreadPoolExecutor

import flask_login
from flask import Flask, g, render_template, request

from flask_ctxguard import CtxGuard
from flask_ctxguard._reporting.sites import relative
from tests._compat import needs_shared_g
from tests.helpers import add_g_user_views


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


class TestTemplatesAndLibraries:
    """Sites are the app's own lines, whichever library read for it."""

    @needs_shared_g
    def test_context_processor_read_is_the_views_line(self, tmp_path):
        """Flask-Login read through its template context processor: the
        site is the view's render_template line, not Flask-Login's."""
        (tmp_path / "page.html").write_text("<p>{{ current_user.id }}</p>\n")
        app = _login_app()
        app.template_folder = str(tmp_path)

        @app.route("/page")
        def page():
            return render_template("page.html")

        guard = CtxGuard(app)
        line = inspect.getsourcelines(page)[1] + 2

        _share_g(app, "/page")

        sites = {v.access_site for v in guard.violations}
        assert {f"{relative(__file__)}:{line} in page"} == sites

    @needs_shared_g
    def test_template_read_is_the_templates_line(self, tmp_path):
        """'g' read by a template is the template's own line and place,
        as Jinja's tracebacks show them."""
        (tmp_path / "user.html").write_text(
            "{% block body %}\n<h1>Hi</h1>\n<p>{{ g.user }}</p>\n"
            "{% endblock %}\n"
        )
        app = Flask("templates", template_folder=str(tmp_path))
        app.config.update(CTXGUARD_MODE="log")
        add_g_user_views(app)

        @app.route("/user")
        def user():
            return render_template("user.html")

        guard = CtxGuard(app)
        client = app.test_client()
        with app.app_context():
            client.get("/set/alice")
            response = client.get("/user")

        [violation] = guard.violations
        template = relative(str(tmp_path / "user.html"))
        assert b"alice" in response.data
        assert f"{template}:3 in block 'body'" == violation.access_site

    @needs_shared_g
    def test_installed_package_frames_are_skipped(self, tmp_path):
        """A helper in an installed package (here structlog's own
        directory stands in for site-packages) reading 'g' for a view: the
        view's line is the site."""
        app = Flask("installed")
        app.config.update(CTXGUARD_MODE="log")
        add_g_user_views(app)
        site_packages = tmp_path / "lib" / "site-packages"
        site_packages.mkdir(parents=True)
        helper = site_packages / "helperlib.py"
        helper.write_text(
            "from flask import g\n\ndef who():\n    return g.user\n"
        )
        namespace: dict[str, object] = {}
        exec(compile(helper.read_text(), str(helper), "exec"), namespace)
        who = namespace["who"]

        @app.route("/who")
        def who_view():
            return str(who())

        guard = CtxGuard(app)
        line = inspect.getsourcelines(who_view)[1] + 2
        client = app.test_client()
        with app.app_context():
            client.get("/set/alice")
            client.get("/who")

        [violation] = guard.violations
        assert f"{relative(__file__)}:{line} in who_view" == (
            violation.access_site
        )


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

    def test_threads_and_executors_fold(self):
        """A stack in an executor's worker thread folds the frames of
        threading and concurrent.futures into one line and keeps the
        user's function."""
        app = Flask("pool")
        app.config.update(CTXGUARD_MODE="log", CTXGUARD_STACKS=True)

        def read_args(raw):
            return raw.args.get("x")

        @app.route("/pool")
        def pool():
            raw = request._get_current_object()
            with ThreadPoolExecutor(1) as executor:
                return str(executor.submit(read_args, raw).result(5))

        guard = CtxGuard(app)
        response = app.test_client().get("/pool?x=1")

        [violation] = guard.violations
        stack = violation.access_stack or ""
        first = stack.splitlines()[0]
        assert b"1" == response.data
        assert "CG104" == violation.code
        assert re.fullmatch(
            r"  \[\d+ frames of threading, concurrent\.futures\]", first
        )
        assert "in read_args" in stack
        assert "threading.py" not in stack
        assert "concurrent/futures" not in stack

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
