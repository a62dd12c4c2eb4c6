from __future__ import annotations

import inspect

import pytest
from flask import Flask, g, request
from flask.views import MethodView
from structlog.testing import capture_logs

from flask_ctxguard import CtxGuard
from flask_ctxguard._reporting import sites as _sites
from tests._compat import needs_shared_g
from tests.helpers import (
    KEPT,
    add_g_user_views,
    kept_request_control,
    share_g,
)


@pytest.fixture(name="app")
def _app():
    app = Flask("edges")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")

    @app.route("/keep")
    def keep():
        KEPT.append(request._get_current_object())
        return "kept"

    return app


class TestViewSites:
    def test_class_based_view(self, app):
        """A MethodView's site is its class's definition."""

        class Items(MethodView):
            def get(self):
                KEPT.append(request._get_current_object())
                return "items"

        app.add_url_rule("/items", view_func=Items.as_view("items"))
        guard = CtxGuard(app)
        app.test_client().get("/items")

        _ = KEPT[0].args

        assert guard.violations[0].origin_site.startswith(
            "tests/test_edges.py:"
        )
        assert guard.violations[0].origin_site.endswith(" in Items")

    def test_unknown_endpoint(self, app):
        """A request that matched no endpoint has no origin site."""

        @app.errorhandler(404)
        def missing(error):
            KEPT.append(request._get_current_object())
            return "missing", 404

        guard = CtxGuard(app)
        app.test_client().get("/nowhere")

        _ = KEPT[0].args

        assert guard.violations[0].origin_site is None
        assert guard.violations[0].origin.endpoint is None


class TestIgnore:
    def test_ignored_object_access(self, app):
        """An ignored code is not reported for object accesses."""
        app.config["CTXGUARD_IGNORE"] = ["CG102"]
        guard = CtxGuard(app)
        app.test_client().get("/keep")

        _ = KEPT[0].args

        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_ignored_contextvar(self, app):
        """CTXGUARD_IGNORE drops a ContextVar by subject glob."""
        import contextvars

        var: contextvars.ContextVar[str] = contextvars.ContextVar("lang")

        @app.route("/lang")
        def lang():
            var.set(request.args.get("l", "en") + "!")
            return "ok"

        app.config["CTXGUARD_IGNORE"] = ["ContextVar la*"]
        guard = CtxGuard(app)

        def run():
            client = app.test_client()
            client.get("/lang?l=fr")
            client.get("/keep")

        contextvars.Context().run(run)

        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)


class TestContainment:
    def test_failing_site_capture(self, app, monkeypatch):
        """A failure while describing an access is logged once; the code
        reading the stale request goes on."""
        guard = CtxGuard(app)
        app.test_client().get("/keep?a=1")

        def broken(depth=0):
            raise RuntimeError("no frames")

        monkeypatch.setattr(_sites, "capture_site", broken)
        with capture_logs() as logs:
            values = [KEPT[0].args["a"] for _ in range(3)]

        assert ["1"] * 3 == values
        assert [] == guard.violations
        assert ["internal-error"] == [e["event"] for e in logs]
        assert "checking an access" == logs[0]["where"]

    def test_failing_contextvar_comparison(self, app, monkeypatch):
        """A failure while comparing ContextVars is logged once."""
        from flask_ctxguard._guard import lifecycle as _lifecycle

        def broken(*args):
            raise RuntimeError("no snapshot")

        import contextvars

        var: contextvars.ContextVar[str] = contextvars.ContextVar("mark")

        @app.route("/mark")
        def mark():
            var.set(request.path + "!")
            return "marked"

        monkeypatch.setattr(_lifecycle, "detect_leaks", broken)
        CtxGuard(app)

        def run():
            return [app.test_client().get("/mark") for _ in range(2)]

        with capture_logs() as logs:
            responses = contextvars.Context().run(run)

        assert [b"marked"] * 2 == [r.data for r in responses]
        assert ["comparing ContextVars"] == [e["where"] for e in logs]


