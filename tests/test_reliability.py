"""
Reliability: the guard under faults (a log pipeline or signal receiver that
raises or blocks), in unusual applications, over many requests (references,
memory, bounded tables, rate-limited logs), with secrets in the data it
reports, and with bad configuration.
"""

from __future__ import annotations

import contextvars
import gc
import io
import itertools
import json
import logging
import re
import subprocess
import sys
import threading
import tracemalloc
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import flask
import pytest
import structlog
from flask import Flask, g, request, session
from flask.ctx import _AppCtxGlobals
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict, Headers
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client, EnvironBuilder
from werkzeug.wsgi import ClosingIterator

from flask_ctxguard import (
    ConfigurationError,
    ContaminationError,
    CtxGuard,
    contamination_detected,
)
from tests._compat import needs_acyclic_request, needs_shared_g
from tests.scenarios.conftest import Worker

#: Bound of every wait.
TIMEOUT = 10.0
#: Request data that must never reach a log unless values are asked for.
SECRET = "s3cr3t-7f1c-hunter2"
TOKEN = re.compile(r"[0-9a-f]{8}-[0-9a-f]+")


def isolated(func: Callable[[], Any]) -> Any:
    """
    Call *func* in a fresh, empty `contextvars.Context`: what its requests
    leave in ContextVars (the test client runs them in the caller's
    context) stays there and dies with it.
    """
    return contextvars.Context().run(func)


def codes(guard: CtxGuard) -> list[str]:
    return [violation.code for violation in guard.violations]


def reply(response: Any) -> tuple[int, bytes]:
    """What the response's user saw: status and body (then close it)."""
    try:
        return response.status_code, response.get_data()
    finally:
        response.close()


@pytest.fixture(name="rendered")
def _rendered():
    """Every structlog event as the JSON line an app would write."""
    lines: list[str] = []
    lock = threading.Lock()

    def keep(logger, method_name, line):
        with lock:
            lines.append(line)
        raise structlog.DropEvent

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
            keep,
        ]
    )
    return lines


# -- an app with one bug of each kind -----------------------------------------


def buggy_app(name: str = "buggy", **config: Any) -> Flask:
    """
    An app with clean endpoints and three bugs, each answering 200:
    ``/keep`` + ``/peek`` read a cached request in the next request (CG103),
    ``/tenant/<t>`` sets a ContextVar it never resets (CG106 for the next
    request of the thread), ``/set/<v>`` + ``/get`` share ``g`` when an app
    context is pushed around them (CG101).
    """
    app = Flask(name)
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log", **config)
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")
    kept: list[Any] = []

    @app.get("/clean/<user>")
    def clean(user: str) -> str:
        session["user"] = user
        g.user = user
        return f"{g.user} {session['user']} {request.args.get('n')}"

    @app.get("/keep")
    def keep() -> str:
        kept[:] = [request._get_current_object()]  # type: ignore[attr-defined]
        return "kept"

    @app.get("/peek")
    def peek() -> str:
        return f"peeked {kept[0].args.get('n')}"

    @app.get("/tenant/<t>")
    def set_tenant(t: str) -> str:
        tenant.set(t)
        return t

    @app.get("/set/<value>")
    def set_value(value: str) -> str:
        g.value = value
        return value

    @app.get("/get")
    def get_value() -> str:
        return str(g.get("value"))

    return app


def drive_bugs(app: Flask) -> list[tuple[int, bytes]]:
    """Every bug of `buggy_app` twice, between clean requests."""

    def drive() -> list[tuple[int, bytes]]:
        client = app.test_client()
        seen = []
        for n in range(2):
            seen.append(reply(client.get(f"/clean/ada?n={n}")))
            seen.append(reply(client.get(f"/keep?n={n}")))
            seen.append(reply(client.get("/peek")))
            seen.append(reply(client.get(f"/tenant/acme{n}")))
            seen.append(reply(client.get(f"/clean/bob?n={n}")))
            with app.app_context():
                seen.append(reply(client.get(f"/set/v{n}")))
                seen.append(reply(client.get("/get")))
        return seen

    return isolated(drive)  # type: ignore[no-any-return]


def found(guard: CtxGuard) -> list[tuple[str, str]]:
    return [
        (violation.code, violation.subject) for violation in guard.violations
    ]


def healthy_run() -> tuple[list[tuple[int, bytes]], list[tuple[str, str]]]:
    """
    What `drive_bugs` gives with a bare app, and what a guard finds with a
    healthy log pipeline: the reference for the faulty ones.
    """
    bare = drive_bugs(buggy_app())
    structlog.configure(processors=[_drop])
    app = buggy_app()
    guard = CtxGuard(app)
    drive_bugs(app)
    reported = found(guard)
    # Each bug, at least once: the tenant stays set for every later request.
    assert {
        ("CG101", "g.value"),
        ("CG103", "request"),
        ("CG106", "ContextVar tenant"),
    } == set(reported)
    return bare, reported


