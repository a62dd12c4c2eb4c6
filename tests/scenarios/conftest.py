"""
Shared machinery of the scenario corpus: real servers, real clients, and
running one program twice, bare and guarded.

Every scenario is a small program (a class that builds its Flask app in
``__init__`` and exercises it in ``drive()``). `run_bare_and_guarded` runs
a fresh instance on plain Flask and a fresh instance under `CtxGuard`, each
in an empty `contextvars.Context`, so that neither run (nor an earlier
test) leaves ContextVars behind for the other.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import gc
import http.client
import pathlib
import threading
import traceback
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Protocol

import pytest
import structlog.testing
from flask import Flask
from werkzeug.serving import make_server

from flask_ctxguard import CtxGuard, Violation
from flask_ctxguard._flaskcompat import app_ctx_var as _cv_app
from flask_ctxguard._flaskcompat import request_ctx_var as _cv_request

#: Bound of every wait in the corpus: a scenario that needs longer is stuck.
TIMEOUT = 5.0


class Program(Protocol):
    """A scenario: an app built in ``__init__``, exercised by `drive`."""

    app: Flask

    def drive(self) -> list[Any]:
        """Exercise the app; return what its users observed."""


@dataclasses.dataclass
class Run:
    """The observations of a bare and a guarded run of one program."""

    bare: list[Any]
    guarded: list[Any]
    guard: CtxGuard
    # The guard only holds its apps weakly: keep the guarded program (and
    # so its app and its violations) alive as long as the run.
    program: Program

    @property
    def codes(self) -> list[str]:
        """The codes of the guarded run's violations, oldest first."""
        return [violation.code for violation in self.guard.violations]

    @property
    def violations(self) -> list[Violation]:
        """The guarded run's violations, oldest first."""
        return self.guard.violations


def run_isolated(func: Callable[[], Any]) -> Any:
    """
    Call *func* in a fresh, empty `contextvars.Context`, and check that it
    leaves no Flask context pushed there (the suite's leak detector only
    sees the test's own context).
    """
    context = contextvars.Context()
    try:
        return context.run(func)
    finally:
        pushed = [
            ctx
            for var in (_cv_request, _cv_app)
            if (ctx := context.get(var)) is not None
        ]
        assert [] == pushed, "the program left a Flask context pushed"


def guarded(program: Program, **config: Any) -> CtxGuard:
    """Install a `CtxGuard` on *program*'s app (log mode by default)."""
    program.app.config.update({"CTXGUARD_MODE": "log", **config})
    return CtxGuard(program.app)


def run_bare_and_guarded(make: Callable[[], Program], **config: Any) -> Run:
    """
    Run a fresh *make()* program bare, then a fresh one guarded.

    *config* goes to the guarded app's config (``CTXGUARD_MODE="log"``
    unless given).
    """
    bare = run_isolated(make().drive)
    program = make()
    guard = guarded(program, **config)
    return Run(
        bare=bare,
        guarded=run_isolated(program.drive),
        guard=guard,
        program=program,
    )


# -- servers and clients ---------------------------------------------------


@contextlib.contextmanager
def serve(app: Flask) -> Iterator[int]:
    """
    Serve *app* with Werkzeug's threaded server on 127.0.0.1; yield the
    port. One new thread per connection, as ``flask run`` does.
    """
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},  # a prompt shutdown
        name="werkzeug-server",
    )
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=TIMEOUT)


@contextlib.contextmanager
def serve_waitress(app: Flask, *, threads: int = 1) -> Iterator[int]:
    """
    Serve *app* with waitress on 127.0.0.1 and a pool of *threads* worker
    threads that serve request after request; yield the port.
    """
    from waitress import wasyncore
    from waitress.server import create_server

    server: Any = create_server(
        app, host="127.0.0.1", port=0, threads=threads, channel_timeout=TIMEOUT
    )
    loop = threading.Thread(target=server.run, name="waitress-loop")
    loop.start()
    try:
        yield int(server.effective_port)
    finally:
        # Stop the worker pool first (the requests are answered: they are
        # idle), so that none pulls the trigger once it is closed; then close
        # every channel from the loop's own thread (waitress runs a
        # trigger's thunks there), which ends the loop.
        server.task_dispatcher.shutdown(timeout=TIMEOUT)
        with contextlib.suppress(OSError):
            server.trigger.pull_trigger(
                lambda: wasyncore.close_all(server._map)
            )
        loop.join(timeout=TIMEOUT)


def http_get(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    method: str = "GET",
) -> tuple[int, bytes]:
    """GET (or *method*) *path* on 127.0.0.1:*port*, on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def reply(response: Any) -> tuple[int, bytes]:
    """A test-client response as what its user saw: status and body."""
    return response.status_code, response.get_data()


class Worker(threading.Thread):
    """
    A thread that runs *target* and keeps its result or exception, so a
    failure inside it fails the test instead of vanishing.
    """

    def __init__(self, target: Callable[[], Any], name: str) -> None:
        super().__init__(name=name)
        self._target_fn = target
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._target_fn()
        except BaseException as exc:  # noqa: BLE001 - handed to outcome()
            self.error = exc

    def outcome(self) -> Any:
        """Join (bounded) and return the result, or raise the error."""
        self.join(timeout=TIMEOUT)
        if self.is_alive():
            msg = f"thread {self.name!r} did not finish in {TIMEOUT}s"
            raise TimeoutError(msg)
        if self.error is not None:
            raise self.error
        return self.result


def wait(event: threading.Event) -> None:
    """Wait for *event*, bounded: a scenario that never gets it is stuck."""
    if not event.wait(TIMEOUT):
        msg = "a scenario waited too long for its peer"
        raise TimeoutError(msg)


# -- tracebacks of raise mode ----------------------------------------------


def line_of(path: str, marker: str) -> int:
    """The 1-based number of the only line of *path* ending in *marker*."""
    lines = pathlib.Path(path).read_text().splitlines()
    found = [n for n, text in enumerate(lines, 1) if text.endswith(marker)]
    assert len(found) == 1, f"{marker!r} is on lines {found}"
    return found[0]


def last_user_frame(tb: TracebackType | None, path: str) -> tuple[int, str]:
    """
    Line number and function of the last frame of *tb* in *path*, and
    check that every frame after it is flask_ctxguard's own.
    """
    frames = traceback.extract_tb(tb)
    mine = [n for n, frame in enumerate(frames) if frame.filename == path]
    assert mine, "the traceback never passes through the program"
    last = mine[-1]
    below = {
        pathlib.Path(frame.filename).parent.name
        for frame in frames[last + 1 :]
    }
    # Between the offending line and the raise: the guard only, plus the
    # proxy or library the program went through (werkzeug.local for
    # 'current_user', flask_login).
    assert below <= {"flask_ctxguard", "werkzeug", "flask_login"}, below
    return frames[last].lineno, frames[last].name


# -- hygiene ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_guard_failure():
    """
    The guard never fails internally: it would log an 'internal-error'
    event and carry on, which no scenario may provoke.
    """
    with structlog.testing.capture_logs() as events:
        yield
    failures = [e for e in events if e["event"] == "internal-error"]

    assert [] == failures


@pytest.fixture(autouse=True)
def _no_thread_left():
    """A scenario leaves no server, pool or worker thread running."""
    before = set(threading.enumerate())
    yield
    # An idle worker of an executor nobody references (asgiref's, under
    # Flask 2.3) exits once the executor is collected.
    gc.collect()
    left = [t for t in threading.enumerate() if t not in before]
    for thread in left:
        thread.join(timeout=TIMEOUT)
    alive = [t.name for t in left if t.is_alive()]

    assert [] == alive
