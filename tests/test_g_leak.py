from __future__ import annotations

import flask
import flask_login
import pytest
import werkzeug
from flask import Flask, appcontext_pushed, g

import flask_ctxguard
from flask_ctxguard import ContaminationError, CtxGuard
from tests._compat import needs_shared_g
from tests.helpers import is_library_path, kept_request_control


@pytest.fixture(name="app")
def _app():
    app = Flask("shop")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")

    @app.route("/login/<name>")
    def login(name):
        g.user = name
        return name

    return app


def _read_route(app, reader):
    app.add_url_rule("/read", "read", lambda: repr(reader()))


def _shared_g_control(app, guard):
    """
    The positive control of a silent test: the same app and guard report
    '/read' of a 'g.user' that '/login' set in one shared app context.
    """
    before = len(guard.violations)
    client = app.test_client()
    with app.app_context():
        client.get("/login/control")
        client.get("/read")
    return [v.code for v in list(guard.violations)[before:]]


READ_PATHS = {
    "attribute": (lambda: g.user, "read"),
    "getattr with a default": (lambda: getattr(g, "user", None), "read"),
    "hasattr": (lambda: hasattr(g, "user"), "read"),
    "get": (lambda: g.get("user"), "read (g.get)"),
    "in": (lambda: "user" in g, "looked up ('in')"),
    "iteration": (lambda: sorted(g), "iterated over"),
    "pop": (lambda: g.pop("user"), "popped"),
    "setdefault": (lambda: g.setdefault("user", "nobody"), "read"),
}


class TestEveryReadPath:
    @needs_shared_g
    @pytest.mark.parametrize("path", sorted(READ_PATHS))
    def test_read_in_another_request_is_cg101(self, app, path):
        """A g attribute set in one request and read in the next is CG101,
        whichever way it is read."""
        reader, verb = READ_PATHS[path]
        _read_route(app, reader)
        guard = CtxGuard(app)
        client = app.test_client()

        with app.app_context():
            client.get("/login/alice")
            client.get("/read")

        violations = guard.violations
        assert ["CG101"] == [v.code for v in violations]
        violation = violations[0]
        assert "g.user" == violation.subject
        assert f"'g.user' was {verb}" in violation.message
        assert "/login/alice" == violation.origin.path
        assert "/read" == violation.accessor.path
        assert violation.origin.token != violation.accessor.token
        assert violation.origin_site.endswith("in login")
        assert "str" == violation.value_type

    @pytest.mark.parametrize("path", sorted(READ_PATHS))
    @needs_shared_g
    def test_same_answer_as_bare_flask(self, app, path):
        """Log mode changes no response, whichever way g is read, while the
        read is reported."""
        reader, _ = READ_PATHS[path]
        _read_route(app, reader)

        def run():
            client = app.test_client()
            with app.app_context():
                client.get("/login/alice")
                return client.get("/read").data

        bare = run()
        guard = CtxGuard(app)

        assert bare == run()
        assert ["CG101"] == [v.code for v in guard.violations]


