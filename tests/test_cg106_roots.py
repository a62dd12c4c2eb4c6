"""
The CG106 walk starts from the code that runs for a request, including
the callbacks an app registered with its extensions.
"""

from __future__ import annotations

import contextvars
from typing import Any

from flask import Flask, current_app

from flask_ctxguard import CtxGuard
from flask_ctxguard._rules.cg106_roots import extension_callbacks
from tests.helpers import pooled

region: contextvars.ContextVar[Any] = contextvars.ContextVar("region")


class Region:
    """A region object, one per name, handed out from a cache."""

    def __init__(self, name: str) -> None:
        self.name = name


REGIONS: dict[str, Region] = {}


def lookup_region(name: str) -> Region:
    """The app's callback: hands out cached regions."""
    return REGIONS.setdefault(name, Region(name))


class Regions:
    """An extension that stores the app's callback, as Flask-Login does."""

    def __init__(self, app: Flask) -> None:
        self._lookup: Any = None
        app.extensions["regions"] = self

    def lookup(self, func: Any) -> Any:
        self._lookup = func
        return func

    def current(self, name: str) -> Region:
        return self._lookup(name)


def _app(*, every_request: bool) -> tuple[Flask, CtxGuard, Regions]:
    app = Flask("roots")
    app.config["CTXGUARD_MODE"] = "log"
    regions = Regions(app)
    regions.lookup(lookup_region)

    @app.before_request
    def set_region() -> None:
        from flask import request

        name = request.headers.get("X-Region")
        if every_request:
            ext = current_app.extensions["regions"]
            region.set(ext.current(name or "eu"))
        elif name:
            region.set(Region(name))  # of this request's making

    @app.get("/")
    def index() -> str:
        return region.get().name

    return app, CtxGuard(app), regions


class TestExtensionCallbacks:
    def test_the_callbacks_an_extension_holds_are_roots(self):
        """The functions an app.extensions value holds are walked."""
        app, _, _ = _app(every_request=True)

        assert [lookup_region] == extension_callbacks(app)

    def test_a_cached_object_from_a_callback_is_silent(self):
        """A ContextVar set on every request to a cached object that an
        extension's callback hands out is the request's own; a new object
        set only by the first request is reported in the next (control)."""
        app, guard, _ = _app(every_request=True)
        control, control_guard, _ = _app(every_request=False)
        requests = [("/", {"X-Region": "us"}), ("/", {"X-Region": "us"})]
        fresh = [("/", {"X-Region": "us"}), ("/", {})]

        replies = pooled(app, requests)
        pooled(control, fresh)

        assert [(200, b"us"), (200, b"us")] == replies
        assert [] == guard.violations
        assert ["ContextVar region"] == [
            v.subject for v in control_guard.violations
        ]


class Repository:
    """An app's repository whose bound method is a user loader."""

    def __init__(self) -> None:
        self.users: dict[str, Region] = {}

    def get(self, name: str) -> Region:
        return self.users.setdefault(name, Region(name))


class TestCallbackKinds:
    def test_bound_methods_and_cached_functions_are_roots(self):
        """A bound method and an lru_cache'd function an extension holds
        are walked, as plain functions are."""
        import functools

        app = Flask("kinds")
        regions = Regions(app)
        repository = Repository()
        regions._lookup = repository.get
        regions.other = functools.lru_cache(lookup_region)  # type: ignore[attr-defined]

        found = extension_callbacks(app)

        assert [repository.get, regions.other] == found  # type: ignore[attr-defined]
