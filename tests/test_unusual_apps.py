"""
Unusual applications: custom request, g and session classes, session
interfaces, WSGI middleware; each served as bare Flask serves it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

import flask
import pytest
from flask import Flask, g, request, session
from flask.ctx import _AppCtxGlobals
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.test import Client
from werkzeug.wsgi import ClosingIterator

from flask_ctxguard import (
    CtxGuard,
)
from tests._compat import needs_shared_g
from tests.helpers import (
    codes,
    isolated,
    kept_request_control,
    reply,
)

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


#: The session id header the slotted sessions are keyed by.
SID = {"X-Sid": "positive-control"}


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
    def test_custom_g_class_clean_requests(self, app, g_class):
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
        assert ["CG104"] == kept_request_control(app, guard)

    @pytest.mark.parametrize("g_class", [NamedG, SlottedG])
    @needs_shared_g
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
    def test_custom_session_interface_clean(self, app, interface):
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
        assert ["CG104"] == kept_request_control(app, guard, SID)
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
        assert ["CG104"] == kept_request_control(app, guard, SID)

    def test_slotted_session_is_declined_clearly(self, app, events):
        """
        A session class that is a plain dict subclass with __slots__ = ()
        cannot carry the guard's record: the guard says so once, with one
        'unguarded' warning naming the class, and the app works as bare.
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
            (e["event"], e["level"])
            for e in events
            if e["level"] in {"warning", "error"}
            and "SlottedSession" in json.dumps(e, default=str)
        ]
        assert [("unguarded", "warning")] == declined
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard, SID)

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
