"""
Helpers shared by the test modules and the scenario corpus: running a
program bare and guarded, real servers and clients, bounded threads, and
short ways to look at what a guard reported.

Fixtures live in ``conftest.py`` files; everything a test imports lives
here.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import http.client
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, Protocol

import pytest
import structlog
from flask import Flask, g, request, session
from werkzeug.serving import make_server

import flask_ctxguard
from flask_ctxguard import ContaminationError, CtxGuard, Violation
from flask_ctxguard._core.flaskcompat import app_ctx_var as _cv_app
from flask_ctxguard._core.flaskcompat import request_ctx_var as _cv_request

#: Bound of every wait: a test that needs longer is stuck.
TIMEOUT = 10.0

#: What a test's views keep past their request; ``tests/conftest.py``
#: empties it after every test.
KEPT: list[Any] = []


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

    def control(self) -> list[str]:
        """
        The positive control of a silent run: the codes the same guard
        reports for a request of the same app kept past its end.
        """
        return kept_request_control(self.program.app, self.guard)


def isolated(func: Callable[[], Any]) -> Any:
    """
    Call *func* in a fresh, empty `contextvars.Context`, and check that it
    leaves no Flask context pushed there (the suite's leak detector only
    sees the test's own context).

    What *func*'s requests leave in ContextVars (the test client runs them
    in the caller's context) stays in that context and dies with it.
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
    bare = isolated(make().drive)
    program = make()
    guard = guarded(program, **config)
    return Run(
        bare=bare,
        guarded=isolated(program.drive),
        guard=guard,
        program=program,
    )


def assert_sanctioned(run: Run) -> None:
    """
    Check that the guard changed none of *run*'s responses and reported
    nothing, and that the same guard still reports the positive control.
    """
    __tracebackhide__ = True

    assert run.bare == run.guarded
    assert [] == reports(run.violations)
    assert ["CG104"] == run.control()


def drive_in_raise_mode(program: Program) -> ContaminationError:
    """
    Guard *program* in raise mode, drive it, and return the
    `ContaminationError` it raised (failing the test if none).
    """
    __tracebackhide__ = True
    guarded(program, CTXGUARD_MODE="raise")
    with pytest.raises(ContaminationError) as excinfo:
        isolated(program.drive)
    return excinfo.value


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


#: The project's root: server processes run from there, so that they
#: import this checkout's ``tests`` (and package).
ROOT = pathlib.Path(__file__).resolve().parents[1]
#: Bound of a server process's start and stop.
START_TIMEOUT = 30.0


class ServerProcess:
    """
    A server running in its own process group (gunicorn's arbiter, a gevent
    program), and every line it and its workers wrote to stderr: where it
    listens ("Listening at: http://127.0.0.1:<port>", gunicorn's words) and
    the JSON lines of the app's structured log.
    """

    def __init__(self, proc: subprocess.Popen[str], workers: int) -> None:
        self.proc = proc
        self.workers = workers
        self.lines: list[str] = []
        self.port = 0
        self.ready = threading.Event()
        self._lock = threading.Lock()

    def read(self) -> None:
        """Collect stderr until the server exits (a thread's target)."""
        assert self.proc.stderr is not None
        ready = 0
        for line in self.proc.stderr:
            with self._lock:
                self.lines.append(line)
            if not self.port and (
                found := re.search(r"Listening at: http://[\d.]+:(\d+)", line)
            ):
                self.port = int(found[1])
            # Two workers writing at once can leave their events on one
            # line (structlog's PrintLogger writes the newline apart).
            ready += line.count('"event": "worker-ready"')
            if ready >= self.workers:
                self.ready.set()
        self.ready.set()  # the server is gone: stop waiting

    def events(self) -> list[dict[str, Any]]:
        """The structured log: every JSON line, parsed."""
        with self._lock:
            lines = list(self.lines)
        return [
            event
            for line in lines
            if line.startswith("{")
            for event in _json_objects(line)
        ]

    def output(self) -> str:
        with self._lock:
            return "".join(self.lines)


def _json_objects(line: str) -> list[dict[str, Any]]:
    """The JSON objects of *line*: one, or several back to back."""
    decode = json.JSONDecoder().raw_decode
    found = []
    index = 0
    line = line.strip()
    while index < len(line):
        event, index = decode(line, index)
        found.append(event)
    return found


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM (graceful), bounded; then SIGKILL to the process group."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=START_TIMEOUT)
    # Workers that outlived their arbiter (they should not) die with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@contextlib.contextmanager
def serve_process(
    name: str, command: list[str], *, workers: int = 1
) -> Iterator[ServerProcess]:
    """
    Run the server *command* (*name*, for errors) from the project's root,
    in a new process group, and yield it once it listens and its *workers*
    logged ``worker-ready``; stop it (bounded) on the way out.
    """
    with subprocess.Popen(
        command,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        server = ServerProcess(proc, workers)
        reader = threading.Thread(target=server.read, name="server-stderr")
        reader.start()
        try:
            server.ready.wait(START_TIMEOUT)
            if proc.poll() is not None or not server.port:
                msg = f"{name} did not start:\n{server.output()}"
                raise RuntimeError(msg)
            if not server.ready.is_set():
                msg = f"{name}'s workers did not boot:\n{server.output()}"
                raise TimeoutError(msg)
            yield server
        finally:
            _stop(proc)
            reader.join(START_TIMEOUT)


def _gunicorn_options() -> list[str]:
    """``--no-control-socket`` where this gunicorn has a control socket."""
    shown = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--help"],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=True,
    ).stdout
    return ["--no-control-socket"] if "--no-control-socket" in shown else []


@contextlib.contextmanager
def gunicorn(
    app: str = "tests.serverapp:gunicorn_app()",
    *,
    workers: int = 2,
    threads: int = 8,
) -> Iterator[ServerProcess]:
    """
    Run ``gunicorn -k gthread`` serving *app* on 127.0.0.1 (a port the OS
    picks) and yield it once every worker has built the app (the app logs
    ``worker-ready`` as JSON to stderr).
    """
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-k",
        "gthread",
        "-w",
        str(workers),
        "--threads",
        str(threads),
        "-b",
        "127.0.0.1:0",
        "--graceful-timeout",
        "10",
        *_gunicorn_options(),
        app,
    ]
    with serve_process("gunicorn", command, workers=workers) as server:
        yield server