class TestRequestAttributes:
    def test_class_access(self, app):
        """Attributes read on the request class give a property that reads
        a request's own value."""
        guard = CtxGuard(app)

        args = app.request_class.args
        headers = app.request_class.headers
        with app.test_request_context("/?a=1", headers={"X-A": "b"}):
            own = request._get_current_object()
            seen = (args.__get__(own).to_dict(), headers.__get__(own)["X-A"])

        assert isinstance(args, property)
        assert isinstance(headers, property)
        assert ({"a": "1"}, "b") == seen
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_set_and_delete_plain_attribute(self, app):
        """A view may replace or delete request.headers as before."""

        @app.route("/swap")
        def swap():
            request.headers = {"X": "1"}
            first = request.headers["X"]
            del request.headers
            with pytest.raises(AttributeError):
                _ = request.headers
            return first

        guard = CtxGuard(app)

        assert b"1" == app.test_client().get("/swap").data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_cached_property_reset(self, app):
        """Deleting a cached property (args) recomputes it, as before."""

        @app.route("/args")
        def args():
            first = request.args.get("a")
            del request.args
            return f"{first}{request.args.get('a')}"

        guard = CtxGuard(app)

        assert b"11" == app.test_client().get("/args?a=1").data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)


class TestSharedG:
    @needs_shared_g
    def test_setdefault_writes_in_a_request(self, app):
        """g.setdefault of a new name in a request owns it: read by the
        next request, it is CG101."""

        @app.route("/default")
        def default():
            return g.setdefault("theme", request.args.get("t", "dark"))

        @app.route("/theme")
        def theme():
            return g.theme

        guard = CtxGuard(app)
        client = app.test_client()
        with app.app_context():
            client.get("/default?t=light")
            response = client.get("/theme")

        assert b"light" == response.data
        assert ["g.theme"] == [v.subject for v in guard.violations]

    @needs_shared_g
    def test_delete_in_a_request(self, app):
        """Deleting another request's attribute is not a read, and the
        attribute is owned by nobody afterwards; without the deletion, the
        read is CG101."""

        @app.route("/set")
        def set_():
            g.user = "alice"
            return ""

        @app.route("/forget")
        def forget():
            del g.user
            g.pop("other", None)
            return ""

        @app.route("/read")
        def read():
            return str(g.get("user"))

        guard = CtxGuard(app)
        client = app.test_client()
        with app.app_context():
            client.get("/set")
            client.get("/forget")
            response = client.get("/read")
        silent = list(guard.violations)
        with app.app_context():
            client.get("/set")
            client.get("/read")

        assert b"None" == response.data
        assert [] == silent
        assert ["CG101"] == [v.code for v in guard.violations]


class TestArming:
    def test_context_pushed_twice(self, app):
        """A request context pushed again inside its own request (nested
        push) is armed once."""

        @app.route("/twice")
        def twice():
            from flask_ctxguard._core.flaskcompat import request_ctx_var

            ctx = request_ctx_var.get()
            with ctx:
                # Flask 3.2 passes the context explicitly.
                takes_ctx = (
                    "ctx"
                    in inspect.signature(app.preprocess_request).parameters
                )
                app.preprocess_request(*([ctx] if takes_ctx else []))
            KEPT.append(request._get_current_object())
            return "ok"

        guard = CtxGuard(app)
        app.test_client().get("/twice")

        _ = KEPT[0].args

        assert ["CG102"] == [v.code for v in guard.violations]


class PlainGlobals:
    """A g class that is not an _AppCtxGlobals: Flask only calls it."""

    def __init__(self):
        self.spam = "eggs"


