from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor

import pytest
import structlog
from flask import Flask, after_this_request, request, request_started

from flask_ctxguard import ContaminationError, CtxGuard
from tests._compat import raises_at_teardown
from tests.helpers import kept_request_control

tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
flag: contextvars.ContextVar[bool] = contextvars.ContextVar("flag")
user: contextvars.ContextVar[str] = contextvars.ContextVar("user")

#: A constant the guard cannot tie to a request: a module-level name.
ANONYMOUS = "anonymous-module-constant"


@pytest.fixture(name="fresh_context")
def _fresh_context():
    """A copy of the context to run a test's requests in, so that what
    they leak stays there."""
    return contextvars.copy_context()


def _app(**config):
    app = Flask("tenants")
    app.config.update({"CTXGUARD_MODE": "log", **config})

    @app.route("/t/<name>")
    def set_tenant(name):
        tenant.set(name)
        return name

    @app.route("/reset/<name>")
    def set_and_reset(name):
        token = tenant.set(name)

        @after_this_request
        def reset(response):
            tenant.reset(token)
            return response

        return name

    @app.route("/whoami")
    def whoami():
        return tenant.get("nobody")

    return app


def _leak_control(app, guard):
    """
    The positive control of a silent test: the same app and guard, in a
    fresh context, report a tenant left for the next request (CG106).
    """
    before = len(guard.violations)

    def leak():
        client = app.test_client()
        client.get("/t/control")
        client.get("/whoami")

    contextvars.Context().run(leak)
    return [v.code for v in list(guard.violations)[before:]]


class TestTestClientThread:
    def test_value_left_for_the_next_request(self, fresh_context):
        """A ContextVar set in one request and never reset, held by the
        next one, is CG106, and bare Flask really serves the stale value."""

        def run(app):
            client = app.test_client()
            client.get("/t/acme")
            return client.get("/whoami").data

        bare = fresh_context.run(run, _app())
        app = _app()
        guard = CtxGuard(app)
        guarded = contextvars.copy_context().run(run, app)

        assert b"acme" == bare == guarded
        violation = guard.violations[0]
        assert "CG106" == violation.code
        assert "ContextVar tenant" == violation.subject
        assert "/t/acme" == violation.origin.path
        assert "/whoami" == violation.accessor.path
        assert "str" == violation.value_type
        assert violation.origin_site.endswith("in set_tenant")
        assert violation.access_site.endswith("in whoami")
        assert "'tenant' held, for the whole of GET /whoami" in (
            violation.message
        )

    def test_overwritten_is_silent(self, fresh_context):
        """A request that sets the var itself is not flagged."""
        app = _app()
        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/t/acme")
            return client.get("/t/globex").data

        assert b"globex" == fresh_context.run(run)
        assert [] == guard.violations
        assert ["CG106"] == _leak_control(app, guard)

    def test_reset_is_silent(self, fresh_context):
        """A request that resets its var leaves nothing behind."""
        app = _app()
        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/reset/acme")
            return client.get("/whoami").data

        assert b"nobody" == fresh_context.run(run)
        assert [] == guard.violations
        assert ["CG106"] == _leak_control(app, guard)

    def test_set_outside_requests_is_silent(self, fresh_context):
        """A value set by test code, not by a request, is not a leak."""
        app = _app()
        guard = CtxGuard(app)

        def run():
            tenant.set("fixture")
            return app.test_client().get("/whoami").data

        assert b"fixture" == fresh_context.run(run)
        assert [] == guard.violations
        assert ["CG106"] == _leak_control(app, guard)

    def test_flags_are_not_request_data(self, fresh_context):
        """True/False/None left in a var are library flags, not leaks."""
        app = _app()

        @app.route("/flag")
        def set_flag():
            flag.set(True)
            return ""

        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/flag")
            client.get("/whoami")

        fresh_context.run(run)

        assert [] == guard.violations
        assert ["CG106"] == _leak_control(app, guard)

    def test_raise_mode(self, fresh_context):
        """In raise mode the request that held the value raises."""
        app = _app(CTXGUARD_MODE="raise", TESTING=True)
        CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/t/acme")
            with raises_at_teardown(ContaminationError) as caught:
                client.get("/whoami")
            error = caught[0]
            assert isinstance(error, ContaminationError)
            return error.violation.code

        assert "CG106" == fresh_context.run(run)