class TestFaults:
    @needs_shared_g
    def test_raising_log_pipeline(self, caplog):
        """
        A structlog pipeline that raises on every event: responses are
        those of the bare app, every violation is still kept, and the guard
        says once, on the stdlib logger, that logging failed.
        """
        bare, reported = healthy_run()

        def broken(logger, method_name, event_dict):
            raise RuntimeError("pipeline down")

        structlog.configure(processors=[broken])
        app = buggy_app()
        guard = CtxGuard(app)

        with caplog.at_level(logging.ERROR, logger="flask_ctxguard"):
            guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        records = [r for r in caplog.records if r.name == "flask_ctxguard"]
        assert [
            (
                "ERROR",
                "flask_ctxguard: logging a violation failed; the guard"
                " carries on and the request is unaffected. This is"
                " reported once.",
            )
        ] == [(r.levelname, r.getMessage()) for r in records]
        assert "pipeline down" == str(records[0].exc_info[1])

    @needs_shared_g
    def test_pipeline_failing_for_contamination_events(self, events):
        """
        A pipeline that only fails on 'contamination' events: the failure is
        one 'internal-error' event at error level, with the exception.
        """
        collect = structlog.get_config()["processors"][-1]
        bare, reported = healthy_run()

        def fussy(logger, method_name, event_dict):
            if event_dict["event"] == "contamination":
                raise ValueError("cannot render")
            return event_dict

        structlog.configure(
            processors=[structlog.processors.add_log_level, fussy, collect]
        )
        app = buggy_app()
        guard = CtxGuard(app)

        guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        assert [("internal-error", "error", "logging a violation")] == [
            (e["event"], e["level"], e["where"]) for e in events
        ]
        assert isinstance(events[0]["exc_info"], ValueError)

    @needs_shared_g
    def test_raising_receiver_and_pipeline(self, caplog):
        """
        A raising receiver and a raising pipeline together: requests are
        unaffected and each failure is said once.
        """
        bare, reported = healthy_run()

        def broken(logger, method_name, event_dict):
            raise RuntimeError("pipeline down")

        def receiver(sender, violation):
            raise KeyError("receiver down")

        structlog.configure(processors=[broken])
        app = buggy_app()
        guard = CtxGuard(app)

        with (
            caplog.at_level(logging.ERROR, logger="flask_ctxguard"),
            contamination_detected.connected_to(receiver),
        ):
            guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        said = sorted(
            r.getMessage().split(";")[0]
            for r in caplog.records
            if r.name == "flask_ctxguard"
        )
        assert [
            "flask_ctxguard: a contamination_detected receiver failed",
            "flask_ctxguard: logging a violation failed",
        ] == said

    @needs_shared_g
    def test_pipeline_reading_the_current_request(self, events):
        """
        An app's log processor that adds the current request's path, 'g'
        and session to every event runs inside the guard's reports (also
        those made while a request closes): it sees its own request, and
        nothing more is reported or fails.
        """
        collect = structlog.get_config()["processors"][-1]
        bare, reported = healthy_run()

        def add_request(logger, method_name, event_dict):
            if flask.has_request_context():
                event_dict["path"] = request.path
                event_dict["user"] = g.get("user")
                event_dict["session_user"] = session.get("user")
            return event_dict

        structlog.configure(processors=[add_request, collect])
        app = buggy_app()
        guard = CtxGuard(app)

        guarded = drive_bugs(app)

        assert bare == guarded
        assert reported == found(guard)
        assert {"contamination"} == {e["event"] for e in events}
        cg106 = [e for e in events if e["code"] == "CG106"]
        assert [e["accessor"]["path"] for e in cg106] == [
            e["path"] for e in cg106
        ]

    @pytest.mark.parametrize("sink", ["log pipeline", "signal receiver"])
    def test_blocked_sink_blocks_nobody_else(self, sink):
        """
        While a log pipeline (or receiver) blocks in one request's report,
        another thread's report completes, and so do clean requests, which
        log nothing: the guard holds no lock while it reports.
        """
        app = buggy_app()
        guard = CtxGuard(app)
        entered, release = threading.Event(), threading.Event()
        calls: list[str] = []

        def block_first_reporter() -> None:
            name = threading.current_thread().name
            calls.append(name)
            if name == "blocked-reporter":
                entered.set()
                release.wait(TIMEOUT)

        def processor(logger, method_name, event_dict):
            if sink == "log pipeline":
                block_first_reporter()
            raise structlog.DropEvent

        def receiver(sender, violation):
            if sink == "signal receiver":
                block_first_reporter()

        structlog.configure(processors=[processor])
        app.test_client().get("/keep?n=0")

        def peek() -> tuple[int, bytes]:
            return reply(app.test_client().get("/peek"))

        def clean() -> list[tuple[int, bytes]]:
            client = app.test_client()
            return [reply(client.get(f"/clean/cy?n={n}")) for n in range(50)]

        blocked = Worker(peek, "blocked-reporter")
        other = Worker(peek, "other-reporter")
        cleaner = Worker(clean, "clean-client")
        with contamination_detected.connected_to(receiver):
            blocked.start()
            try:
                assert entered.wait(TIMEOUT)
                other.start()
                cleaner.start()
                other.join(TIMEOUT)
                cleaner.join(TIMEOUT)
                others_done = not other.is_alive() and not cleaner.is_alive()
                still_blocked = blocked.is_alive()
            finally:
                release.set()
            outcome = blocked.outcome()

        assert (True, True) == (others_done, still_blocked)
        assert (200, b"peeked 0") == outcome
        assert (200, b"peeked 0") == other.outcome()
        assert [(200, f"cy cy {n}".encode()) for n in range(50)] == (
            cleaner.outcome()
        )
        assert ["CG103", "CG103"] == codes(guard)
        assert ["blocked-reporter", "other-reporter"] == sorted(calls)


# -- unusual applications -----------------------------------------------------


class UserRequest(flask.Request):
    """A request class with an attribute of its own."""

    @property
    def user(self) -> str:
        return self.headers.get("X-User", "anonymous")


def request_class_app(when: str) -> tuple[Flask, CtxGuard | None, list]:
    app = Flask(f"request-class-{when}")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
    kept: list[Any] = []

    @app.get("/me")
    def me() -> str:
        return f"{request.user} {isinstance(request, UserRequest)}"  # type: ignore[attr-defined]

    @app.get("/keep")
    def keep() -> str:
        kept.append(request._get_current_object())  # type: ignore[attr-defined]
        return "kept"

    @app.get("/peek")
    def peek() -> str:
        return kept[0].user  # type: ignore[no-any-return]

    guard = None
    if when == "before":
        app.request_class = UserRequest
        guard = CtxGuard(app)
    elif when == "after":
        guard = CtxGuard(app)
        app.request_class = UserRequest
    else:
        app.request_class = UserRequest
    return app, guard, kept


def g_class_app(g_class: type) -> Flask:
    app = Flask(f"g-class-{g_class.__name__}")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
    app.app_ctx_globals_class = g_class

    @app.get("/set/<value>")
    def set_value(value: str) -> str:
        g.x = value
        return value

    @app.get("/get")
    def get_value() -> str:
        return str(g.x)

    return app


class NamedG(_AppCtxGlobals):
    """A g class with a method of its own."""

    def describe(self) -> str:
        return f"g of {self.x}"


class SlottedG(_AppCtxGlobals):
    """A g class that keeps 'x' in a slot rather than in __dict__."""

    __slots__ = ("x",)


