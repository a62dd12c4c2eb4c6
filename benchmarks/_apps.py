"""
The benchmarked applications: workloads, guard modes, and their requests.

Every benchmark builds its app here so that the in-process, server, memory
and profiling runs measure exactly the same code. An app is one *workload*
(what the view does) under one *mode* (what watches it):

- ``bare``: plain Flask, the baseline.
- ``control``: plain Flask again, in a process of its own: its ratio to
  ``bare`` is the method's own noise floor (ideally 1.000).
- ``log`` / ``raise`` / ``raise+stacks``: `CtxGuard` with that
  ``CTXGUARD_MODE`` (and ``CTXGUARD_STACKS``).
- ``sampled``: log mode with ``CTXGUARD_SAMPLE_RATE = 0.01``, what
  production hosts are meant to run.
- ``sentry`` / ``sentry+tracing``: sentry-sdk's Flask integration with a
  transport that drops every envelope, as a reference point for what
  Flask users already accept from an observability extension.

A mode changes process-wide state (sentry-sdk patches ``Flask.__call__``),
so every measurement builds its app in a fresh process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from flask import (
    Flask,
    Response,
    g,
    render_template,
    request,
    session,
)
from jinja2 import DictLoader
from werkzeug.test import EnvironBuilder

__all__ = [
    "GUARD_MODES",
    "MODES",
    "WORKLOADS",
    "Workload",
    "call",
    "make_app",
    "start_response",
]

#: Every mode, in the order tables list them.
MODES = (
    "bare",
    "control",
    "log",
    "raise",
    "raise+stacks",
    "sampled",
    "sentry",
    "sentry+tracing",
)
#: The modes that install `CtxGuard`.
GUARD_MODES = ("log", "raise", "raise+stacks", "sampled")
#: ``CTXGUARD_SAMPLE_RATE`` of the ``sampled`` mode.
SAMPLE_RATE = 0.01
SENTRY_MODES = ("sentry", "sentry+tracing")

SECRET_KEY = "flask-ctxguard-benchmark"
USER_ID = 7

ROWS_TEMPLATE = """\
<!doctype html>
<title>Items for {{ user.name }}</title>
<h1>Hello {{ user.name }} ({{ g.user.email }})</h1>
<p>{{ info.path }} page {{ info.page }} sorted by {{ info.sort }}</p>
<table>
{%- for row in rows %}
  <tr class="{{ loop.cycle('odd', 'even') }}">
    <td>{{ row.id }}</td><td>{{ row.name }}</td>
    <td>{{ row.description }}</td><td>{{ '%.2f' % row.price }}</td>
  </tr>
{%- endfor %}
</table>
"""

USERS = {
    i: {"id": i, "name": f"user{i}", "email": f"user{i}@example.com"}
    for i in range(1, 51)
}
ITEMS = [
    {
        "id": i,
        "name": f"item <{i}>",
        "description": f'A "useful" thing & number {i}',
        "price": i * 1.25,
    }
    for i in range(1, 31)
]


class Workload:
    """
    One benchmarked view: how to build it into an app and its request.
    """

    def __init__(
        self,
        name: str,
        title: str,
        path: str,
        setup: Callable[[Flask], None],
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.title = title
        self.path = path
        self.setup = setup
        self.extra_headers = extra_headers or {}

    def environ(self, app: Flask) -> dict[str, Any]:
        """A WSGI environ for this workload's request, to be copied."""
        headers = {
            "User-Agent": "flask-ctxguard-bench/1.0",
            "Accept": "text/html",
        }
        headers.update(self.extra_headers)
        cookie = _session_cookie(app) if self.name == "realistic" else None
        if cookie is not None:
            headers["Cookie"] = cookie
        builder = EnvironBuilder(
            path=self.path,
            headers=list(headers.items()),
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )
        try:
            return builder.get_environ()
        finally:
            builder.close()

    def http_headers(self, app: Flask) -> dict[str, str]:
        """The headers a network client sends for this workload."""
        headers = {"User-Agent": "flask-ctxguard-bench/1.0"}
        headers.update(self.extra_headers)
        cookie = _session_cookie(app) if self.name == "realistic" else None
        if cookie is not None:
            headers["Cookie"] = cookie
        return headers


def _setup_hello(app: Flask) -> None:
    @app.route("/")
    def hello() -> str:
        return "Hello, World!"


def _setup_realistic(app: Flask) -> None:
    app.secret_key = SECRET_KEY
    app.jinja_loader = DictLoader({"rows.html": ROWS_TEMPLATE})

    @app.before_request
    def load_user() -> None:
        g.user = USERS.get(session.get("user_id", 0))

    @app.after_request
    def add_header(response: Response) -> Response:
        response.headers["X-Served-By"] = "bench"
        return response

    @app.route("/login")
    def login() -> str:
        session["user_id"] = USER_ID
        return "ok"

    @app.route("/items")
    def items() -> str:
        # Ten reads of request attributes, as a view and its helpers do.
        info = {
            "method": request.method,
            "path": request.path,
            "full_path": request.full_path,
            "page": request.args.get("page", "1"),
            "agent": request.headers.get("User-Agent"),
            "theme": request.cookies.get("theme", "light"),
            "remote": request.remote_addr,
            "host": request.host,
            "scheme": request.scheme,
            "url": request.url,
        }
        info["sort"] = "name"
        return render_template("rows.html", user=g.user, rows=ITEMS, info=info)


