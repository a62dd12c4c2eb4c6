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

The servers themselves are in `_hammer_server`. See docs/hammer.md and
issue 13.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import http.client
import http.cookies
import os
import re
import secrets
import socket
import string
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, Protocol

from flask import Flask
from werkzeug.serving import make_server

from ._extension import EXTENSION_KEY, CtxGuard
from ._hammer_server import (
    Buffered,
    ErrorLog,
    PooledServer,
    QuietFlaskErrors,
    QuietHandler,
    escape,
)
from ._logging import get_logger
from ._violations import Violation

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

#: The placeholder replaced by each client's canary.
PLACEHOLDER = "{client}"

Server = Literal["pooled", "thread-per-connection"]
SERVERS: tuple[Server, ...] = ("pooled", "thread-per-connection")

_CANARY_PREFIX = "cg"
_CANARY_ALPHABET = string.ascii_lowercase + string.digits
_CANARY_LENGTH = 8
_EXCERPT = 40
_SHOWN_PER_GROUP = 3
_DOCS = "docs/hammer.md"


# -- what a run sends and receives --------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RequestSpec:
    """
    One request of a `hammer` plan.

    The literal ``{client}`` in *path*, in a header value or in *body* is
    replaced by the sending client's canary (see `hammer`).

    Args:
        path: The path with its query string, starting with ``/``.
        method: The HTTP method.
        body: The request body; a `str` is sent encoded as UTF-8.
        headers: Header names and values, as pairs or a mapping.
        private: Whether the response belongs to its client alone: another
            client's canary in it is a crossover. Set `False` for pages
            that rightly show other users' data (a member list).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *body* may be a `str`, *headers* a mapping; *private* added.
    """

    path: str
    method: str = "GET"
    body: bytes | str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    private: bool = True

    def __post_init__(self) -> None:
        path: object = self.path
        if not isinstance(path, str) or not path.startswith("/"):
            msg = (
                f"RequestSpec: path must be a str starting with '/'; got"
                f" {self.path!r}. Pass the path and query only, such as"
                " '/login/{client}?next=/'."
            )
            raise ValueError(msg)
        headers: object = self.headers
        if isinstance(headers, Mapping):
            headers = headers.items()
        if not isinstance(headers, Iterable):
            msg = (
                f"RequestSpec: headers must be (name, value) pairs or a"
                f" mapping; got {headers!r}."
            )
            raise TypeError(msg)
        object.__setattr__(self, "headers", tuple(map(tuple, headers)))

    @property
    def body_bytes(self) -> bytes | None:
        """The body as bytes, or `None`."""
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body

    def with_canary(self, canary: str) -> RequestSpec:
        """This request with every ``{client}`` replaced by *canary*."""
        body = self.body_bytes
        return dataclasses.replace(
            self,
            path=self.path.replace(PLACEHOLDER, canary),
            body=(
                None
                if body is None
                else body.replace(PLACEHOLDER.encode(), canary.encode())
            ),
            headers=tuple(
                (name, value.replace(PLACEHOLDER, canary))
                for name, value in self.headers
            ),
        )

    def describe(self) -> str:
        """``"GET /login/{client}"``, control characters escaped."""
        return escape(f"{self.method} {self.path}")


