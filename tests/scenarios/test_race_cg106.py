"""
CG106 contextvar-leak: programs in which a ContextVar set during one request
and never reset keeps its value, on a pooled thread, through the next.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

import structlog
from asgiref.local import Local
from flask import Flask, request

from flask_ctxguard import ContaminationError
from tests._compat import raises_at_teardown
from tests.helpers import (
    guarded,
    http_get,
    isolated,
    pooled,
    reply,
    run_bare_and_guarded,
    serve_waitress,
)


class TenantVarOnAPooledThread:
    """
    A tenant ContextVar set from a header and never reset: on a pooled
    worker thread, the next request without the header runs as the
    previous tenant.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.tenant: contextvars.ContextVar[str] = contextvars.ContextVar(
            "tenant"
        )

        @app.before_request
        def select_tenant() -> None:
            if "X-Tenant" in request.headers:
                self.tenant.set(request.headers["X-Tenant"])

        @app.get("/invoices")
        def invoices() -> str:
            return f"invoices of {self.tenant.get('public')}"

    def drive(self) -> list[Any]:
        return pooled(
            self.app,
            [("/invoices", {"X-Tenant": "acme"}), ("/invoices", {})],
            thread_name_prefix="server",
        )


class StructlogBindWithoutClearUnderWaitress:
    """
    structlog's 'bind_contextvars' at login without 'clear_contextvars' at
    request start, under waitress: the next request on that worker thread
    logs as the previous user.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.before_request
        def bind_user() -> None:
            user = request.headers.get("X-User")
            if user is not None:
                structlog.contextvars.bind_contextvars(user=user)

        @app.get("/log-context")
        def log_context() -> str:
            context = structlog.contextvars.get_contextvars()
            return json.dumps(context, sort_keys=True)

    def drive(self) -> list[Any]:
        with serve_waitress(self.app, threads=1) as port:
            return [
                http_get(port, "/log-context", {"X-User": "alice"}),
                http_get(port, "/log-context"),
            ]


class LocaleVarInTheTestClientThread:
    """
    A locale ContextVar set only when '?lang=' is given: the test client
    runs every request in the test's thread, so the next test-client
    request is answered in the previous one's language.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.locale: contextvars.ContextVar[str] = contextvars.ContextVar(
            "locale"
        )
        greetings = {"en": "hello", "fr": "bonjour"}

        @app.before_request
        def select_locale() -> None:
            if "lang" in request.args:
                self.locale.set(request.args["lang"])

        @app.get("/greet/<name>")
        def greet(name: str) -> str:
            return f"{greetings[self.locale.get('en')]} {name}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.get("/greet/amelie?lang=fr")),
            reply(client.get("/greet/bob")),
        ]


class TenantInAsgirefLocal:
    """
    The tenant kept in an 'asgiref.local.Local' (a ContextVar underneath),
    as Django-style code does, set from a header and never cleared: on a
    pooled worker thread, the next request runs as the previous tenant.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.current = Local()

        @app.before_request
        def select_tenant() -> None:
            if "X-Tenant" in request.headers:
                self.current.tenant = request.headers["X-Tenant"]

        @app.get("/invoices")
        def invoices() -> str:
            return f"invoices of {getattr(self.current, 'tenant', 'public')}"

    def drive(self) -> list[Any]:
        return pooled(
            self.app,
            [("/invoices", {"X-Tenant": "acme"}), ("/invoices", {})],
            thread_name_prefix="server",
        )


class LocaleSetInAsyncView:
    """
    An async view sets a locale ContextVar and never resets it; asgiref
    copies the change back to the calling thread, so the next (sync)
    request on that thread answers in that language.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.locale: contextvars.ContextVar[str] = contextvars.ContextVar(
            "locale"
        )
        greetings = {"en": "hello", "fr": "bonjour"}

        @app.get("/welcome")
        async def welcome() -> str:
            if "lang" in request.args:
                self.locale.set(request.args["lang"])
            await asyncio.sleep(0)
            return greetings[self.locale.get("en")]

        @app.get("/greet/<name>")
        def greet(name: str) -> str:
            return f"{greetings[self.locale.get('en')]} {name}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.get("/welcome?lang=fr")),
            reply(client.get("/greet/bob")),
        ]