class TestSilence:
    @needs_shared_g
    def test_fresh_app_context_per_request(self, app):
        """Ordinary requests, each with its own app context, are clean."""
        _read_route(app, lambda: getattr(g, "user", None))
        guard = CtxGuard(app)
        client = app.test_client()

        client.get("/login/alice")
        response = client.get("/read")

        assert b"None" == response.data
        assert [] == guard.violations
        assert ["CG101"] == _shared_g_control(app, guard)

    @needs_shared_g
    def test_value_injected_outside_requests(self, app):
        """A value a test sets on g outside any request is not flagged."""
        _read_route(app, lambda: g.user)
        guard = CtxGuard(app)
        client = app.test_client()

        with app.app_context():
            g.user = "fake"
            first = client.get("/read")
            second = client.get("/read")

        assert [b"'fake'"] * 2 == [first.data, second.data]
        assert [] == guard.violations
        assert ["CG101"] == _shared_g_control(app, guard)

    @needs_shared_g
    def test_value_injected_through_appcontext_pushed(self, app):
        """Flask's documented appcontext_pushed fake is not flagged."""
        _read_route(app, lambda: g.user)
        guard = CtxGuard(app)

        def inject(sender, **kwargs):
            g.user = "fake"

        with appcontext_pushed.connected_to(inject, app):
            response = app.test_client().get("/read")

        assert b"'fake'" == response.data
        assert [] == guard.violations
        assert ["CG101"] == _shared_g_control(app, guard)

    @needs_shared_g
    def test_reinjected_after_a_request(self, app):
        """A value re-set outside requests loses its request owner."""
        _read_route(app, lambda: g.user)
        guard = CtxGuard(app)
        client = app.test_client()

        with app.app_context():
            client.get("/login/alice")
            g.user = "fake"
            response = client.get("/read")

        assert b"'fake'" == response.data
        assert [] == guard.violations
        assert ["CG101"] == _shared_g_control(app, guard)

    def test_overwritten_before_read(self, app):
        """A request that sets the attribute itself reads its own value."""

        @app.route("/whoami/<name>")
        def whoami(name):
            g.user = name
            return g.user

        guard = CtxGuard(app)
        client = app.test_client()

        with app.app_context():
            client.get("/login/alice")
            response = client.get("/whoami/bob")

        assert b"bob" == response.data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    @needs_shared_g
    def test_test_code_reads_after_the_request(self, app):
        """Test code reading g between requests is not a request: clean."""
        guard = CtxGuard(app)
        client = app.test_client()

        with app.app_context():
            client.get("/login/alice")
            seen = g.user

        assert "alice" == seen
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    @needs_shared_g
    def test_deleted_attribute(self, app):
        """An attribute deleted outside requests is no longer tracked."""
        _read_route(app, lambda: getattr(g, "user", None))
        guard = CtxGuard(app)
        client = app.test_client()

        with app.app_context():
            client.get("/login/alice")
            del g.user
            response = client.get("/read")

        assert b"None" == response.data
        assert [] == guard.violations
        assert ["CG101"] == _shared_g_control(app, guard)


class TestSharedContexts:
    @needs_shared_g
    def test_request_context_pushed_around_requests(self, app):
        """A test_request_context pushed around client requests (as
        pytest-flask does) shares g: CG101."""
        _read_route(app, lambda: g.user)
        guard = CtxGuard(app)
        client = app.test_client()

        with app.test_request_context():
            client.get("/login/alice")
            client.get("/read")

        assert ["CG101"] == [v.code for v in guard.violations]

    @needs_shared_g
    def test_flask_login_current_user(self):
        """Flask-Login's current_user of one request is seen by the next
        when an app context is pushed around them."""
        app = Flask("login")
        app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
        manager = flask_login.LoginManager(app)
        users = {"alice": flask_login.UserMixin(), "bob": None}
        users["alice"].id = "alice"

        @manager.user_loader
        def load(user_id):
            return users.get(user_id)

        @app.route("/login/<name>")
        def login(name):
            flask_login.login_user(users[name])
            return flask_login.current_user.id

        @app.route("/me")
        def me():
            user = flask_login.current_user
            return user.id if user.is_authenticated else "anonymous"

        def run():
            with app.app_context():
                app.test_client().get("/login/alice")
                return app.test_client().get("/me").data

        bare = run()
        guard = CtxGuard(app)
        guarded = run()

        assert b"alice" == bare == guarded
        violation = guard.violations[0]
        assert "CG101" == violation.code
        assert "g._login_user" == violation.subject
        assert violation.access_site.endswith("in me")

    @needs_shared_g
    def test_raise_mode_raises_at_the_read(self, app):
        """In raise mode the read raises ContaminationError in the view."""
        _read_route(app, lambda: g.user)
        app.config.update(CTXGUARD_MODE="raise", TESTING=True)
        CtxGuard(app)
        client = app.test_client()

        with app.app_context():
            client.get("/login/alice")
            with pytest.raises(ContaminationError) as excinfo:
                client.get("/read")

        assert "CG101" == excinfo.value.violation.code
        user_frames = [
            entry
            for entry in excinfo.traceback
            if not is_library_path(entry.path, flask, werkzeug, flask_ctxguard)
        ]
        assert "<lambda>" == user_frames[-1].name
        assert __file__ == str(user_frames[-1].path)
