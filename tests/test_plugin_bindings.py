"""
``pytest --ctxguard`` on a small suite of an app that binds the logged-in
user into structlog's context: it passes when the app clears the context
at the start of each request, and fails with CG106 naming the bind line
when it does not.
"""

from __future__ import annotations

import pytest

from tests.pytester_helpers import line_of, run, write_ini

#: The app: structlog's functions imported by name at import time, before
#: any guard; Flask-Login hands out cached users.
USERS_APP = """
    import structlog
    from flask import Flask
    from flask_login import LoginManager, UserMixin, current_user
    from structlog.contextvars import bind_contextvars, clear_contextvars

    CLEAR = True


    class User(UserMixin):
        def __init__(self, name):
            self.id = "user-" + name


    USERS = {}


    def create_app():
        app = Flask("users")
        app.secret_key = "not a secret"
        login = LoginManager(app)

        @login.request_loader
        def load_user(request):
            name = request.headers.get("X-User")
            if not name:
                return None
            return USERS.setdefault(name, User(name))

        @app.before_request
        def bind_log_context():
            if CLEAR:
                clear_contextvars()
            if current_user.is_authenticated:
                bind_contextvars(user_id=current_user.id)  # the bind

        @app.get("/")
        def index():
            structlog.get_logger().info("index")
            return structlog.contextvars.get_contextvars().get("user_id", "-")

        return app
"""

SUITE = """
    import pytest

    import users


    @pytest.fixture
    def client():
        return users.create_app().test_client()


    def test_alice(client):
        for _ in range(2):
            reply = client.get("/", headers={"X-User": "alice"})
            assert b"user-alice" == reply.data


    def test_alice_then_anonymous(client):
        client.get("/", headers={"X-User": "alice"})
        assert b"-" == client.get("/").data


    def test_bob(client):
        assert b"user-bob" == client.get("/", headers={"X-User": "bob"}).data
"""


@pytest.fixture(name="tester")
def _tester(pytester: pytest.Pytester) -> pytest.Pytester:
    write_ini(pytester)
    pytester.makepyfile(users=USERS_APP, test_users=SUITE)
    return pytester


class TestBindingSuites:
    def test_the_documented_pattern_passes(self, tester):
        """Clearing at the start of each request: every test passes, and
        nothing is reported at any test's teardown."""
        result = run(tester, "--ctxguard", subprocess=True)

        result.assert_outcomes(passed=3)
        result.stdout.no_fnmatch_line("*CG106*")

    def test_without_the_clear_the_bind_line_is_reported(self, tester):
        """Without the clear, the anonymous request inherits alice's id:
        that test fails with CG106, and the report names the bind line."""
        app = (tester.path / "users.py").read_text()
        (tester.path / "users.py").write_text(
            app.replace("CLEAR = True", "CLEAR = False")
        )
        line = line_of(tester, "users.py", "# the bind")

        result = run(tester, "--ctxguard", subprocess=True)

        outcomes = result.parseoutcomes()
        assert 1 == outcomes.get("failed")
        result.stdout.fnmatch_lines(
            [
                "*_ test_alice_then_anonymous _*",
                "CG106 contextvar-leak: ContextVar 'structlog_user_id' held*",
                f"  set at:      users.py:{line} in bind_log_context",
            ]
        )
