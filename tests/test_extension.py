from __future__ import annotations

import pytest
from flask import Flask, request
from structlog.testing import capture_logs

from flask_ctxguard import (
    AlreadyRegisteredError,
    ConfigurationError,
    ContaminationError,
    CtxGuard,
    CtxGuardError,
)
from flask_ctxguard._guard import extension as _extension
from tests._compat import needs_shared_g
from tests.helpers import add_g_user_views, share_g

#: What an unsupported Flask makes the guard say.
REASON = (
    "flask_ctxguard cannot guard Flask 2.1.3: no '_cv_tokens'. Supported"
    " are Flask 2.3, 3.0, 3.1 and 3.2."
)


def _app(name="app", **config):
    app = Flask(name)
    app.config.update({"SECRET_KEY": "k", "CTXGUARD_MODE": "log", **config})
    add_g_user_views(app)
    return app


class TestInitApp:
    def test_registers_in_extensions(self):
        """The guard's per-app state lives in app.extensions['ctxguard']."""
        app = _app()
        guard = CtxGuard(app)

        assert app.extensions["ctxguard"].guard is guard

    @needs_shared_g
    def test_factory_pattern(self):
        """CtxGuard() then init_app(app) works like CtxGuard(app)."""
        guard = CtxGuard()
        app = _app()
        guard.init_app(app)

        share_g(app)

        assert ["CG101"] == [v.code for v in guard.violations]

    def test_twice_on_one_app(self):
        """A second guard on one app fails and says what to do instead."""
        app = _app()
        CtxGuard(app)

        with pytest.raises(AlreadyRegisteredError) as excinfo:
            CtxGuard(app)

        assert (
            "A 'CtxGuard' is already registered on the app 'app'. Use that"
            " instance (app.extensions['ctxguard'].guard) instead of"
            " creating another one."
        ) == str(excinfo.value)
        assert isinstance(excinfo.value, RuntimeError)
        assert isinstance(excinfo.value, CtxGuardError)

    def test_same_guard_twice_on_one_app(self):
        """Even the same guard cannot be registered twice."""
        app = _app()
        guard = CtxGuard(app)

        with pytest.raises(ConfigurationError):
            guard.init_app(app)

    def test_repr(self):
        """A guard's repr names the apps it guards."""
        app = _app("one")
        guard = CtxGuard(app)

        assert "<CtxGuard apps=['one']>" == repr(guard)

    def test_unsupported_flask_raise_mode(self, monkeypatch):
        """If a Flask internal is missing, raise mode fails init_app."""
        monkeypatch.setattr(_extension, "unsupported_reason", lambda: REASON)
        app = _app(CTXGUARD_MODE="raise")

        with pytest.raises(ConfigurationError, match="cannot guard"):
            CtxGuard(app)

    @needs_shared_g
    def test_unsupported_flask_log_mode(self, monkeypatch):
        """If a Flask internal is missing, log mode degrades with one
        warning for the guard, installs nothing and says why it is
        inactive."""
        monkeypatch.setattr(_extension, "unsupported_reason", lambda: REASON)
        app, other = _app(), _app("other")
        request_class = app.request_class

        with capture_logs() as logs:
            guard = CtxGuard(app)
            guard.init_app(other)
            [response] = share_g(app)

        assert b"alice" == response.data
        assert request_class is app.request_class
        assert [] == guard.violations
        assert [("unsupported-flask", "warning", REASON)] == [
            (e["event"], e["log_level"], e["message"]) for e in logs
        ]
        assert (False, REASON) == (guard.active, guard.inactive_reason)


class TestActive:
    def test_active_once_installed(self):
        """A guard installed on an app is active, with no reason."""
        app = _app()
        guard = CtxGuard(app)

        assert (True, None) == (guard.active, guard.inactive_reason)

    def test_not_installed(self):
        """A guard on no app is inactive and says how to install it."""
        guard = CtxGuard()

        assert (False, "it is installed on no app; call init_app(app).") == (
            guard.active,
            guard.inactive_reason,
        )

    def test_mode_off(self):
        """CTXGUARD_MODE = 'off' installs nothing: inactive, and why."""
        app = _app(CTXGUARD_MODE="off")
        guard = CtxGuard(app)

        assert (False, "CTXGUARD_MODE is 'off'.") == (
            guard.active,
            guard.inactive_reason,
        )