class TestPooledThreads:
    def test_pool_worker_carries_the_value(self):
        """A pooled worker thread serving consecutive requests carries a
        value one request left to the next: CG106."""
        app = _app()
        guard = CtxGuard(app)
        with ThreadPoolExecutor(max_workers=1) as pool:
            client = app.test_client()
            pool.submit(client.get, "/t/acme").result(timeout=10)
            response = pool.submit(client.get, "/whoami").result(timeout=10)

        assert b"acme" == response.data
        assert ["CG106"] == [v.code for v in guard.violations]


class TestStructlog:
    def _app(self, *, clear):
        app = Flask("logs")
        app.config["CTXGUARD_MODE"] = "log"

        @app.before_request
        def bind():
            if clear:
                structlog.contextvars.clear_contextvars()

        @app.route("/user/<name>")
        def user(name):
            structlog.contextvars.bind_contextvars(user=name)
            return name

        @app.route("/anonymous")
        def anonymous():
            return str(structlog.contextvars.get_contextvars())

        return app

    def test_bind_without_clear(self, fresh_context):
        """bind_contextvars without clear_contextvars leaks: CG106."""
        app = self._app(clear=False)
        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/user/alice")
            return client.get("/anonymous").data

        assert b"{'user': 'alice'}" == fresh_context.run(run)
        assert ["ContextVar structlog_user"] == [
            v.subject for v in guard.violations
        ]

    def test_documented_pattern_is_silent(self, fresh_context):
        """clear_contextvars() at request start, then bind: silent."""
        app = self._app(clear=True)
        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/user/alice")
            client.get("/user/bob")
            return client.get("/anonymous").data

        assert b"{}" == fresh_context.run(run)
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)


class TestSetBeforeTheView:
    def test_set_in_a_request_started_receiver(self, fresh_context):
        """A value a request_started receiver set and never reset, held by
        the next request, is CG106 of the request that set it."""
        app = _app()

        def set_on_start(sender, **extra):
            if request.path == "/t/started":
                tenant.set("started")

        request_started.connect(set_on_start, app)
        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/t/started")
            return client.get("/whoami").data

        try:
            answer = fresh_context.run(run)
        finally:
            request_started.disconnect(set_on_start, app)

        assert b"started" == answer
        assert [("CG106", "/t/started", "/whoami")] == [
            (v.code, v.origin.path, v.accessor.path) for v in guard.violations
        ]


class TestSameObjectAgain:
    """A request that sets a var to the very object it already held."""

    def test_constant_of_a_before_request_is_the_requests_own(
        self, fresh_context
    ):
        """A constant of a before_request function, bound again by every
        request, is the request's own; a value left by a view is CG106."""
        app = _app()

        @app.before_request
        def bind_anonymous():
            user.set("-")

        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/whoami")
            client.get("/whoami")
            silent = [v.subject for v in guard.violations]
            client.get("/t/acme")
            client.get("/whoami")
            return silent

        assert [] == fresh_context.run(run)
        assert ["ContextVar tenant"] == [v.subject for v in guard.violations]

    def test_module_constant_bound_by_a_helper_is_the_requests_own(
        self, fresh_context
    ):
        """A module-level constant bound again by every request through a
        helper is the request's own (its code names the helper, which
        names the constant); held by an endpoint that never binds it, it
        is CG106."""
        app = _app()

        def bind_anonymous():
            user.set(ANONYMOUS)

        @app.route("/page")
        def page():
            bind_anonymous()
            return user.get()

        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            pages = [client.get("/page").data for _ in range(3)]
            silent = list(guard.violations)
            client.get("/whoami")
            return pages, silent

        pages, silent = fresh_context.run(run)

        assert [ANONYMOUS.encode()] * 3 == pages
        assert [] == silent
        assert [("ContextVar user", "/whoami")] == [
            (v.subject, v.accessor.path) for v in guard.violations
        ]