@dataclasses.dataclass(frozen=True, slots=True)
class HammerResponse:
    """
    One response `hammer` received, with the client and round it belongs to.

    *request* is the request as sent (canary in place); *step* is its
    position in the client's plan, from 0.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *step* added.
    """

    client: int
    round: int
    request: RequestSpec
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    step: int = 0

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True, slots=True)
class Crossover:
    """
    A response that carried another client's canary.

    Args:
        client: The client that received it.
        round: The round, from 0.
        step: The request's position in the client's plan, from 0.
        request: The request as planned (``{client}`` not yet replaced).
        source: The client whose canary it was.
        canary: That canary, or the word of the source's plan that only
            the source sends (such as ``user3``), when that was found.
        where: ``"body"`` or ``"header 'Name'"``.
        excerpt: The text around the canary, control characters escaped.
        sent_in: The requests of *source*'s plan that carried the canary.

    .. versionadded:: 0.1.0
    """

    client: int
    round: int
    step: int
    request: RequestSpec
    source: int
    canary: str
    where: str
    excerpt: str
    sent_in: tuple[str, ...] = ()

    def __str__(self) -> str:
        origin = (
            f" (sent in {', '.join(self.sent_in)})" if self.sent_in else ""
        )
        return (
            f"client {self.client}, round {self.round}:"
            f" {self.request.describe()} returned client {self.source}'s"
            f" canary {self.canary!r}{origin} in the {self.where}:\n"
            f"    {self.excerpt}"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class HammerError:
    """
    An error of the app during a run that is not contamination, grouped:
    one per exception type and site, with how often it happened.

    .. versionadded:: 0.1.0
    """

    type: str
    message: str
    site: str | None
    count: int
    request: str
    traceback: str

    def __str__(self) -> str:
        at = f" at {self.site}" if self.site else ""
        return (
            f"{self.type}: {self.message}{at}, {self.count}"
            f" time{'' if self.count == 1 else 's'} (first on {self.request})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class HammerResult:
    """
    What `hammer` saw: every response, every violation, every crossover.

    Attributes:
        responses: By client, then round, then step.
        violations: Reported by the guard during the run.
        crossovers: Responses that carried another client's canary.
        errors: The app's own errors (exceptions that became 500s),
            grouped by type and site; they are not contamination.
        canaries: Each client's canary.
        server: ``"pooled"`` or ``"thread-per-connection"``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *crossovers*, *errors*, *canaries* and *server* added.
    """

    responses: list[HammerResponse]
    violations: list[Violation]
    crossovers: list[Crossover] = dataclasses.field(default_factory=list)
    errors: list[HammerError] = dataclasses.field(default_factory=list)
    canaries: dict[int, str] = dataclasses.field(default_factory=dict)
    server: Server = "pooled"

    def for_client(self, client: int) -> list[HammerResponse]:
        """The responses of one client, in the order it sent them."""
        return [r for r in self.responses if r.client == client]

    @property
    def is_clean(self) -> bool:
        """Whether there was neither a violation nor a crossover."""
        return not (self.violations or self.crossovers)

    def report(self) -> str:
        """
        Every crossover, violation and error, for a person to act on.
        """
        from .testing import format_violations

        parts = []
        if self.crossovers:
            parts.append(format_crossovers(self.crossovers))
        if self.violations:
            count = len(self.violations)
            noun = "violation" if count == 1 else "violations"
            parts.append(
                f"{count} request-context contamination {noun}:\n\n"
                f"{format_violations(self.violations)}"
            )
        if self.errors:
            parts.append(format_errors(self.errors))
        return "\n\n".join(parts) or "hammer: clean."

    def assert_clean(self) -> None:
        """
        Fail with the full report if there was any violation or crossover.

        Raises:
            AssertionError: listing every crossover and violation (and,
                for context, the app's own errors).
        """
        __tracebackhide__ = True
        if not self.is_clean:
            raise AssertionError(self.report())


class _Plan(Protocol):
    def __call__(self, client: int, /) -> Sequence[str | RequestSpec]: ...


Requests = Sequence[str | RequestSpec] | _Plan


# -- canaries and crossovers --------------------------------------------------


def make_canaries(clients: int) -> dict[int, str]:
    """
    One canary per client: ``"cg"`` and 8 random lowercase letters and
    digits, distinct, none inside another.
    """
    canaries: dict[int, str] = {}
    seen: set[str] = set()
    while len(canaries) < clients:
        token = _CANARY_PREFIX + "".join(
            secrets.choice(_CANARY_ALPHABET) for _ in range(_CANARY_LENGTH)
        )
        if token not in seen:
            seen.add(token)
            canaries[len(canaries)] = token
    return canaries


def _excerpt(text: str, start: int, length: int) -> str:
    left = max(start - _EXCERPT, 0)
    right = min(start + length + _EXCERPT, len(text))
    return (
        ("..." if left else "")
        + escape(text[left:right])
        + ("..." if right < len(text) else "")
    )


@dataclasses.dataclass(frozen=True, slots=True)
class _Mark:
    """Something only one client sends: its canary, or a plan's own."""

    text: str
    pattern: re.Pattern[str]
    sent_in: tuple[str, ...]


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def _tokens(spec: RequestSpec) -> set[str]:
    """The words of a request that may identify its client."""
    texts = [
        spec.path,
        (spec.body_bytes or b"").decode("utf-8", "replace"),
        *(value for _, value in spec.headers),
    ]
    return {
        token.lower()
        for text in texts
        for token in _TOKEN.findall(text)
        if len(token) >= 4
        and any(c.isdigit() for c in token)
        and any(c.isalpha() for c in token)
    }


def find_marks(
    canaries: Mapping[int, str], plans: Mapping[int, Sequence[RequestSpec]]
) -> dict[int, list[_Mark]]:
    """
    What identifies each client in a response: its canary, and the words
    of its plan that no other client's plan has (``user3`` in a plan
    function's ``/login/user3``; letters and digits, at least 4 characters,
    matched as whole words, so that ``user1`` is not found in ``user10``).
    """
    tokens = {
        client: {t for spec in plan for t in _tokens(spec)}
        for client, plan in plans.items()
    }
    counts = collections.Counter(t for ts in tokens.values() for t in ts)
    marks: dict[int, list[_Mark]] = {}
    for client, canary in canaries.items():
        plan = plans[client]
        marks[client] = [
            _Mark(
                canary,
                re.compile(re.escape(canary), re.IGNORECASE),
                tuple(
                    dict.fromkeys(
                        spec.describe()
                        for spec in plan
                        if _carries_placeholder(spec)
                    )
                ),
            )
        ]
        for token in sorted(tokens[client]):
            if counts[token] == 1:
                marks[client].append(
                    _Mark(
                        token,
                        re.compile(
                            rf"(?<![a-z0-9]){re.escape(token)}(?![a-z0-9])",
                            re.IGNORECASE,
                        ),
                        tuple(
                            dict.fromkeys(
                                spec.describe()
                                for spec in plan
                                if token in _tokens(spec)
                            )
                        ),
                    )
                )
    return marks


def find_crossovers(
    responses: Iterable[HammerResponse],
    canaries: Mapping[int, str],
    plans: Mapping[int, Sequence[RequestSpec]],
) -> list[Crossover]:
    """
    Every place a response carries what identifies another client: its
    canary, or a word only that client's plan has (see `find_marks`).

    The search ignores case (an app may upper-case a name) and skips the
    responses of requests that are not *private*. One crossover is
    reported per response, place and source client.
    """
    marks = find_marks(canaries, plans)
    found = []
    for response in responses:
        planned = plans[response.client][response.step]
        if not planned.private:
            continue
        places = [("body", response.text)] + [
            (f"header {escape(name)!r}", value)
            for name, value in response.headers
        ]
        for where, text in places:
            for source, source_marks in marks.items():
                if source == response.client:
                    continue
                for mark in source_marks:
                    match = mark.pattern.search(text)
                    if match is None:
                        continue
                    found.append(
                        Crossover(
                            client=response.client,
                            round=response.round,
                            step=response.step,
                            request=planned,
                            source=source,
                            canary=mark.text,
                            where=where,
                            excerpt=_excerpt(
                                text, match.start(), len(mark.text)
                            ),
                            sent_in=mark.sent_in,
                        )
                    )
                    break
    return found


def _carries_placeholder(spec: RequestSpec) -> bool:
    body = spec.body_bytes or b""
    return (
        PLACEHOLDER in spec.path
        or PLACEHOLDER.encode() in body
        or any(PLACEHOLDER in value for _, value in spec.headers)
    )


def format_crossovers(crossovers: Sequence[Crossover]) -> str:
    """
    The report of *crossovers*, grouped by request and place, a few
    examples each.
    """
    groups: dict[tuple[int, str, str], list[Crossover]] = {}
    for crossover in crossovers:
        key = (crossover.step, crossover.request.describe(), crossover.where)
        groups.setdefault(key, []).append(crossover)
    count = len(crossovers)
    lines = [
        f"hammer: {count} crossover{'' if count == 1 else 's'}: responses"
        " that carried another client's canary, so one client's data"
        " reached another client."
    ]
    for (step, request, where), group in groups.items():
        rounds = len({c.round for c in group})
        lines.append("")
        lines.append(
            f"{request} (step {step + 1} of the plan), in the {where}:"
            f" {len(group)} time{'' if len(group) == 1 else 's'} in"
            f" {rounds} round{'' if rounds == 1 else 's'}"
        )
        lines.extend(f"  {c}" for c in group[:_SHOWN_PER_GROUP])
        if len(group) > _SHOWN_PER_GROUP:
            lines.append(f"  ... and {len(group) - _SHOWN_PER_GROUP} more")
        lines.append(
            f"  fix: find what '{request}' reads that an earlier request"
            " left outside its own context: a module global, a class"
            " attribute, a threading.local, a cache (functools.lru_cache)"
            " not keyed by the user, or a ContextVar set and never reset."
        )
    lines.append(f"  docs: {_DOCS}#crossovers")
    return "\n".join(lines)


def format_errors(errors: Sequence[HammerError]) -> str:
    """One line per kind of error the app raised."""
    total = sum(error.count for error in errors)
    lines = [
        f"hammer: the app raised {total} error{'' if total == 1 else 's'}"
        " that are not contamination (answered 500):"
    ]
    lines.extend(f"  {error}" for error in errors)
    return "\n".join(lines)


# -- the run ------------------------------------------------------------------


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
    plans = {client: _plan(requests, client) for client in range(threads)}
    canaries = make_canaries(threads)
    if EXTENSION_KEY not in app.extensions:
        app.config.setdefault("CTXGUARD_MODE", "log")
        CtxGuard(app)
    run = _Run(plans, canaries, rounds, timeout)
    errors = ErrorLog()
    quiet = QuietFlaskErrors(errors)

    from .testing import capture_violations

    app.logger.addFilter(quiet)
    try:
        with _collecting(app), capture_violations() as violations:
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
    _record_for_summary(result)
    return result


def _plan(requests: Requests | str, client: int) -> list[RequestSpec]:
    """The checked plan of one client."""
    if isinstance(requests, str):
        requests = [requests]  # one path, not a sequence of characters
    items: object = requests(client) if callable(requests) else requests
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, Iterable):
        msg = (
            f"hammer: client {client}'s plan is {items!r}; expected a list"
            " of paths or RequestSpec objects."
        )
        raise TypeError(msg)
    plan = []
    for position, item in enumerate(items):
        if isinstance(item, str):
            item = RequestSpec(item)  # noqa: PLW2901 - normalised in place
        elif not isinstance(item, RequestSpec):
            msg = (
                f"hammer: request {position} of client {client}'s plan is"
                f" {item!r} ({type(item).__name__}); expected a path such as"
                " '/me' or a flask_ctxguard.testing.RequestSpec."
            )
            raise TypeError(msg)
        plan.append(item)
    if not plan:
        msg = (
            f"hammer: client {client}'s plan is empty; give at least one"
            " path or RequestSpec."
        )
        raise ValueError(msg)
    return plan


@contextlib.contextmanager
def _collecting(app: Flask) -> Iterator[None]:
    """
    While hammer runs, the app's guard collects instead of raising: a
    ContaminationError raised into the served app would turn the request
    into a 500 and hide the rest of the run.
    """
    reporter = getattr(app.extensions.get(EXTENSION_KEY), "reporter", None)
    settings = getattr(reporter, "settings", None)
    if getattr(settings, "mode", None) != "raise":
        yield
        return
    reporter.settings = dataclasses.replace(settings, mode="log")  # type: ignore[union-attr,type-var] # checked above
    try:
        yield
    finally:
        reporter.settings = settings  # type: ignore[union-attr]


class _Run:
    """One `hammer` run: its clients and what they received."""

    def __init__(
        self,
        plans: dict[int, list[RequestSpec]],
        canaries: dict[int, str],
        rounds: int,
        timeout: float,
    ) -> None:
        self.plans = plans
        self.canaries = canaries
        self.rounds = rounds
        self.timeout = timeout
        self.steps = max(len(plan) for plan in plans.values())
        self.deadline = time.monotonic() + timeout
        self.barrier = threading.Barrier(len(plans))
        self.lock = threading.Lock()
        self.responses: list[HammerResponse] = []
        self.errors: list[BaseException] = []
        self.connections: list[http.client.HTTPConnection] = []
        self.port = 0

    def _remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.01)

    def serve_pooled(self, app: Flask, workers: int, errors: ErrorLog) -> None:
        server = PooledServer(app, workers, errors, self.timeout + 5)
        self.port = server.server_port
        server.start()
        try:
            self._run_clients()
        finally:
            server.stop(self._remaining() + 5)
        self._raise_client_error()

    def serve_per_connection(self, app: Flask, errors: ErrorLog) -> None:
        server = make_server(
            "127.0.0.1",
            0,
            Buffered(app, errors),
            threaded=True,
            request_handler=QuietHandler,
        )
        self.port = server.server_port
        serving = threading.Thread(
            target=server.serve_forever, name="ctxguard-hammer-server"
        )
        serving.start()
        try:
            self._run_clients()
        finally:
            server.shutdown()
            serving.join(self.timeout)
            server.server_close()
        self._raise_client_error()

    def _raise_client_error(self) -> None:
        if self.errors:
            broken = threading.BrokenBarrierError
            real = [e for e in self.errors if not isinstance(e, broken)]
            raise real[0] if real else self.errors[0]

    def _run_clients(self) -> None:
        clients = [
            threading.Thread(
                target=self._client,
                args=(i,),
                name=f"ctxguard-hammer-client-{i}",
                daemon=True,
            )
            for i in self.plans
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(self._remaining())
        if any(thread.is_alive() for thread in clients):
            # Unblock clients still waiting for an answer, then report.
            self.barrier.abort()
            with self.lock:
                for conn in self.connections:
                    if conn.sock is not None:
                        with contextlib.suppress(OSError):
                            conn.sock.shutdown(socket.SHUT_RDWR)
            for thread in clients:
                thread.join(5)
            msg = (
                f"hammer: the clients did not finish within {self.timeout}s;"
                " pass a larger timeout= or fewer requests."
            )
            raise TimeoutError(msg)

    def _client(self, index: int) -> None:
        plan = self.plans[index]
        sent = [spec.with_canary(self.canaries[index]) for spec in plan]
        cookies: dict[str, str] = {}
        # The socket may wait longer than the run: the run's own deadline
        # decides, with hammer's message, when the clients took too long.
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=self.timeout + 5
        )
        with self.lock:
            self.connections.append(conn)
        try:
            for round_ in range(self.rounds):
                # Every step starts together for every client (a client
                # with a shorter plan still takes part in the barrier).
                for step in range(self.steps):
                    self.barrier.wait(timeout=self._remaining())
                    if step >= len(sent):
                        continue
                    got = _send(conn, sent[step], cookies)
                    with self.lock:
                        self.responses.append(
                            HammerResponse(
                                index, round_, sent[step], *got, step=step
                            )
                        )
        except BaseException as exc:  # noqa: BLE001 - re-raised by serve()
            with self.lock:
                self.errors.append(exc)
            self.barrier.abort()
        finally:
            conn.close()