LOGIN_TEMPLATE = """\
<!doctype html>
<title>Orders</title>
<table>
{%- for row in rows %}
  <tr>
  {%- if current_user.is_authenticated %}
    <td>{{ row.id }}</td><td>{{ row.name }}</td>
    <td>{{ current_user.name }}</td>
    <td><a href="/users/{{ current_user.id }}/orders/{{ row.id }}">
      edit</a></td>
  {%- else %}
    <td>{{ row.id }}</td><td colspan="3">sign in</td>
  {%- endif %}
  </tr>
{%- endfor %}
</table>
"""


class _Row:
    """A row of the Flask-Login page: an object, as ORMs hand them out."""

    __slots__ = ("id", "name")

    def __init__(self, id_: int, name: str) -> None:
        self.id = id_
        self.name = name


LOGIN_ROWS = [_Row(i, f"order <{i}>") for i in range(1, 31)]
API_KEY = "key-7"


def _setup_login(app: Flask) -> None:
    # Flask-Login with a request_loader (an API key header), and a page
    # that reads current_user three times in each of its 30 rows: every
    # read is `"_login_user" in g` and `g._login_user`.
    from flask_login import LoginManager, UserMixin, current_user

    class User(UserMixin):  # type: ignore[misc]
        """A user of the Flask-Login page."""

        def __init__(self, id_: int, name: str) -> None:
            self.id = id_
            self.name = name

    users = {f"key-{i}": User(i, f"user{i}") for i in range(1, 51)}
    app.secret_key = SECRET_KEY
    app.jinja_loader = DictLoader({"orders.html": LOGIN_TEMPLATE})
    manager = LoginManager(app)

    @manager.request_loader
    def load_user_from_request(req: Any) -> Any:
        return users.get(req.headers.get("X-Api-Key", ""))

    @app.route("/orders")
    def orders() -> str:
        # The proxy itself, as an app passes it to a template (or calls a
        # helper reading it per row): the context processor's
        # `current_user` would be read from g once per render.
        return render_template(
            "orders.html", rows=LOGIN_ROWS, current_user=current_user
        )


WORKLOADS = {
    "hello": Workload("hello", "hello-world", "/", _setup_hello),
    "realistic": Workload(
        "realistic",
        "realistic",
        "/items?page=2",
        _setup_realistic,
    ),
    "login": Workload(
        "login",
        "Flask-Login page",
        "/orders",
        _setup_login,
        extra_headers={"X-Api-Key": API_KEY},
    ),
}

_cookies: dict[int, str | None] = {}


def _session_cookie(app: Flask) -> str | None:
    """The ``Cookie`` header of a logged-in user of *app*."""
    if id(app) in _cookies:
        return _cookies[id(app)]
    with app.test_client() as client:
        client.get("/login")
        cookie = client.get_cookie("session")
    value = None if cookie is None else f"session={cookie.value}"
    _cookies[id(app)] = value
    return value


def _init_sentry(tracing: bool) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.transport import Transport

    class DropTransport(Transport):
        """A sentry-sdk transport that drops every envelope."""

        def capture_envelope(self, envelope: Any) -> None:
            """Drop *envelope*."""

    options: dict[str, Any] = {
        "dsn": "http://public@127.0.0.1:9/1",
        "integrations": [FlaskIntegration()],
        "transport": DropTransport,
    }
    if tracing:
        options["traces_sample_rate"] = 1.0
    sentry_sdk.init(**options)


def make_app(workload: str, mode: str) -> tuple[Flask, Any]:
    """
    Build the app of *workload* under *mode*.

    Returns:
        The app, and its `CtxGuard` (`None` unless a guard mode).
    """
    if mode not in MODES:
        msg = f"mode must be one of {', '.join(MODES)}; got {mode!r}."
        raise ValueError(msg)
    if mode in SENTRY_MODES:
        _init_sentry(tracing=mode == "sentry+tracing")
    app = Flask(f"bench_{workload}")
    WORKLOADS[workload].setup(app)
    guard = None
    if mode in GUARD_MODES:
        from flask_ctxguard import CtxGuard

        app.config["CTXGUARD_MODE"] = (
            "raise" if mode.startswith("raise") else "log"
        )
        app.config["CTXGUARD_STACKS"] = mode == "raise+stacks"
        if mode == "sampled":
            app.config["CTXGUARD_SAMPLE_RATE"] = SAMPLE_RATE
        guard = CtxGuard(app)
    return app, guard


def start_response(
    status: str, headers: Iterable[tuple[str, str]], exc_info: Any = None
) -> Callable[[bytes], object]:
    """A WSGI ``start_response`` that keeps nothing."""
    return _write


def _write(data: bytes) -> object:
    return None


def call(app: Flask, environ: dict[str, Any]) -> bytes:
    """
    One whole WSGI call of *app* with a copy of *environ*: the status line,
    the headers and the body, as bytes.

    Not used in timed loops, only to check that every mode serves the same
    bytes.
    """
    seen: list[bytes] = []

    def keep(
        status: str, headers: Iterable[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        seen.append(status.encode())
        seen.extend(f"{k}: {v}".encode() for k, v in headers)
        return _write

    result = app(dict(environ), keep)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return b"\r\n".join([*seen, b"", body])


def app_from_env() -> Flask:
    """
    The app named by ``CTXGUARD_BENCH_WORKLOAD`` and ``CTXGUARD_BENCH_MODE``
    (for gunicorn, which imports an app by name).
    """
    workload = os.environ.get("CTXGUARD_BENCH_WORKLOAD", "hello")
    mode = os.environ.get("CTXGUARD_BENCH_MODE", "bare")
    app, _ = make_app(workload, mode)
    return app
