"""
Resources over many requests: no reference to a request's objects kept,
flat memory, bounded tables and rate-limited logs.
"""

from __future__ import annotations

import contextvars
import gc
import io
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
from werkzeug.test import EnvironBuilder

from flask_ctxguard import (
    ContaminationError,
    CtxGuard,
)
from tests._compat import needs_acyclic_request, needs_shared_g
from tests.helpers import (
    TIMEOUT,
    buggy_app,
    codes,
    drop_event,
    isolated,
    kept_request_control,
)

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
        assert ["CG104"] == kept_request_control(app, guard)

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
        structlog.configure(processors=[drop_event])
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
        structlog.configure(processors=[drop_event])
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
        # type(), not isinstance(): gc may hold a dead weakref.proxy (Flask's
        # JSON provider keeps one to its app), and isinstance() on it raises.
        requests = [
            o for o in gc.get_objects() if issubclass(type(o), flask.Request)
        ]

        assert EXPECTED_BODIES == warm == bodies
        assert growth < 2 * 1024 * 1024, f"grew by {growth} bytes"
        assert [] == requests
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

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

    @pytest.mark.parametrize("varying", ["subject", "site"])
    @needs_shared_g
    def test_ever_changing_violations_keep_tables_bounded(
        self, varying, events
    ):
        """
        A buggy endpoint whose violations never repeat (a new 'g' attribute
        name, or a new code site, each time): every one is logged, and the
        repeat table stays within its bound.
        """
        from flask_ctxguard._reporting.reporter import _MAX_KEYS

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
        from flask_ctxguard._guard.g import g_record as _g_record

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