def drive_shared_g(app: Flask) -> list[tuple[int, bytes]]:
    """Two requests inside one pushed app context: g.x set, then read."""

    def drive() -> list[tuple[int, bytes]]:
        client = app.test_client()
        with app.app_context():
            return [reply(client.get("/set/ada")), reply(client.get("/get"))]

    return isolated(drive)  # type: ignore[no-any-return]


class ServerSession(CallbackDict, SessionMixin):  # type: ignore[type-arg]
    """A server-side session: its data lives in the interface's store."""

    def __init__(self, initial: Any = None, sid: str = "") -> None:
        def on_update(self: ServerSession) -> None:
            self.modified = True

        super().__init__(initial, on_update)
        self.sid = sid
        self.modified = False


class ServerSideSessions(SessionInterface):
    """
    Sessions kept in a dict on the server, keyed by a 'sid' cookie; with
    *keep_objects*, the store keeps the session objects themselves and
    hands the same object to every request of that sid.
    """

    def __init__(self, *, keep_objects: bool = False) -> None:
        self.store: dict[str, Any] = {}
        self.keep_objects = keep_objects
        self.sids = itertools.count(1)

    def open_session(self, app: Flask, request: Any) -> Any:
        sid = request.cookies.get("sid") or f"sid{next(self.sids)}"
        stored = self.store.get(sid)
        if self.keep_objects and stored is not None:
            return stored
        return ServerSession(stored, sid=sid)

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        self.store[session.sid] = (
            session if self.keep_objects else dict(session)
        )
        response.set_cookie("sid", session.sid)


class NoSessions(SessionInterface):
    """An interface that never opens a session: Flask's null session."""

    def open_session(self, app: Flask, request: Any) -> None:
        return None

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        pass


class SlottedSession(dict):  # type: ignore[type-arg]
    """A plain dict subclass without a __dict__."""

    __slots__ = ()
    new = False
    permanent = False
    modified = True

    @property
    def accessed(self) -> bool:
        return True

    @accessed.setter
    def accessed(self, value: bool) -> None:
        pass  # Flask 3.1 marks the session accessed; nothing to keep


class SlottedSessions(SessionInterface):
    """Sessions of `SlottedSession`, keyed by an 'X-Sid' header."""

    def __init__(self) -> None:
        self.store: dict[str, dict[str, Any]] = {}

    def open_session(self, app: Flask, request: Any) -> Any:
        return SlottedSession(self.store.get(request.headers["X-Sid"], {}))

    def save_session(self, app: Flask, session: Any, response: Any) -> None:
        self.store[request.headers["X-Sid"]] = dict(session)


SESSION_INTERFACES: dict[str, Callable[[], SessionInterface]] = {
    "server-side": ServerSideSessions,
    "server-side-objects": lambda: ServerSideSessions(keep_objects=True),
    "null": NoSessions,
    "slotted-dict": SlottedSessions,
}


def session_app(interface: str, *, guarded: bool) -> tuple[Flask, list]:
    app = Flask(f"session-{interface}")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
    app.session_interface = SESSION_INTERFACES[interface]()
    kept: list[Any] = []

    @app.get("/login/<user>")
    def login(user: str) -> str:
        session["user"] = user
        return user

    @app.get("/me")
    def me() -> str:
        return str(session.get("user", "anonymous"))

    @app.get("/keep")
    def keep() -> str:
        kept.append(session._get_current_object())  # type: ignore[attr-defined]
        return "kept"

    @app.get("/peek")
    def peek() -> str:
        return str(kept[0].get("user", "anonymous"))

    if guarded:
        CtxGuard(app)
    return app, kept


def drive_sessions(app: Flask) -> list[tuple[int, bytes]]:
    """ada and bob log in and ask who they are, twice."""

    def drive() -> list[tuple[int, bytes]]:
        clients = {"ada": app.test_client(), "bob": app.test_client()}
        seen = []
        for _ in range(2):
            for user, client in clients.items():
                headers = {"X-Sid": user}
                seen.append(
                    reply(client.get(f"/login/{user}", headers=headers))
                )
                seen.append(reply(client.get("/me", headers=headers)))
        return seen

    return isolated(drive)  # type: ignore[no-any-return]


def drive_kept_session(app: Flask) -> list[tuple[int, bytes]]:
    """ada's session object is kept, then read during bob's request."""

    def drive() -> list[tuple[int, bytes]]:
        ada, bob = app.test_client(), app.test_client()
        return [
            reply(ada.get("/login/ada", headers={"X-Sid": "ada"})),
            reply(ada.get("/keep", headers={"X-Sid": "ada"})),
            reply(bob.get("/peek", headers={"X-Sid": "bob"})),
        ]

    return isolated(drive)  # type: ignore[no-any-return]


class Middleware:
    """Rewrites the environ on the way in, adds a header on the way out."""

    def __init__(self, wsgi_app: Any) -> None:
        self.wsgi_app = wsgi_app
        self.closed = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["HTTP_X_USER"] = environ.get("HTTP_X_USER", "").title()

        def start(status: str, headers: list, exc_info: Any = None) -> Any:
            headers.append(("X-Wrapped", "yes"))
            return start_response(status, headers, exc_info)

        def close() -> None:
            self.closed += 1

        return ClosingIterator(self.wsgi_app(environ, start), close)


def user_app(name: str) -> tuple[Flask, list]:
    """An app answering who the X-User is, with a request-caching bug."""
    app = Flask(name)
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
    kept: list[Any] = []

    @app.get("/me")
    def me() -> str:
        return (
            f"{request.script_root}{request.path} {request.headers['X-User']}"
        )

    @app.get("/keep")
    def keep() -> str:
        kept.append(request._get_current_object())  # type: ignore[attr-defined]
        return "kept"

    @app.get("/peek")
    def peek() -> str:
        return str(kept[0].headers["X-User"])

    return app, kept