class TestRaceCG106:
    def test_race_tenant_of_the_previous_request(self):
        """A tenant ContextVar kept from the previous request on a pooled
        thread is CG106; on plain Flask the next request sees 'acme'."""
        run = run_bare_and_guarded(TenantVarOnAPooledThread)

        assert [(200, b"invoices of acme"), (200, b"invoices of acme")] == (
            run.bare
        )
        assert run.bare == run.guarded
        assert ["CG106"] == run.codes
        violation = run.violations[0]
        assert ("ContextVar tenant", "server_0") == (
            violation.subject,
            violation.accessor.thread_name,
        )

    def test_race_structlog_context_of_the_previous_user(self):
        """structlog context bound without clearing, kept into the next
        request under waitress, is CG106; on plain Flask bob's request
        logs as alice."""
        run = run_bare_and_guarded(StructlogBindWithoutClearUnderWaitress)

        assert [(200, b'{"user": "alice"}'), (200, b'{"user": "alice"}')] == (
            run.bare
        )
        assert run.bare == run.guarded
        assert ["CG106"] == run.codes
        assert "ContextVar structlog_user" == run.violations[0].subject

    def test_race_locale_of_the_previous_test_client_request(self):
        """A ContextVar kept between two test-client requests in the same
        thread is CG106; on plain Flask bob is greeted in French."""
        run = run_bare_and_guarded(LocaleVarInTheTestClientThread)

        assert [(200, b"bonjour amelie"), (200, b"bonjour bob")] == run.bare
        assert run.bare == run.guarded
        assert ["CG106"] == run.codes
        violation = run.violations[0]
        assert ("/greet/amelie", "/greet/bob") == (
            violation.origin.path,
            violation.accessor.path,
        )

    def test_race_tenant_kept_in_an_asgiref_local(self):
        """A tenant kept in an 'asgiref.local.Local' from the previous
        request on a pooled thread is CG106; on plain Flask the next
        request sees 'acme'."""
        run = run_bare_and_guarded(TenantInAsgirefLocal)

        assert [(200, b"invoices of acme"), (200, b"invoices of acme")] == (
            run.bare
        )
        assert run.bare == run.guarded
        assert ["CG106"] == run.codes
        assert "ContextVar asgiref.local" == run.violations[0].subject

    def test_race_locale_set_in_an_async_view(self):
        """A ContextVar an async view set and never reset, held through the
        next request, is CG106; on plain Flask bob is greeted in French."""
        run = run_bare_and_guarded(LocaleSetInAsyncView)

        assert [(200, b"bonjour"), (200, b"bonjour bob")] == run.bare
        assert run.bare == run.guarded
        assert ["CG106"] == run.codes
        assert ("ContextVar locale", "/welcome", "/greet/bob") == (
            run.violations[0].subject,
            run.violations[0].origin.path,
            run.violations[0].accessor.path,
        )


class TestRaceCG106RaiseMode:
    def test_race_raises_when_the_leaking_request_ends(self):
        """In raise mode the request that ran with the stale locale fails
        when it ends, with the CG106 violation."""
        program = LocaleVarInTheTestClientThread()
        program.app.testing = True
        guarded(program, CTXGUARD_MODE="raise")
        client = program.app.test_client()

        def drive() -> tuple[Any, list[BaseException]]:
            first = reply(client.get("/greet/amelie?lang=fr"))
            with raises_at_teardown(ContaminationError) as caught:
                client.get("/greet/bob")
            return first, caught

        first, caught = isolated(drive)

        error = caught[0]
        assert isinstance(error, ContaminationError)
        assert (200, b"bonjour amelie") == first
        assert "CG106" == error.violation.code
        assert "ContextVar locale" == error.violation.subject
