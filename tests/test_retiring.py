"""
Retiring requests on real servers: the reference count that decides
whether a finished request is still held (``REFS_AT_CLOSE``) must hold on
each server, so that kept requests are switched to their checking class
(and their later use caught) while ordinary ones are not switched at all.

Werkzeug's threaded server and waitress run the app in the test's process,
where a spy counts the switches; gunicorn's gthread workers and gevent
(monkey-patched) run it in a process of their own, where
`tests.retiringapp` counts them and answers what it counted.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from flask_ctxguard import CtxGuard
from flask_ctxguard._guard import lifecycle as _lifecycle
from tests.helpers import (
    KEPT,
    TIMEOUT,
    ServerProcess,
    contamination,
    gunicorn,
    http_get,
    internal_errors,
    serve,
    serve_process,
    serve_waitress,
)
from tests.loadclient import Reply, run_load
from tests.retiringapp import add_request_views, read_later

#: No server, pool, reader or client thread outlives its test.
pytestmark = pytest.mark.usefixtures("no_thread_left")


def _app() -> Flask:
    app = Flask("retiring")
    app.config.update(SECRET_KEY="test", CTXGUARD_MODE="log")
    add_request_views(app, KEPT)
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


class TestRealServers:
    @pytest.mark.parametrize("server", sorted(SERVERS))
    def test_ordinary_requests_are_not_switched(
        self, server, switches, escapes
    ):
        """Ordinary requests on a real server are freed with their context
        and never switched, nor is their g (which each replaces a value
        of); the learnt count stays the constant."""
        app = _app()
        guard = CtxGuard(app)

        with SERVERS[server](app) as port:
            replies = [http_get(port, f"/use/u{n}?q={n}") for n in range(20)]
            streamed = [http_get(port, f"/stream/s{n}?q={n}") for n in (1, 2)]

        assert [(200, f"/use/u{n} {n} u{n}".encode()) for n in range(20)] == (
            replies
        )
        assert [(200, b"s11"), (200, b"s22")] == streamed
        assert ([], []) == (switches, escapes)
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
        seen = [read_later(kept) for kept in KEPT]

        assert ["0", "1", "2"] == seen
        assert 3 == len(switches)
        assert ["CG102"] * 3 == [v.code for v in guard.violations]


def _gunicorn() -> contextlib.AbstractContextManager[ServerProcess]:
    # One worker process, so that one process counts every request.
    return gunicorn("tests.retiringapp:gunicorn_app()", workers=1, threads=4)


def _gevent() -> contextlib.AbstractContextManager[ServerProcess]:
    command = [sys.executable, "-m", "tests.gevent_server"]
    return serve_process("gevent", command)


#: Servers running `tests.retiringapp` in a process of their own.
PROCESSES: dict[str, Callable[[], Any]] = {
    "gunicorn-gthread": _gunicorn,
    "gevent": _gevent,
}


def _ordinary(client: int) -> list[str]:
    """A client's ordinary requests, on one keep-alive connection."""
    return [
        path
        for n in range(10)
        for path in (f"/use/c{client}-{n}?q={n}", f"/stream/c{client}?q={n}")
    ]


def _expected(client: int) -> list[Reply]:
    """What a client of `_ordinary` is answered."""
    return [
        Reply(client, path, 200, body)
        for n in range(10)
        for path, body in (
            (
                f"/use/c{client}-{n}?q={n}",
                f"/use/c{client}-{n} {n} c{client}-{n}",
            ),
            (f"/stream/c{client}?q={n}", f"c{client}{n}"),
        )
    ]


def _get_json(port: int, path: str) -> Any:
    status, body = http_get(port, path)
    assert 200 == status, body
    return json.loads(body)


class TestServerProcesses:
    @pytest.mark.parametrize("server", sorted(PROCESSES))
    def test_ordinary_requests_are_not_switched(self, server):
        """Ordinary requests of concurrent keep-alive clients on a server
        in its own process are never switched, and the count learnt there
        stays the constant this Python and Flask measure."""
        with PROCESSES[server]() as process:
            replies = run_load(
                process.port, _ordinary, clients=4, timeout=TIMEOUT
            )
            seen = _get_json(process.port, "/_retiring")
        events = process.events()

        assert [r for c in range(4) for r in _expected(c)] == sorted(
            replies, key=lambda r: r.client
        )
        assert [] == seen["switched"]
        assert _lifecycle.REFS_AT_CLOSE == seen["refs_at_close"]
        assert seen["refs_at_close"] == seen["learnt"]
        assert [] == seen["codes"]
        assert [] == internal_errors(events)
        # gevent served them monkey-patched: its greenlets are the threads.
        ready = [e for e in events if e["event"] == "worker-ready"]
        assert [server == "gevent"] == [e.get("patched", False) for e in ready]

    @pytest.mark.parametrize("server", sorted(PROCESSES))
    def test_kept_requests_are_switched_and_caught(self, server):
        """Each request a view keeps on a server in its own process is
        switched when it ends, and reading it later from a thread there is
        CG102; the ordinary requests around them are not switched."""
        with PROCESSES[server]() as process:
            port = process.port
            around = []
            for n in range(3):
                around.append(http_get(port, f"/use/u{n}?q={n}"))
                http_get(port, f"/keep/k{n}?q={n}")
                around.append(http_get(port, f"/stream/s{n}?q={n}"))
            read = _get_json(port, "/_read_kept")
            seen = _get_json(port, "/_retiring")
        events = process.events()

        assert ["0", "1", "2"] == read
        assert ["/keep/k0", "/keep/k1", "/keep/k2"] == seen["switched"]
        assert seen["refs_at_close"] == seen["learnt"]
        assert ["CG102"] * 3 == seen["codes"]
        # One violation repeated at one site: its log has the 1st and 2nd.
        assert [("CG102", "/keep/k0", None), ("CG102", "/keep/k1", 2)] == [
            (e["code"], e["origin"]["path"], e.get("repeats"))
            for e in contamination(events)
        ]
        assert [] == internal_errors(events)
        assert 6 * [200] == [status for status, _ in around]


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
        seen = read_later(KEPT[0])

        assert "1" == seen
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
