"""The registry of generated classes, and what a guard keeps of gone apps."""

from __future__ import annotations

import gc
import weakref

from flask import Flask, Request, request

from flask_ctxguard import CtxGuard
from flask_ctxguard._core.classes import REQUEST, RETIRED_REQUEST, registry
from flask_ctxguard._guard.extension import (
    request_class_for as guarded_request_class,
)
from flask_ctxguard._guard.request import (
    is_guarded_request_class,
    retired_request_class,
)
from flask_ctxguard._guard.state import MAX_GONE_APPS


class TestRegistry:
    def test_roles_and_caching(self):
        """A generated class is cached by its base and knows its role; the
        base itself is not ours."""

        class Custom(Request):
            pass

        guarded = guarded_request_class(Custom)
        retired = retired_request_class(guarded)

        assert guarded is guarded_request_class(Custom)
        assert guarded is guarded_request_class(guarded)
        assert REQUEST == registry.role(guarded)
        assert RETIRED_REQUEST == registry.role(retired)
        assert registry.role(Custom) is None
        assert [True, True, False] == [
            is_guarded_request_class(cls) for cls in (guarded, retired, Custom)
        ]

    def test_generated_classes_die_with_their_base(self):
        """The registry keeps no class alive: a request class made for an
        app, and its retired class, go once nothing uses them."""

        class Custom(Request):
            pass

        guarded = guarded_request_class(Custom)
        retired_request_class(guarded)
        refs = [weakref.ref(Custom), weakref.ref(guarded)]
        alive_before = [ref() is not None for ref in refs]
        del Custom, guarded
        gc.collect()

        assert [True, True] == alive_before
        assert [None, None] == [ref() for ref in refs]


def _stale_read_in_a_new_app(guard: CtxGuard, name: str) -> None:
    """
    Install *guard* on a new app named *name*, keep a request and read it
    after its end (CG102); the app is gone once nothing else holds it.
    """
    app = Flask(name)
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
    kept = []

    @app.route("/")
    def keep():
        kept.append(request._get_current_object())
        return ""

    guard.init_app(app)
    app.test_client().get("/")
    _ = kept[0].args


class TestGoneApps:
    def test_violations_of_gone_apps_are_bounded(self):
        """A guard keeps the violations of at most MAX_GONE_APPS apps that
        are gone (the plugin's one guard sees every app of a suite), the
        newest ones."""
        guard = CtxGuard()

        for number in range(MAX_GONE_APPS + 5):
            _stale_read_in_a_new_app(guard, f"app{number}")
        gc.collect()
        _stale_read_in_a_new_app(guard, "app-1")  # installing prunes

        apps = [v.app for v in guard.violations]
        assert MAX_GONE_APPS + 1 == len(apps)
        assert "app4" not in apps
        assert {"app5", f"app{MAX_GONE_APPS + 4}", "app-1"} <= set(apps)

    def test_clear_forgets_gone_apps(self):
        """clear() forgets the violations of gone apps with their state."""
        guard = CtxGuard()
        _stale_read_in_a_new_app(guard, "gone")
        before = [v.code for v in guard.violations]
        gc.collect()
        guard.clear()

        assert ["CG102"] == before
        assert [] == guard.violations
        assert "<CtxGuard apps=[]>" == repr(guard)
