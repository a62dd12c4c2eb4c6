"""
Retiring requests on real servers: the reference count that decides
whether a finished request is still held (``REFS_AT_CLOSE``) must hold on
each server, so that kept requests are switched to their checking class
(and their later use caught) while ordinary ones are not switched at all.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, g, request, session

from flask_ctxguard import CtxGuard, _lifecycle
from flask_ctxguard._request import is_guarded_request_class
from tests.helpers import http_get, serve, serve_waitress

KEPT: list[Any] = []


@pytest.fixture(autouse=True)
def _forget_kept():
    yield
    KEPT.clear()


@pytest.fixture(name="switches")
def _switches(monkeypatch):
    """Every class switch of a request at its end, by class."""
    seen: list[type] = []
    set_attribute = _lifecycle._set_attribute

    def spy(obj, name, value):
        if name == "__class__" and is_guarded_request_class(value):
            seen.append(value)
        set_attribute(obj, name, value)

    monkeypatch.setattr(_lifecycle, "_set_attribute", spy)
    monkeypatch.setattr(_lifecycle, "_refs_at_close", _lifecycle.REFS_AT_CLOSE)
    return seen


def _app() -> Flask:
    app = Flask("retiring")
    app.config.update(SECRET_KEY="test", CTXGUARD_MODE="log")

    @app.get("/use/<name>")
    def use(name: str) -> str:
        session["user"] = name
        g.user = name
        return f"{request.path} {request.args.get('q')} {session['user']}"

    @app.get("/keep/<name>")
    def keep(name: str) -> str:
        KEPT.append(request._get_current_object())  # type: ignore[attr-defined]
        return name

    return app


Server = Callable[[Flask], contextlib.AbstractContextManager[int]]


@contextlib.contextmanager
def _waitress(app: Flask) -> Iterator[int]:
    with serve_waitress(app, threads=2) as port:
        yield port


SERVERS: dict[str, Server] = {
    "werkzeug-threaded": serve,
    "waitress": _waitress,
}


def _read_later(kept: Any) -> Any:
    """Read a kept request's args from a thread of its own, after it
    ended."""
    seen: list[Any] = []
    reader = threading.Thread(target=lambda: seen.append(kept.args.get("q")))
    reader.start()
    reader.join(timeout=10)
    return seen


class TestRealServers:
    @pytest.mark.parametrize("server", sorted(SERVERS))
    def test_ordinary_requests_are_not_switched(self, server, switches):
        """Ordinary requests on a real server are freed with their context
        and never switched; the learnt count stays the constant."""
        app = _app()
        guard = CtxGuard(app)

        with SERVERS[server](app) as port:
            replies = [http_get(port, f"/use/u{n}?q={n}") for n in range(20)]

        assert [(200, f"/use/u{n} {n} u{n}".encode()) for n in range(20)] == (
            replies
        )
        assert [] == switches
        assert _lifecycle.REFS_AT_CLOSE == _lifecycle._refs_at_close
        assert [] == guard.violations

    @pytest.mark.parametrize("server", sorted(SERVERS))
    def test_kept_requests_are_switched_and_caught(self, server, switches):
        """Each request a view keeps on a real server is switched when it
        ends, and reading it later from a thread is CG102; the ordinary
        requests around them are not switched."""
        app = _app()
        guard = CtxGuard(app)

        with SERVERS[server](app) as port:
            for n in range(3):
                http_get(port, f"/use/u{n}")
                http_get(port, f"/keep/k{n}?q={n}")
        seen = [_read_later(kept) for kept in KEPT]

        assert [["0"], ["1"], ["2"]] == seen
        assert 3 == len(switches)
        assert ["CG102"] * 3 == [v.code for v in guard.violations]


class TestRequestSubclassAfterInitApp:
    def test_kept_request_of_a_later_subclass_is_retired(self, switches):
        """A request of a class the app derived from the guarded one after
        init_app is switched when kept, and its later use is CG102, with
        no internal error."""
        app = _app()
        guard = CtxGuard(app)

        class AppRequest(app.request_class):  # type: ignore[name-defined,misc]
            """The app's own request class, made after init_app."""

        app.request_class = AppRequest

        app.test_client().get("/keep/alice?q=1")
        seen = _read_later(KEPT[0])

        assert [["1"]] == [seen]
        assert isinstance(KEPT[0], AppRequest)
        assert 1 == len(switches)
        assert ["CG102"] == [v.code for v in guard.violations]

    def test_ordinary_requests_of_a_later_subclass(self, switches):
        """Ordinary requests of such a class are not switched nor
        reported (the positive control is the kept request above)."""
        app = _app()
        guard = CtxGuard(app)

        class AppRequest(app.request_class):  # type: ignore[name-defined,misc]
            """The app's own request class, made after init_app."""

        app.request_class = AppRequest
        client = app.test_client()

        replies = [client.get("/use/bob?q=2").data for _ in range(3)]

        assert [b"/use/bob 2 bob"] * 3 == replies
        assert [] == switches
        assert [] == guard.violations