def drive_user_app(wsgi: Any, prefix: str = "") -> list[tuple[int, bytes]]:
    def drive() -> list[tuple[int, bytes]]:
        client = Client(wsgi)
        seen = []
        for user in ("ada", "bob"):
            response = client.get(f"{prefix}/me", headers={"X-User": user})
            seen.append(reply(response))
        seen.append(
            reply(client.get(f"{prefix}/keep", headers={"X-User": "ada"}))
        )
        seen.append(
            reply(client.get(f"{prefix}/peek", headers={"X-User": "bob"}))
        )
        return seen

    return isolated(drive)  # type: ignore[no-any-return]


class TestUnusualApps:
    @pytest.mark.parametrize("when", ["before", "after"])
    def test_custom_request_class(self, when):
        """
        A custom request_class, set before or after CtxGuard(app): views see
        it, responses are unchanged, a kept request is reported when read
        in another request (CG103) and after its end (CG102).
        """
        bare_app, _, bare_kept = request_class_app("bare")
        app, guard, kept = request_class_app(when)

        def drive(app: Flask) -> list[tuple[int, bytes]]:
            client = app.test_client()
            return [
                reply(client.get("/me", headers={"X-User": "ada"})),
                reply(client.get("/me")),
                reply(client.get("/keep", headers={"X-User": "ada"})),
                reply(client.get("/peek", headers={"X-User": "bob"})),
            ]

        bare = isolated(lambda: drive(bare_app))
        guarded = isolated(lambda: drive(app))
        assert guard is not None
        outside = kept[0].user

        assert [
            (200, b"ada True"),
            (200, b"anonymous True"),
            (200, b"kept"),
            (200, b"ada"),
        ] == bare
        assert bare == guarded
        assert "ada" == outside == bare_kept[0].user
        assert isinstance(kept[0], UserRequest)
        # The first report of each is the view's (or the test's) access to
        # 'request.user'; reading 'headers' inside that property is another.
        firsts = {}
        for violation in guard.violations:
            firsts.setdefault(violation.code, violation)
        assert ["CG103", "CG102"] == list(firsts)
        assert [
            "'request.user' of GET /keep",
            "'request.user' of GET /keep",
        ] == [v.message.split(" (")[0] for v in firsts.values()]
        assert firsts["CG103"].access_site.endswith(" in peek")
        assert firsts["CG102"].access_site.endswith(
            " in test_custom_request_class"
        )

    @pytest.mark.parametrize("g_class", [NamedG, SlottedG])
    def test_custom_g_class_clean_requests(self, g_class):
        """A custom g class: ordinary requests are answered as bare and
        not reported."""
        bare_app, app = g_class_app(g_class), g_class_app(g_class)
        guard = CtxGuard(app)

        def drive(app: Flask) -> list[tuple[int, bytes]]:
            client = app.test_client()
            return [
                reply(client.get("/set/ada")),
                reply(client.get("/set/bob")),
            ]

        bare = isolated(lambda: drive(bare_app))

        assert bare == isolated(lambda: drive(app))
        assert [(200, b"ada"), (200, b"bob")] == bare
        assert [] == guard.violations

    @needs_shared_g
    @pytest.mark.parametrize("g_class", [NamedG, SlottedG])
    def test_custom_g_class_shared_g(self, g_class):
        """
        A custom g class shared by two requests (an app context pushed
        around them): 'g.x' set in one and read in the next is CG101 —
        also when the class keeps 'x' in a slot rather than in __dict__.
        """
        bare = drive_shared_g(g_class_app(g_class))
        app = g_class_app(g_class)
        guard = CtxGuard(app)

        guarded = drive_shared_g(app)

        assert [(200, b"ada"), (200, b"ada")] == bare == guarded
        assert [("CG101", "g.x")] == [
            (v.code, v.subject) for v in guard.violations
        ]

    @pytest.mark.parametrize("g_class", [NamedG, SlottedG])
    def test_custom_g_class_kept_g(self, g_class):
        """A custom g kept beyond its request is CG102 when used."""
        app = g_class_app(g_class)
        guard = CtxGuard(app)
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            g.x = "ada"
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return "kept"

        isolated(lambda: app.test_client().get("/keep"))
        value = kept[0].x

        assert "ada" == value
        assert ["CG102"] == codes(guard)

    @pytest.mark.parametrize("interface", sorted(SESSION_INTERFACES))
    def test_custom_session_interface_clean(self, interface):
        """
        Custom session interfaces (server-side, server-side handing out the
        same object again, null, a slotted dict): every response is as
        bare Flask's, and ordinary requests are not reported.
        """
        bare = drive_sessions(session_app(interface, guarded=False)[0])
        app, _ = session_app(interface, guarded=True)
        guard = app.extensions["ctxguard"].guard

        guarded = drive_sessions(app)

        assert bare == guarded
        assert [] == guard.violations
        if interface == "null":
            # Flask refuses writes to its null session: 500, guarded or not.
            assert [500, 200] * 4 == [status for status, _ in guarded]
        else:
            assert [
                (200, b"ada"),
                (200, b"ada"),
                (200, b"bob"),
                (200, b"bob"),
            ] * 2 == guarded

    @pytest.mark.parametrize(
        ("interface", "expected"),
        [
            # Flask's null session holds no data and refuses writes: the
            # guard leaves it alone.
            ("null", []),
            ("server-side", [("CG103", "session")]),
            ("server-side-objects", [("CG103", "session")]),
        ],
    )
    def test_custom_session_interface_kept_session(self, interface, expected):
        """A session of a custom interface, kept and read during another
        request, is reported as CG103; the response is unchanged."""
        bare = drive_kept_session(session_app(interface, guarded=False)[0])
        app, _ = session_app(interface, guarded=True)
        guard = app.extensions["ctxguard"].guard

        guarded = drive_kept_session(app)

        assert bare == guarded
        assert expected == [(v.code, v.subject) for v in guard.violations]

    def test_slotted_session_is_guarded_or_declined_clearly(self, events):
        """
        A session class that is a plain dict subclass with __slots__ = ():
        a kept session read in another request is either reported, or the
        guard said once that it cannot guard such sessions — never silence.
        """
        bare = drive_kept_session(
            session_app("slotted-dict", guarded=False)[0]
        )
        app, _ = session_app("slotted-dict", guarded=True)
        guard = app.extensions["ctxguard"].guard

        guarded = drive_kept_session(app)

        assert [(200, b"ada"), (200, b"kept"), (200, b"ada")] == bare
        assert bare == guarded
        declined = [
            e
            for e in events
            if e["level"] in {"warning", "error"}
            and "SlottedSession" in json.dumps(e, default=str)
        ]
        reported = [(v.code, v.subject) for v in guard.violations]
        assert [("CG103", "session")] == reported or 1 == len(declined), (
            "a kept SlottedSession was read in another request: nothing was"
            " reported and the guard never said it does not guard it"
        )

    def test_wsgi_middleware(self):
        """
        app.wsgi_app wrapped in middleware: responses are as bare Flask's
        (middleware included) and a kept request is reported.
        """
        bare_app, _ = user_app("bare")
        bare_app.wsgi_app = Middleware(bare_app.wsgi_app)  # type: ignore[method-assign]
        app, _ = user_app("wrapped")
        guard = CtxGuard(app)
        middleware = Middleware(app.wsgi_app)
        app.wsgi_app = middleware  # type: ignore[method-assign]

        bare = drive_user_app(bare_app)
        guarded = drive_user_app(app)

        assert [
            (200, b"/me Ada"),
            (200, b"/me Bob"),
            (200, b"kept"),
            (200, b"Ada"),
        ] == bare
        assert bare == guarded
        assert 4 == middleware.closed
        assert [("CG103", "request")] == [
            (v.code, v.subject) for v in guard.violations
        ]

    def test_dispatcher_middleware(self):
        """
        Apps mounted with DispatcherMiddleware, two guarded by one CtxGuard
        and one not: responses are as bare, and a kept request of the
        mounted app is reported, by that app.
        """

        def mount() -> tuple[Any, Flask, Flask]:
            front, _ = user_app("front")
            api, _ = user_app("api")
            status, _ = user_app("status")
            return (
                DispatcherMiddleware(front, {"/api": api, "/status": status}),
                front,
                api,
            )

        bare_wsgi, _, _ = mount()
        wsgi, front, api = mount()
        guard = CtxGuard()
        guard.init_app(front)
        guard.init_app(api)

        bare = [
            drive_user_app(bare_wsgi, prefix)
            for prefix in ("/api", "", "/status")
        ]
        guarded = [
            drive_user_app(wsgi, prefix) for prefix in ("/api", "", "/status")
        ]

        assert (200, b"/api/me ada") == bare[0][0]
        assert bare == guarded
        assert [("CG103", "api"), ("CG103", "front")] == [
            (v.code, v.app) for v in guard.violations
        ]


