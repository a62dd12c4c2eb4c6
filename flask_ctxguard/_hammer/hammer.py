"""
`hammer`: an app served like production, fired at by concurrent clients.

The guard sees the request, the session, ``g`` and ContextVars; it cannot
see data that escapes into a ``threading.local``, a module global, a class
attribute or a cache. Those leaks show only in what the clients receive,
and only when worker threads are reused by other clients, as in
production. `hammer` therefore

- serves the app on a fixed pool of worker threads reused across
  connections and clients, with HTTP/1.1 keep-alive (how gunicorn's
  ``gthread`` worker and waitress serve), or optionally on Werkzeug's
  thread-per-connection server (``flask run``);
- replaces the literal ``{client}`` in each request with a canary, a token
  unique to the client and the run;
- searches every response for the other clients' canaries: a *crossover*;
- collects violations instead of raising them into the served app, keeps
  the server quiet, and summarises the app's own errors once.

This module is the entry: `hammer` itself, and the names the testing
module and the pytest plugin import. Its rooms: `_hammer_plan` (requests,
canaries, marks), `_hammer_run` (clients, barrier, collecting),
`_hammer_result` (the result types, crossovers, the report),
`_hammer_summary` (the pytest terminal summary) and `_hammer_server` (the
servers). See docs/hammer.md.
"""

from __future__ import annotations

from flask import Flask

from flask_ctxguard._core.logger import get_logger
from flask_ctxguard._guard.extension import EXTENSION_KEY, CtxGuard
from flask_ctxguard._hammer.plan import (
    SERVERS,
    Requests,
    RequestSpec,
    Server,
    client_plan,
    make_canaries,
)
from flask_ctxguard._hammer.result import (
    Crossover,
    HammerError,
    HammerResponse,
    HammerResult,
    find_crossovers,
    format_errors,
)
from flask_ctxguard._hammer.run import Run, collecting
from flask_ctxguard._hammer.server import ErrorLog, QuietFlaskErrors
from flask_ctxguard._hammer.summary import (
    record_for_summary,
    write_crossover_summary,
)

__all__ = [
    "Crossover",
    "HammerError",
    "HammerResponse",
    "HammerResult",
    "RequestSpec",
    "Requests",
    "Server",
    "hammer",
    "write_crossover_summary",
]


def hammer(
    app: Flask,
    requests: Requests | str,
    *,
    threads: int = 8,
    rounds: int = 1,
    timeout: float = 30.0,
    server: Server = "pooled",
    workers: int | None = None,
) -> HammerResult:
    """
    Serve *app* like production on 127.0.0.1 and fire *requests* at it
    from *threads* concurrent clients, *rounds* times; report every
    violation and every crossover.

    Every client sends the whole plan (*requests*, or
    ``requests(client_index)``) in order, over one keep-alive connection
    and with its own cookies, so a client can log in and stay logged in.
    The clients send each step of the plan together (a barrier lines them
    up), so every request meets the other clients' previous requests.

    The literal ``{client}`` in a path, a header value or a body becomes
    the client's canary, a short random token unique to the client and
    the run (`HammerResult.canaries`). After the run every response is
    searched for the other clients' canaries: each find is a `Crossover`.

    An app without a `CtxGuard` gets one in ``log`` mode. An app whose
    guard raises (``TESTING = True``) only collects during the run:
    contamination is never raised into the served app. The server prints
    nothing; the app's own errors become 500s, are grouped in
    `HammerResult.errors` and are logged once.

    Args:
        app: The app to serve.
        requests: Paths or `RequestSpec` objects, or a function of the
            client index returning them.
        threads: How many clients run concurrently.
        rounds: How many times each client sends its plan.
        timeout: Seconds the whole run may take.
        server: ``"pooled"``: a fixed pool of worker threads reused across
            connections and clients, HTTP/1.1 keep-alive, as gunicorn's
            ``gthread`` worker and waitress serve. ``"thread-per-connection"``:
            Werkzeug's threaded server (``flask run``), a new thread per
            connection, which closes after each response.
        workers: Worker threads of the pooled server; by default half of
            *threads* (at least 1), so that threads change hands.

    Returns:
        Every response, violation, crossover and error of the run.

    Raises:
        ValueError: for a count, timeout, server or plan hammer cannot run.
        TimeoutError: if the run takes longer than *timeout*.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       A pooled keep-alive server by default (*server*, *workers*);
       ``{client}`` canaries and crossovers; raise mode collects instead.
    """
    if threads < 1 or rounds < 1 or not timeout > 0:
        msg = (
            "threads and rounds must be at least 1 and timeout positive; got"
            f" threads={threads}, rounds={rounds}, timeout={timeout}."
        )
        raise ValueError(msg)
    if server not in SERVERS:
        msg = (
            f"hammer: server must be one of {', '.join(map(repr, SERVERS))};"
            f" got {server!r}."
        )
        raise ValueError(msg)
    if workers is None:
        workers = max(threads // 2, 1)
    elif workers < 1 or server != "pooled":
        msg = (
            f"hammer: workers must be at least 1, and only goes with"
            f" server='pooled'; got workers={workers}, server={server!r}."
        )
        raise ValueError(msg)
    plans = {
        client: client_plan(requests, client) for client in range(threads)
    }
    canaries = make_canaries(threads)
    if EXTENSION_KEY not in app.extensions:
        app.config.setdefault("CTXGUARD_MODE", "log")
        CtxGuard(app)
    run = Run(plans, canaries, rounds, timeout)
    errors = ErrorLog()
    quiet = QuietFlaskErrors(errors)

    from flask_ctxguard._reporting.capture import capture_violations

    app.logger.addFilter(quiet)
    try:
        with collecting(app), capture_violations() as violations:
            if server == "pooled":
                run.serve_pooled(app, workers, errors)
            else:
                run.serve_per_connection(app, errors)
    finally:
        app.logger.removeFilter(quiet)
    responses = sorted(
        run.responses, key=lambda r: (r.client, r.round, r.step)
    )
    result = HammerResult(
        responses=responses,
        violations=list(violations),
        crossovers=find_crossovers(responses, canaries, plans),
        errors=[HammerError(*group) for group in errors.grouped()],
        canaries=canaries,
        server=server,
    )
    if result.errors:
        get_logger().warning(
            "hammer-errors", summary=format_errors(result.errors)
        )
    record_for_summary(result)
    return result
