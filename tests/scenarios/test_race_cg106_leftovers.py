"""
CG106 contextvar-leak: a request that did not set a ContextVar runs with
the value an earlier request left in it. Each program shows the leak on
plain Flask (the second user is served with the first one's data) and is
reported by the guard, with identical responses.
"""

from __future__ import annotations

import contextvars
import dataclasses
import json
from typing import Any

import structlog
from flask import Blueprint, Flask, g, request

from tests.helpers import (
    http_get,
    pooled,
    run_bare_and_guarded,
    serve_waitress,
)


class TenantFromAHeaderUnderWaitress:
    """
    The tenant is set only when the 'X-Tenant' header is present; under
    waitress with one worker thread, a request without it is served as the
    previous tenant.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")

        @app.before_request
        def select_tenant() -> None:
            if "X-Tenant" in request.headers:
                tenant.set(request.headers["X-Tenant"])

        @app.get("/invoices")
        def invoices() -> str:
            return f"invoices of {tenant.get('public')}"

    def drive(self) -> list[Any]:
        with serve_waitress(self.app, threads=1) as port:
            return [
                http_get(port, "/invoices", {"X-Tenant": "acme"}),
                http_get(port, "/invoices"),
            ]


@dataclasses.dataclass
class User:
    """A user loaded for one request."""

    name: str


class SetByLoginReadByProfile:
    """
    '/login/<name>' sets the current user; '/profile' reads it (and keeps
    it on g, as views do) without setting it: on the same pooled thread,
    the next caller's profile is the previous caller's.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        current: contextvars.ContextVar[User] = contextvars.ContextVar("user")

        @app.get("/login/<name>")
        def login(name: str) -> str:
            current.set(User(name))
            return f"welcome {name}"

        @app.get("/profile")
        def profile() -> str:
            g.user = current.get(None)
            return f"profile of {g.user.name if g.user else 'nobody'}"

    def drive(self) -> list[Any]:
        return pooled(self.app, [("/login/alice", {}), ("/profile", {})])


class SetInABlueprintsTeardown:
    """
    The admin blueprint records the last admin action in a ContextVar in
    its teardown_request and never resets it; the public page, served next
    on the same thread, shows it.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        admin = Blueprint("admin", __name__, url_prefix="/admin")
        action: contextvars.ContextVar[str] = contextvars.ContextVar("action")

        @admin.teardown_request
        def record_action(exc: BaseException | None) -> None:
            action.set(f"{request.method} {request.full_path}")

        @admin.get("/purge")
        def purge() -> str:
            return "purged"

        @app.get("/status")
        def status() -> str:
            return f"last action: {action.get('none')}"

        app.register_blueprint(admin)

    def drive(self) -> list[Any]:
        return pooled(self.app, [("/admin/purge?all=1", {}), ("/status", {})])


class SetInAfterRequestForSomeEndpoints:
    """
    An after_request hook sets the response's cache policy in a
    ContextVar for the endpoints that have one, and never resets it; the
    next request's view reads it.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        policy: contextvars.ContextVar[str] = contextvars.ContextVar("policy")

        @app.after_request
        def remember_policy(response: Any) -> Any:
            if request.args.get("cache"):
                policy.set(f"max-age={request.args['cache']}")
            return response

        @app.get("/page")
        def page() -> str:
            return f"policy {policy.get('none')}"

    def drive(self) -> list[Any]:
        return pooled(
            self.app, [("/page?cache=60", {}), ("/page", {}), ("/page", {})]
        )


class StructlogRequestIdWithoutClear:
    """
    structlog's request id bound from a header when the proxy sends one,
    without 'clear_contextvars()': the next request's logs carry the
    previous request's id.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.before_request
        def bind_request_id() -> None:
            request_id = request.headers.get("X-Request-Id")
            if request_id:
                structlog.contextvars.bind_contextvars(
                    request_id=request_id.strip()
                )

        @app.get("/log-context")
        def log_context() -> str:
            context = structlog.contextvars.get_contextvars()
            return json.dumps(context, sort_keys=True)

    def drive(self) -> list[Any]:
        return pooled(
            self.app,
            [
                ("/log-context", {"X-Request-Id": " req-1 "}),
                ("/log-context", {}),
            ],
        )


class TestRaceCG106Leftovers:
    def test_race_tenant_header_under_waitress(self):
        """A tenant set only when a header is present, kept into the next
        request under waitress, is CG106; on plain Flask the next request
        sees 'acme'."""
        run = run_bare_and_guarded(TenantFromAHeaderUnderWaitress)

        assert [(200, b"invoices of acme")] * 2 == run.bare
        assert run.bare == run.guarded
        assert [("CG106", "ContextVar tenant")] == [
            (v.code, v.subject) for v in run.violations
        ]

    def test_race_set_by_one_endpoint_read_by_another(self):
        """A user set by '/login' and read (and kept on g) by '/profile',
        which never sets it, is CG106; on plain Flask the profile is
        alice's."""
        run = run_bare_and_guarded(SetByLoginReadByProfile)

        assert [(200, b"welcome alice"), (200, b"profile of alice")] == (
            run.bare
        )
        assert run.bare == run.guarded
        violation = run.violations[0]
        assert ["CG106"] == run.codes
        assert ("ContextVar user", "/login/alice", "/profile", "User") == (
            violation.subject,
            violation.origin.path,
            violation.accessor.path,
            violation.value_type,
        )

    def test_race_set_in_a_blueprints_teardown(self):
        """A value a blueprint's teardown_request set and never reset,
        held through the next request, is CG106; on plain Flask the status
        page shows the admin's action."""
        run = run_bare_and_guarded(SetInABlueprintsTeardown)

        assert [
            (200, b"purged"),
            (200, b"last action: GET /admin/purge?all=1"),
        ] == run.bare
        assert run.bare == run.guarded
        assert [("CG106", "ContextVar action")] == [
            (v.code, v.subject) for v in run.violations
        ]

    def test_race_set_in_after_request_for_some_endpoints(self):
        """A value an after_request hook set for one request and never
        reset, held by the next two, is CG106 for each; on plain Flask
        they see the first one's policy."""
        run = run_bare_and_guarded(SetInAfterRequestForSomeEndpoints)

        assert [(200, b"policy none")] + [(200, b"policy max-age=60")] * 2 == (
            run.bare
        )
        assert run.bare == run.guarded
        assert [("CG106", "ContextVar policy")] * 2 == [
            (v.code, v.subject) for v in run.violations
        ]

    def test_race_structlog_request_id_without_clear(self):
        """A structlog request id bound without clearing, kept into the
        next request, is CG106; on plain Flask its logs carry 'req-1'."""
        run = run_bare_and_guarded(StructlogRequestIdWithoutClear)

        assert [(200, b'{"request_id": "req-1"}')] * 2 == run.bare
        assert run.bare == run.guarded
        assert [("CG106", "ContextVar structlog_request_id")] == [
            (v.code, v.subject) for v in run.violations
        ]