def reply(response: Any) -> tuple[int, bytes]:
    """What the response's user saw: status and body (then close it)."""
    try:
        return response.status_code, response.get_data()
    finally:
        response.close()


def pooled(
    app: Flask,
    requests: list[tuple[str, dict[str, str]]],
    *,
    thread_name_prefix: str = "worker",
) -> list[Any]:
    """
    GET each of *requests* (path, headers) with *app*'s test client, one
    after the other on one pooled thread, as a gthread worker runs them.
    """
    client = app.test_client()

    def get(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        return reply(client.get(path, headers=headers))

    with ThreadPoolExecutor(1, thread_name_prefix=thread_name_prefix) as pool:
        return [
            pool.submit(get, path, headers).result(TIMEOUT)
            for path, headers in requests
        ]


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


def is_library_path(path: object, *modules: Any) -> bool:
    """
    Whether the file *path* belongs to one of the packages *modules*
    (by their folder, not by a word of the path: the checkout itself may
    live in a folder named ``flask_ctxguard``).
    """
    file = pathlib.Path(str(path)).resolve()
    return any(
        pathlib.Path(module.__file__).resolve().parent in file.parents
        for module in modules
    )


def last_user_frame(tb: TracebackType | None, path: str) -> tuple[int, str]:
    """
    Line number and function of the last frame of *tb* in *path*, and
    check that every frame after it is flask_ctxguard's own.
    """
    frames = traceback.extract_tb(tb)
    mine = [n for n, frame in enumerate(frames) if frame.filename == path]
    assert mine, "the traceback never passes through the program"
    last = mine[-1]
    package = pathlib.Path(flask_ctxguard.__file__).parent
    below = {
        "flask_ctxguard"
        if package in pathlib.Path(frame.filename).parents
        else pathlib.Path(frame.filename).parent.name
        for frame in frames[last + 1 :]
    }
    # Between the offending line and the raise: the guard only, plus the
    # proxy or library the program went through (werkzeug.local for
    # 'current_user', flask_login).
    assert below <= {"flask_ctxguard", "werkzeug", "flask_login"}, below
    return frames[last].lineno, frames[last].name


# -- what a guard reported -------------------------------------------------


def kept_request_control(
    app: Flask, guard: CtxGuard, headers: dict[str, str] | None = None
) -> list[str]:
    """
    A positive control for a test that expects silence: hand a request of
    *app* to a thread that reads it while the request is in flight, as a
    buggy view would, and return the codes *guard* reported for that:
    ``["CG104"]`` when the guard works, ``[]`` for a guard that reports
    nothing.

    The request is a bare ``test_request_context`` with *headers*, for
    apps that need one to open a session; the app's own
    ``teardown_*`` handlers, written for its real requests, may fail on
    it, and that failure is not the control's business.
    """
    # By identity, not by count: the buffer may be full and drop the oldest.
    before = list(guard.violations)
    seen = {id(violation) for violation in before}

    def read_from_a_thread() -> None:
        with contextlib.suppress(Exception):
            with app.test_request_context(
                "/positive-control", headers=headers
            ):
                kept = request._get_current_object()  # type: ignore[attr-defined]
                reader = Worker(lambda: kept.args, "positive-control")
                reader.start()
                with contextlib.suppress(ContaminationError):
                    reader.outcome()

    isolated(read_from_a_thread)
    return [v.code for v in guard.violations if id(v) not in seen]


def add_g_user_views(app: Flask) -> None:
    """
    Add ``/set/<name>``, which puts *name* on 'g.user', and ``/get``, which
    reads it ('None' when unset).
    """

    @app.route("/set/<name>")
    def set_user(name: str) -> str:
        g.user = name
        return name

    @app.route("/get")
    def get_user() -> str:
        return str(getattr(g, "user", None))


def share_g(app: Flask, *, gets: int = 1) -> list[Any]:
    """
    Request ``/set/alice``, then ``/get`` *gets* times, with *app*'s test
    client inside one pushed app context, so that they share 'g' (CG101
    where Flask shares it); return the responses of ``/get``.
    """
    client = app.test_client()
    with app.app_context():
        client.get("/set/alice")
        return [client.get("/get") for _ in range(gets)]


def add_keep_route(app: Flask) -> None:
    """
    Add ``/keep/<name>`` to *app*: it puts *name* in the session and on
    'g', and appends its request, session and 'g' to `KEPT`, as a buggy
    cache would.
    """

    @app.route("/keep/<name>")
    def keep(name: str) -> str:
        session["user"] = name
        g.user = name
        KEPT.append(
            (
                request._get_current_object(),  # type: ignore[attr-defined]
                session._get_current_object(),  # type: ignore[attr-defined]
                g._get_current_object(),
            )
        )
        return name


def contamination(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``contamination`` events among logged *events*."""
    return [e for e in events if e["event"] == "contamination"]


def internal_errors(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The guard's own failures among logged *events*."""
    return [e for e in events if e["event"] == "internal-error"]


def codes(guard: CtxGuard) -> list[str]:
    """The codes of *guard*'s violations, oldest first."""
    return [violation.code for violation in guard.violations]


def reports(violations: Any) -> list[str]:
    """*violations* rendered, for a readable failure."""
    return [str(violation) for violation in violations]


def drop_event(logger: Any, method_name: str, event_dict: Any) -> Any:
    """A structlog processor that drops every event."""
    raise structlog.DropEvent


# -- an app with one bug of each kind -------------------------------------


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
    """The code and subject of each of *guard*'s violations, oldest first."""
    return [
        (violation.code, violation.subject) for violation in guard.violations
    ]