# -- resources ----------------------------------------------------------------


def weakref_app(mode: str) -> tuple[Flask, dict[str, Any]]:
    """
    An app whose views take weak references to their request's request,
    session and g; ``/report`` also reads a kept request (CG103),
    ``/thread`` has a thread read its request (CG104), ``/leave`` leaves a
    ContextVar set (CG106 at the end of the next request).
    """
    app = Flask(f"weakrefs-{mode}")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE=mode)
    refs: dict[str, Any] = {}
    kept: list[Any] = []
    left: contextvars.ContextVar[str] = contextvars.ContextVar("left")

    def take_refs() -> None:
        session["user"] = "ada"
        g.user = "ada"
        refs.update(
            request=weakref.ref(request._get_current_object()),  # type: ignore[attr-defined]
            session=weakref.ref(session._get_current_object()),  # type: ignore[attr-defined]
            g=weakref.ref(g._get_current_object()),  # type: ignore[attr-defined]
        )

    @app.get("/keep")
    def keep() -> str:
        kept.append(request._get_current_object())  # type: ignore[attr-defined]
        return "kept"

    @app.get("/clean")
    def clean() -> str:
        take_refs()
        return "clean"

    @app.get("/report")
    def report() -> str:
        take_refs()
        return str(kept[0].path)

    @app.get("/thread")
    def thread() -> str:
        take_refs()
        real = request._get_current_object()  # type: ignore[attr-defined]
        reader = threading.Thread(target=lambda: real.args.get("n"))
        reader.start()
        reader.join(TIMEOUT)
        return "read"

    @app.get("/leave")
    def leave() -> str:
        take_refs()
        left.set(request.path)
        return "left"

    @app.errorhandler(ContaminationError)
    def contaminated(error: ContaminationError) -> tuple[str, int]:
        # Handled, so Flask does not log it (pytest would keep the record,
        # and with its traceback the request).
        return error.violation.code, 500

    CtxGuard(app)
    return app, refs


def alive(refs: dict[str, Any]) -> list[str]:
    return [name for name, ref in refs.items() if ref() is not None]