class TestSeveralApps:
    @needs_shared_g
    def test_each_app_has_its_own_guard(self):
        """Two apps, two guards: each sees only its own app's violations."""
        one, two = _app("one"), _app("two")
        guard_one, guard_two = CtxGuard(one), CtxGuard(two)

        share_g(one)
        with two.app_context():
            two.test_client().get("/set/bob")

        assert ["one"] == [v.app for v in guard_one.violations]
        assert [] == guard_two.violations

    @needs_shared_g
    def test_unguarded_app_is_untouched(self):
        """A guard never changes an app it was not installed on; the same
        leak in the app it guards is reported."""
        guarded, bare = _app("guarded"), _app("bare")
        request_class = bare.request_class
        guard = CtxGuard(guarded)

        [response] = share_g(bare)
        unguarded = [v.code for v in guard.violations]
        share_g(guarded)

        assert b"alice" == response.data
        assert request_class is bare.request_class
        assert "ctxguard" not in bare.extensions
        assert [] == unguarded
        assert ["CG101"] == [v.code for v in guard.violations]

    @needs_shared_g
    def test_one_guard_several_apps(self):
        """One guard may serve several apps; violations merge in order."""
        guard = CtxGuard()
        one, two = _app("one"), _app("two")
        guard.init_app(one)
        guard.init_app(two)

        for app in (one, two):
            share_g(app)

        assert ["one", "two"] == [v.app for v in guard.violations]
        guard.clear()
        assert [] == guard.violations


class TestCheckContexts:
    def test_leftover_request_context(self):
        """check_contexts() reports a pushed request context as CG105."""
        app = _app()
        guard = CtxGuard(app)
        ctx = app.test_request_context("/leftover")
        ctx.push()
        try:
            found = guard.check_contexts()
        finally:
            ctx.pop()

        assert ["CG105"] == [v.code for v in found]
        assert "request context" == found[0].subject
        assert "GET /leftover" in found[0].message
        assert found[0].access_site.endswith(
            "in test_leftover_request_context"
        )
        assert found == guard.violations

    def test_leftover_app_context(self):
        """A pushed app context is CG105 too."""
        app = _app()
        guard = CtxGuard(app)
        with app.app_context():
            found = guard.check_contexts()

        assert ["app context"] == [v.subject for v in found]

    def test_nothing_pushed(self):
        """With nothing pushed there is nothing to report."""
        app = _app()
        guard = CtxGuard(app)

        assert [] == guard.check_contexts()
        with app.app_context():
            assert ["CG105"] == [v.code for v in guard.check_contexts()]

    def test_other_apps_are_ignored(self):
        """Contexts of apps the guard does not guard are not its business;
        its own app's are."""
        app = _app()
        guard = CtxGuard(app)
        other = Flask("other")
        with other.app_context():
            assert [] == guard.check_contexts()
            with app.app_context():
                assert ["CG105"] == [v.code for v in guard.check_contexts()]

    def test_raise_mode(self):
        """In raise mode check_contexts() raises after reporting all."""
        app = _app(CTXGUARD_MODE="raise")
        guard = CtxGuard(app)
        with app.test_request_context("/"):
            with pytest.raises(ContaminationError):
                guard.check_contexts()
            assert 1 == len(guard.violations)


class TestRequestObject:
    def test_request_class_is_a_subclass(self):
        """The guarded request class subclasses the app's own."""
        app = _app()
        base = app.request_class
        CtxGuard(app)
        seen = []

        @app.route("/type")
        def kind():
            seen.append(type(request._get_current_object()))
            return ""

        app.test_client().get("/type")

        assert issubclass(app.request_class, base)
        assert issubclass(seen[0], base)
        assert base.__name__ == seen[0].__name__

    def test_request_class_replaced_after_init(self):
        """A request_class set after init_app is still guarded."""
        app = _app()
        guard = CtxGuard(app)

        class MyRequest(Flask.request_class):
            pass

        app.request_class = MyRequest
        kept = []

        @app.route("/keep")
        def keep():
            kept.append(request._get_current_object())
            return ""

        app.test_client().get("/keep")
        assert isinstance(kept[0], MyRequest)
        _ = kept[0].args

        assert ["CG102"] == [v.code for v in guard.violations]