class TestPlainGClass:
    def test_guarded_app_works(self, app):
        """An app whose g class is a plain class is guarded and works."""
        app.app_ctx_globals_class = PlainGlobals
        guard = CtxGuard(app)

        @app.route("/spam")
        def spam():
            return g.spam

        assert b"eggs" == app.test_client().get("/spam").data
        with app.app_context():
            assert "eggs" == g.spam
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    @needs_shared_g
    def test_shared_g_is_watched(self, app):
        """CG101 works on a plain g class too."""
        app.app_ctx_globals_class = PlainGlobals
        guard = CtxGuard(app)

        add_g_user_views(app)
        [response] = share_g(app)

        assert b"alice" == response.data
        assert ["g.user"] == [v.subject for v in guard.violations]

    @needs_shared_g
    def test_plugin_keeps_outcomes(self, pytester):
        """Under the plugin in warn mode, such an app changes no outcome
        (Flask's own test_custom_app_ctx_globals_class), while a shared g
        in the same run is reported."""
        pytester.makepyfile(
            """
            import flask

            def test_custom_g_class():
                app = flask.Flask(__name__)

                class CustomRequestGlobals:
                    def __init__(self):
                        self.spam = "eggs"

                app.app_ctx_globals_class = CustomRequestGlobals
                with app.app_context():
                    assert flask.g.spam == "eggs"

            def test_next():
                assert not flask.current_app

            def test_shared_g():
                app = flask.Flask("shared")

                @app.route("/set")
                def set_user():
                    flask.g.user = "alice"
                    return ""

                @app.route("/get")
                def get_user():
                    return flask.g.user

                client = app.test_client()
                with app.app_context():
                    client.get("/set")
                    assert b"alice" == client.get("/get").data
            """
        )

        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "--ctxguard=warn"
        )

        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(["ctxguard: 1 finding in 1 test"])


class TestRetiredRequest:
    def test_assignment_and_deletion(self, app):
        """A stale request's attributes can still be set and deleted; the
        reads are reported."""
        guard = CtxGuard(app)
        app.test_client().get("/keep")
        kept = KEPT[0]

        kept.view_args = {"x": 1}
        kept.url_rule = None
        seen = kept.view_args
        del kept.view_args
        with pytest.raises(AttributeError):
            del kept.shallow_copy_that_does_not_exist

        assert {"x": 1} == seen
        assert ["CG102"] == [v.code for v in guard.violations]

    def test_class_level_access(self, app):
        """Reading attributes on the retired class itself is not a use;
        reading them on the kept request is."""
        guard = CtxGuard(app)
        app.test_client().get("/keep")
        retired = type(KEPT[0])

        on_class = (retired.path, retired.url_rule)

        assert [] == guard.violations

        _ = KEPT[0].path

        assert hasattr(type(on_class[0]), "__get__")  # the descriptor
        assert on_class[1] is None
        assert [("CG102", "request")] == [
            (v.code, v.subject) for v in guard.violations
        ]


class TestLateGuarding:
    def test_request_created_before_the_guard(self, app):
        """A request object built before the guard's classes were installed
        is taken over when its session opens."""
        ctx = app.test_request_context("/late")
        guard = CtxGuard(app)
        with ctx:
            kept = request._get_current_object()
            assert guard.current() is not None

        _ = kept.path

        assert ["CG102"] == [v.code for v in guard.violations]

    @needs_shared_g
    def test_g_created_before_the_guard(self, app):
        """A g built before the guard was installed is watched when it is
        shared (its class cannot take a slot: the record is kept aside)."""

        add_g_user_views(app)
        client = app.test_client()
        with app.app_context():
            guard = CtxGuard(app)
            client.get("/set/alice")
            response = client.get("/get")

        assert b"alice" == response.data
        assert ["g.user"] == [v.subject for v in guard.violations]


class TestDeclining:
    def test_request_class_that_cannot_be_subclassed(self, app):
        """A request class the guard cannot subclass is declined, once and
        by name; the app works."""

        class Final(app.request_class):
            def __init_subclass__(cls, **kwargs):
                raise TypeError("final")

        app.request_class = Final
        with capture_logs() as logs:
            CtxGuard(app)

        assert app.request_class is Final
        assert ["unguarded"] == [e["event"] for e in logs]
        assert "request_class" in logs[0]["what"]
        assert b"kept" == app.test_client().get("/keep").data

    @needs_shared_g
    def test_failing_g_check(self, app, monkeypatch):
        """A failure while describing a CG101 read is logged once; the view
        gets its value."""

        add_g_user_views(app)
        guard = CtxGuard(app)
        client = app.test_client()
        with app.app_context():
            client.get("/set/alice")

            def broken(depth=0):
                raise RuntimeError("no frames")

            monkeypatch.setattr(_sites, "capture_site", broken)
            with capture_logs() as logs:
                response = client.get("/get")

        assert b"alice" == response.data
        assert [] == guard.violations
        assert ["checking a 'g' read"] == [e["where"] for e in logs]