class TestResources:
    @pytest.mark.parametrize(
        ("before", "path", "expected"),
        [
            ("/keep", "/clean", []),
            ("/keep", "/report", ["CG103"]),
            ("/keep", "/thread", ["CG104"]),
            ("/keep", "/leave", []),
            ("/leave", "/clean", ["CG106"]),
        ],
    )
    @needs_acyclic_request
    def test_objects_die_with_their_request(
        self, before, path, expected, events
    ):
        """
        The request, session and g of a request are freed when it ends,
        without the cycle collector (the guard adds no reference cycle),
        whether or not something was reported during it or at its end.
        """
        app, refs = weakref_app("log")
        guard = app.extensions["ctxguard"].guard

        def drive() -> list[str]:
            client = app.test_client()
            client.get(before)
            gc.disable()
            try:
                client.get(path).close()
                return alive(refs)
            finally:
                gc.enable()

        still_alive = isolated(drive)

        assert [] == still_alive
        assert expected == codes(guard)

    def test_objects_die_after_raise_mode(self):
        """In raise mode, the objects of a request that raised
        ContaminationError are freed too (after a collection)."""
        app, refs = weakref_app("raise")
        guard = app.extensions["ctxguard"].guard

        def drive() -> int:
            client = app.test_client()
            client.get("/keep")
            return client.get("/report").status_code

        status = isolated(drive)
        gc.collect()

        assert 500 == status
        assert ["CG103"] == codes(guard)
        assert [] == alive(refs)

    def test_violations_bounded_under_threads(self):
        """guard.violations keeps the newest CTXGUARD_MAX_VIOLATIONS, also
        when many threads report at once."""
        app = buggy_app(CTXGUARD_MAX_VIOLATIONS=50)
        guard = CtxGuard(app)
        structlog.configure(processors=[_drop])
        app.test_client().get("/keep?n=0")

        def peek(_: int) -> list[int]:
            client = app.test_client()
            return [client.get("/peek").status_code for _ in range(50)]

        with ThreadPoolExecutor(8) as pool:
            statuses = [s for batch in pool.map(peek, range(8)) for s in batch]

        timestamps = [v.timestamp for v in guard.violations]
        assert [200] * 400 == statuses
        assert 50 == len(timestamps)
        assert sorted(timestamps) == timestamps

    def test_memory_is_flat_over_20000_requests(self):
        """
        20 000 ordinary requests (session, g, a ContextVar reset, structlog
        cleared and bound) on 4 pooled threads: traced memory grows by less
        than 2 MiB after warm-up and no request object is left alive.
        """
        structlog.configure(processors=[_drop])
        app = memory_app()
        guard = CtxGuard(app)
        calls = wsgi_calls(app)

        def serve(count: int) -> set[bytes]:
            bodies = set()
            for n in range(count):
                bodies.add(calls[n % len(calls)]())
            return bodies

        def run(total: int) -> set[bytes]:
            with ThreadPoolExecutor(4, thread_name_prefix="pooled") as pool:
                return set().union(*pool.map(serve, [total // 4] * 4))

        warm = run(2000)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            bodies = run(20_000)
            gc.collect()
            growth = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        requests = [
            o for o in gc.get_objects() if isinstance(o, flask.Request)
        ]

        assert EXPECTED_BODIES == warm == bodies
        assert growth < 2 * 1024 * 1024, f"grew by {growth} bytes"
        assert [] == requests
        assert [] == guard.violations

    def test_flood_of_identical_violations_is_rate_limited(self, events):
        """
        A hot buggy endpoint hit by 4 threads causes 3000 identical
        violations: all are kept, at most 100 events are logged, and their
        repeat counts grow.
        """
        app = buggy_app(CTXGUARD_MAX_VIOLATIONS=5000)
        guard = CtxGuard(app)
        app.test_client().get("/keep?n=0")

        def peek(_: int) -> list[int]:
            client = app.test_client()
            return [client.get("/peek").status_code for _ in range(750)]

        with ThreadPoolExecutor(4) as pool:
            statuses = [s for batch in pool.map(peek, range(4)) for s in batch]

        repeats = sorted(e.get("repeats", 1) for e in events)
        assert [200] * 3000 == statuses
        assert 3000 == len(guard.violations)
        assert len(events) <= 100
        assert {"contamination"} == {e["event"] for e in events}
        assert [2**n for n in range(12)] == repeats

    @needs_shared_g
    @pytest.mark.parametrize("varying", ["subject", "site"])
    def test_ever_changing_violations_keep_tables_bounded(
        self, varying, events
    ):
        """
        A buggy endpoint whose violations never repeat (a new 'g' attribute
        name, or a new code site, each time): every one is logged, and the
        repeat table stays within its bound.
        """
        from flask_ctxguard._report import _MAX_KEYS

        app = buggy_app()
        guard = CtxGuard(app)
        count = _MAX_KEYS + 500
        readers = {}
        if varying == "site":
            # A reader per request, each compiled as its own file.
            for n in range(count):
                namespace: dict[str, Any] = {}
                exec(
                    compile(
                        "def read(r):\n    return r.path\n",
                        f"site{n}.py",
                        "exec",
                    ),
                    namespace,
                )
                readers[n] = namespace["read"]

        @app.get("/bug/<int:n>")
        def bug(n: int) -> str:
            if varying == "subject":
                setattr(g, f"item{n}", n)
                return str(getattr(g, f"item{n - 1}", None))
            return str(readers[n](kept[0]))

        kept: list[Any] = []

        @app.get("/hold")
        def hold() -> str:
            kept.append(request._get_current_object())  # type: ignore[attr-defined]
            return "held"

        def drive() -> set[int]:
            client = app.test_client()
            client.get("/hold")
            with app.app_context():
                return {
                    client.get(f"/bug/{n}").status_code for n in range(count)
                }

        statuses = isolated(drive)
        repeats = app.extensions["ctxguard"].reporter._repeats

        assert {200} == statuses
        assert count - (varying == "subject") <= len(events)
        assert len(repeats) <= _MAX_KEYS
        assert 1000 == len(guard.violations)

    @needs_shared_g
    def test_shared_g_bookkeeping_stays_bounded(self):
        """
        A g shared by many requests, each setting and deleting an attribute
        of its own name: g stays empty, and so does what the guard keeps
        about its attributes.
        """
        app = Flask("scratch")
        app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")

        @app.get("/scratch/<int:n>")
        def scratch(n: int) -> str:
            setattr(g, f"scratch{n}", n)
            delattr(g, f"scratch{n}")
            g.pop("other", None)
            return "ok"

        CtxGuard(app)
        from flask_ctxguard._g import g_record as _g_record

        def drive() -> tuple[int, int, int]:
            client = app.test_client()
            with app.app_context():
                statuses = {
                    client.get(f"/scratch/{n}").status_code
                    for n in range(2000)
                }
                shared = g._get_current_object()  # type: ignore[attr-defined]
                return (
                    len(statuses),
                    len(vars(shared)),
                    len(_g_record(shared).owners),
                )

        assert (1, 0, 0) == isolated(drive)


def _drop(logger, method_name, event_dict):
    raise structlog.DropEvent


REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")
EXPECTED_BODIES = {b"ada", b"bob", b"ada 1 /me", b"bob 1 /me"}


def memory_app() -> Flask:
    """Ordinary endpoints touching everything a request owns."""
    app = Flask("memory")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")

    @app.before_request
    def start() -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(path=request.path)
        g.request_id_token = REQUEST_ID.set(request.path)

    @app.teardown_request
    def end(exc: BaseException | None) -> None:
        REQUEST_ID.reset(g.pop("request_id_token"))

    @app.get("/login/<user>")
    def login(user: str) -> str:
        session["user"] = user
        session["visits"] = 0
        return user

    @app.get("/me")
    def me() -> str:
        g.user = session["user"]
        session["visits"] = 1
        return f"{g.user} {session['visits']} {REQUEST_ID.get()}"

    return app


def wsgi_calls(app: Flask) -> list[Callable[[], bytes]]:
    """
    Callables that each run one request straight through the WSGI app
    (cheaper than the test client, so that 20 000 fit in a test).
    """
    environs = []
    for user in ("ada", "bob"):
        response = isolated(
            lambda u=user: app.test_client().get(f"/login/{u}")
        )
        headers = {"Cookie": response.headers["Set-Cookie"].partition(";")[0]}
        for path in (f"/login/{user}", "/me"):
            builder = EnvironBuilder(path=path, headers=headers)
            environs.append(builder.get_environ())
            builder.close()

    def call(environ: dict[str, Any]) -> Callable[[], bytes]:
        def run() -> bytes:
            env = {**environ, "wsgi.input": io.BytesIO()}
            return b"".join(app(env, lambda *args: None))

        return run

    return [call(environ) for environ in environs]


# -- security -----------------------------------------------------------------


def secret_app(**config: Any) -> tuple[Flask, list]:
    """
    An app whose bugs leak requests carrying SECRET in their query,
    headers, form, cookies, session, 'g' and a ContextVar: CG101, CG102,
    CG103, CG104 and CG106.
    """
    app = Flask("secrets")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log", **config)
    note: contextvars.ContextVar[str] = contextvars.ContextVar("note")
    kept: list[Any] = []

    @app.post("/submit")
    def submit() -> str:
        session["note"] = request.form["note"]
        kept[:] = [
            request._get_current_object(),  # type: ignore[attr-defined]
            session._get_current_object(),  # type: ignore[attr-defined]
        ]
        note.set(request.args["q"])
        g.note = request.headers["X-Note"]
        real = request._get_current_object()  # type: ignore[attr-defined]
        thread = threading.Thread(target=lambda: real.form.get("note"))
        thread.start()
        thread.join(TIMEOUT)
        return "ok"

    @app.get("/read")
    def read() -> str:
        old_request, old_session = kept
        seen = [
            old_request.args["q"],
            old_request.headers["X-Note"],
            old_request.cookies["note"],
            old_session["note"],
            g.get("note"),
        ]
        return str(len(seen))

    return app, kept


def leak_secrets(app: Flask, kept: list) -> list[str]:
    def drive() -> list[tuple[int, bytes]]:
        client = app.test_client()
        client.set_cookie("note", SECRET)
        with app.app_context():
            first = client.post(
                f"/submit?q={SECRET}",
                data={"note": SECRET},
                headers={"X-Note": SECRET},
            )
            second = client.get("/read")
        return [reply(first), reply(second)]

    seen = isolated(drive)
    return [*seen, kept[0].form["note"]]


class TestSecurity:
    @needs_shared_g
    @pytest.mark.parametrize("stacks", [False, True])
    def test_leaked_values_are_not_logged_by_default(self, stacks, rendered):
        """
        Requests carrying a secret everywhere, leaked in every way: every
        violation is logged, and the secret appears in no log line and no
        report.
        """
        app, kept = secret_app(CTXGUARD_STACKS=stacks)
        guard = CtxGuard(app)

        seen = leak_secrets(app, kept)

        assert [(200, b"ok"), (200, b"5"), SECRET] == seen
        assert {"CG101", "CG102", "CG103", "CG104", "CG106"} == set(
            codes(guard)
        )
        assert len(guard.violations) == len(rendered)
        assert [] == [line for line in rendered if SECRET in line]
        assert [] == [str(v) for v in guard.violations if SECRET in str(v)]
        assert [] == [
            v.code
            for v in guard.violations
            if SECRET in json.dumps(v.to_dict())
        ]

    def test_contextvar_value_is_not_logged_by_default(self, rendered):
        """A ContextVar left holding a secret is reported (CG106) by type
        only."""
        app = Flask("cv-secret")
        app.config.update(CTXGUARD_MODE="log")
        note: contextvars.ContextVar[str] = contextvars.ContextVar("note")

        @app.get("/set")
        def set_note() -> str:
            note.set(request.args["q"])
            return "set"

        @app.get("/other")
        def other() -> str:
            return "other"

        guard = CtxGuard(app)

        def drive() -> None:
            client = app.test_client()
            client.get(f"/set?q={SECRET}")
            client.get("/other")

        isolated(drive)

        assert ["CG106"] == codes(guard)
        assert "str" == guard.violations[0].value_type
        assert 1 == len(rendered)
        assert SECRET not in rendered[0]

    @pytest.mark.parametrize(
        ("name", "value", "shown"),
        [
            ("note", "x" * 500, "'" + "x" * 27 + "..." + "x" * 28 + "'"),
            ("password", SECRET, "'<redacted>'"),
            ("api_token", SECRET, "'<redacted>'"),
            ("session_cookie", SECRET, "'<redacted>'"),
            ("Authorization", f"Bearer {SECRET}", "'<redacted>'"),
            (
                "profile",
                {"name": "ada", "password": SECRET},
                "{'name': 'ada', 'password': '<redacted>'}",
            ),
            (
                "profile",
                {"name": "ada", "Secret": SECRET, "token": SECRET},
                # reprlib sorts a dict's keys
                "{'Secret': '<redacted>', 'name': 'ada',"
                " 'token': '<redacted>'}",
            ),
        ],
    )
    @needs_shared_g
    def test_log_values_truncates_and_redacts(
        self, name, value, shown, rendered
    ):
        """
        With CTXGUARD_LOG_VALUES, a leaked 'g' value is shown as a short
        repr: long ones truncated, secret-looking names and keys redacted.
        """
        app = Flask("values")
        app.config.update(CTXGUARD_MODE="log", CTXGUARD_LOG_VALUES=True)

        @app.get("/set")
        def set_value() -> str:
            setattr(g, name, value)
            return "set"

        @app.get("/get")
        def get_value() -> str:
            return type(getattr(g, name)).__name__

        guard = CtxGuard(app)

        def drive() -> None:
            client = app.test_client()
            with app.app_context():
                client.get("/set")
                client.get("/get")

        isolated(drive)

        assert [shown] == [v.value_repr for v in guard.violations]
        assert [shown] == [json.loads(line)["value"] for line in rendered]
        assert SECRET not in rendered[0]

    @pytest.mark.parametrize(
        "value",
        [
            {"user": {"name": "ada", "password": SECRET}},
            [{"name": "ada", "password": SECRET}],
            Headers([("Authorization", f"Bearer {SECRET}")]),
        ],
        ids=["nested-dict", "list-of-dicts", "headers"],
    )
    @needs_shared_g
    def test_log_values_redacts_nested_secret_keys(self, value, rendered):
        """
        With CTXGUARD_LOG_VALUES, values under secret-looking keys are
        redacted wherever the key is: in a nested dict, in a list of dicts,
        in a Headers mapping.
        """
        app = Flask("nested")
        app.config.update(CTXGUARD_MODE="log", CTXGUARD_LOG_VALUES=True)
        left: contextvars.ContextVar[Any] = contextvars.ContextVar("data")

        @app.get("/set")
        def set_value() -> str:
            left.set(value)
            g.data = value
            return "set"

        @app.get("/get")
        def get_value() -> str:
            return type(g.data).__name__

        guard = CtxGuard(app)

        def drive() -> None:
            client = app.test_client()
            with app.app_context():
                client.get("/set")
                client.get("/get")

        isolated(drive)

        assert ["CG101", "CG106"] == sorted(codes(guard))
        assert [] == [
            v.value_repr for v in guard.violations if SECRET in v.value_repr
        ]
        assert [] == [line for line in rendered if SECRET in line]

    def test_tokens_carry_no_request_data(self):
        """
        Request tokens are a process prefix and a counter: short, unique,
        and free of the path, the user and anything else of the request.
        """
        app = Flask("tokens")
        app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
        guard = CtxGuard(app)

        @app.get("/users/<name>/profile")
        def profile(name: str) -> str:
            session["user"] = name
            tag = guard.current()
            assert tag is not None
            return tag.token

        def drive() -> list[str]:
            client = app.test_client()
            return [
                client.get(
                    f"/users/{user}/profile?q={SECRET}",
                    headers={"X-User": user, "Authorization": SECRET},
                ).get_data(as_text=True)
                for user in ("alice", "zorro", "quincy") * 20
            ]

        tokens = isolated(drive)

        assert [] == [t for t in tokens if not TOKEN.fullmatch(t)]
        assert 60 == len(set(tokens))
        assert 1 == len({t.partition("-")[0] for t in tokens})
        assert max(len(t) for t in tokens) <= 16

    def test_tokens_differ_in_forked_workers(self):
        """A worker forked from a process that has served requests (a
        preloading server) issues tokens of its own, not its parent's."""
        program = """
import json, os
from flask import Flask
from flask_ctxguard import CtxGuard
app = Flask("fork")
app.config["CTXGUARD_MODE"] = "log"
guard = CtxGuard(app)

@app.get("/")
def index():
    return guard.current().token

client = app.test_client()
before = client.get("/").text
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, client.get("/").data)
    os._exit(0)
os.close(write)
child = os.read(read, 100).decode()
os.waitpid(pid, 0)
print(json.dumps([before, client.get("/").text, child]))
"""
        finished = subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        before, parent, child = json.loads(finished.stdout)
        prefix = before.partition("-")[0]

        assert parent.startswith(prefix + "-")
        assert not child.startswith(prefix + "-")
        assert TOKEN.fullmatch(child)
        assert len({before, parent, child}) == 3


# -- configuration ------------------------------------------------------------


MODES = "'raise', 'log', 'off'"
IGNORE_TYPE = (
    "CTXGUARD_IGNORE must be a list or tuple of codes and subjects, such as"
    " ('CG106', 'g._sa_session'); got {}."
)
IGNORE_ENTRY = (
    "CTXGUARD_IGNORE entries must be non-empty strings (a code such as"
    " 'CG101' or a subject such as 'g.user'); got {}."
)


class TestConfiguration:
    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            (
                "CTXGUARD_MODE",
                None,
                f"CTXGUARD_MODE must be one of {MODES}; got None.",
            ),
            (
                "CTXGUARD_MODE",
                True,
                f"CTXGUARD_MODE must be one of {MODES}; got True.",
            ),
            (
                "CTXGUARD_STACKS",
                "false",
                "CTXGUARD_STACKS must be True or False; got 'false'.",
            ),
            (
                "CTXGUARD_STACKS",
                None,
                "CTXGUARD_STACKS must be True or False; got None.",
            ),
            (
                "CTXGUARD_LOG_VALUES",
                "True",
                "CTXGUARD_LOG_VALUES must be True or False; got 'True'.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                -1,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got -1.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                2.5,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got 2.5.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                None,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer;"
                " got None.",
            ),
            ("CTXGUARD_IGNORE", None, IGNORE_TYPE.format("None")),
            ("CTXGUARD_IGNORE", 3, IGNORE_TYPE.format("3")),
            ("CTXGUARD_IGNORE", b"CG106", IGNORE_TYPE.format("b'CG106'")),
            ("CTXGUARD_IGNORE", [3], IGNORE_ENTRY.format("3")),
            ("CTXGUARD_IGNORE", ["CG101", " "], IGNORE_ENTRY.format("' '")),
        ],
    )
    def test_bad_value_is_named(self, key, value, message):
        """init_app fails naming the key, the bad value and what is
        allowed."""
        app = Flask("configured")
        app.config[key] = value

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard().init_app(app)

        assert message == str(excinfo.value)

    def test_bad_value_is_named_in_off_mode(self):
        """A bad value fails init_app even when the guard is off."""
        app = Flask("configured")
        app.config.update(CTXGUARD_MODE="off", CTXGUARD_MAX_VIOLATIONS="5")

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert (
            "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got '5'."
        ) == str(excinfo.value)

    def test_values_from_the_environment_are_named(self, monkeypatch):
        """Values loaded with from_prefixed_env that are still strings are
        named as such."""
        monkeypatch.setenv("FLASK_CTXGUARD_STACKS", "yes")
        app = Flask("configured")
        app.config.from_prefixed_env()

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert "CTXGUARD_STACKS must be True or False; got 'yes'." == str(
            excinfo.value
        )
