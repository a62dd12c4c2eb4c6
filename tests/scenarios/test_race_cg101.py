"""
CG101 g-leak: programs in which a ``g`` attribute written by one request is
read by the next, because the requests share one application context.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, g, request
from flask_login import LoginManager, UserMixin, current_user, login_user

from tests._compat import needs_shared_g
from tests.helpers import (
    drive_in_raise_mode,
    last_user_frame,
    line_of,
    reply,
    run_bare_and_guarded,
)


class LoginInSharedAppContext:
    """
    A test pushes an app context around its test-client requests: 'g.user'
    set by alice's login is still there for bob's anonymous request.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.post("/login/<name>")
        def login(name: str) -> str:
            g.user = name
            return f"welcome {name}"

        @app.get("/whoami")
        def whoami() -> str:
            return getattr(g, "user", "anonymous")  # <- CG101 g.user

    def drive(self) -> list[Any]:
        alice, bob = self.app.test_client(), self.app.test_client()
        with self.app.app_context():
            return [
                reply(alice.post("/login/alice")),
                reply(bob.get("/whoami")),
            ]


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


class FlaskLoginInSharedAppContext:
    """
    Real Flask-Login under an app context pushed around test-client
    requests: 'current_user' of alice's login request is bob's too.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"
        login_manager = LoginManager(app)

        @login_manager.user_loader
        def load_user(user_id: str) -> User:
            return User(user_id)

        @app.post("/login/<name>")
        def login(name: str) -> str:
            login_user(User(name))
            return "logged in"

        @app.get("/account")
        def account() -> str:
            if current_user.is_authenticated:  # <- CG101 current_user
                return f"account of {current_user.id}"
            return "please log in"

    def drive(self) -> list[Any]:
        alice, bob = self.app.test_client(), self.app.test_client()
        with self.app.app_context():
            return [
                reply(alice.post("/login/alice")),
                reply(bob.get("/account")),
            ]


class LazyTenantInSharedAppContext:
    """
    A before_request hook loads the tenant lazily ('if "tenant" not in g');
    with a shared app context the second tenant is served the first's.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.before_request
        def load_tenant() -> None:
            if "tenant" not in g:  # <- CG101 'in'
                g.tenant = request.headers["X-Tenant"]

        @app.get("/invoices")
        def invoices() -> str:
            return f"invoices of {g.tenant}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        with self.app.app_context():
            return [
                reply(client.get("/invoices", headers={"X-Tenant": "acme"})),
                reply(client.get("/invoices", headers={"X-Tenant": "globex"})),
            ]


class TestRaceCG101:
    @needs_shared_g
    def test_race_g_user_of_alice_seen_by_bob(self):
        """'g.user' set in alice's request and read in bob's is CG101."""
        run = run_bare_and_guarded(LoginInSharedAppContext)

        assert [(200, b"welcome alice"), (200, b"alice")] == run.bare
        assert run.bare == run.guarded
        assert ["CG101"] == run.codes
        violation = run.violations[0]
        assert "g.user" == violation.subject
        assert ("/login/alice", "/whoami") == (
            violation.origin.path,
            violation.accessor.path,
        )

    @needs_shared_g
    def test_race_flask_login_current_user_leaks(self):
        """Flask-Login's 'current_user' of a login request seen by another
        client is CG101 on 'g._login_user'."""
        run = run_bare_and_guarded(FlaskLoginInSharedAppContext)

        assert [(200, b"logged in"), (200, b"account of alice")] == run.bare
        assert run.bare == run.guarded
        assert run.codes
        assert {"CG101"} == set(run.codes)
        assert {"g._login_user"} == {v.subject for v in run.violations}
        assert {("/login/alice", "/account")} == {
            (v.origin.path, v.accessor.path) for v in run.violations
        }

    @needs_shared_g
    def test_race_lazy_tenant_served_to_the_next_tenant(self):
        """A 'g' attribute found with 'in' and read in the next request is
        CG101."""
        run = run_bare_and_guarded(LazyTenantInSharedAppContext)

        assert [(200, b"invoices of acme"), (200, b"invoices of acme")] == (
            run.bare
        )
        assert run.bare == run.guarded
        assert ["CG101", "CG101"] == run.codes
        assert ["g.tenant", "g.tenant"] == [v.subject for v in run.violations]


class TestRaceCG101RaiseMode:
    @needs_shared_g
    def test_race_raises_at_the_read_of_g_user(self):
        """In raise mode the read of alice's 'g.user' in bob's request
        raises, and the traceback ends at that line."""
        program = LoginInSharedAppContext()
        program.app.testing = True  # let the error reach the test
        error = drive_in_raise_mode(program)

        assert "CG101" == error.violation.code
        assert (line_of(__file__, "# <- CG101 g.user"), "whoami") == (
            last_user_frame(error.__traceback__, __file__)
        )

    @needs_shared_g
    def test_race_raises_at_current_user(self):
        """In raise mode Flask-Login's leaked 'current_user' raises at the
        view line that used it."""
        program = FlaskLoginInSharedAppContext()
        program.app.testing = True
        error = drive_in_raise_mode(program)

        assert "CG101" == error.violation.code
        assert (line_of(__file__, "# <- CG101 current_user"), "account") == (
            last_user_frame(error.__traceback__, __file__)
        )