def _send(
    conn: http.client.HTTPConnection,
    spec: RequestSpec,
    cookies: dict[str, str],
) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
    headers = dict(spec.headers)
    if cookies:
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
    conn.request(spec.method, spec.path, body=spec.body_bytes, headers=headers)
    response = conn.getresponse()
    body = response.read()
    for value in response.headers.get_all("Set-Cookie") or ():
        jar = http.cookies.SimpleCookie()
        jar.load(value)
        for name, morsel in jar.items():
            cookies[name] = morsel.value
    return response.status, body, tuple(response.getheaders())


# -- the pytest plugin's summary ----------------------------------------------

# Crossovers found during pytest tests, by test id, for the plugin's
# terminal summary. Bounded; the summary takes only its own session's.
_MAX_RECORDED = 256
_recorded: collections.OrderedDict[str, list[Crossover]] = (
    collections.OrderedDict()
)
_recorded_lock = threading.Lock()


def _record_for_summary(result: HammerResult) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST")
    if not test or not result.crossovers:
        return
    nodeid = test.rpartition(" (")[0] or test
    with _recorded_lock:
        _recorded.setdefault(nodeid, []).extend(result.crossovers)
        while len(_recorded) > _MAX_RECORDED:
            _recorded.popitem(last=False)


class _TerminalReporter(Protocol):
    stats: Mapping[str, Sequence[Any]]

    def section(self, title: str, sep: str = ..., **kwargs: Any) -> None: ...

    def write_line(self, line: str, **kwargs: Any) -> None: ...


def write_crossover_summary(terminalreporter: _TerminalReporter) -> None:
    """
    For the pytest plugin: a terminal summary section listing, per test of
    this session, the crossovers `hammer` found during it.
    """
    nodeids = {
        getattr(report, "nodeid", None)
        for reports in terminalreporter.stats.values()
        for report in reports
    }
    with _recorded_lock:
        mine = [(n, c) for n, c in _recorded.items() if n in nodeids]
        for nodeid, _ in mine:
            del _recorded[nodeid]
    if not mine:
        return
    terminalreporter.section("ctxguard hammer crossovers")
    for nodeid, crossovers in mine:
        terminalreporter.write_line(nodeid)
        for line in format_crossovers(crossovers).splitlines():
            terminalreporter.write_line(f"  {line}" if line else "")
