"""
Helpers for testing an app with flask_ctxguard, with any test runner.

- `capture_violations` collects every violation reported while it is
  active, from every guarded app.
- `assert_no_contamination` fails with the full reports if there was any.
- `hammer` fires requests concurrently at an app served by a real threaded
  server on 127.0.0.1: the way to shake out races in a test.

The pytest plugin (``pytest --ctxguard``) is a thin layer over these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.cookies
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from flask import Flask
from werkzeug.serving import WSGIRequestHandler, make_server

from ._extension import EXTENSION_KEY, CtxGuard
from ._signals import contamination_detected
from ._violations import Violation

__all__ = [
    "HammerResponse",
    "HammerResult",
    "RequestSpec",
    "assert_no_contamination",
    "capture_violations",
    "format_violations",
    "group_violations",
    "hammer",
]


@contextlib.contextmanager
def capture_violations() -> Iterator[list[Violation]]:
    """
    Collect every violation any guarded app reports inside the block.

    Yields the list the violations are appended to, oldest first; it is
    filled from any thread.

    .. versionadded:: 0.1.0
    """
    found: list[Violation] = []
    lock = threading.Lock()

    def receiver(sender: Any, violation: Violation, **_: Any) -> None:
        with lock:
            found.append(violation)

    contamination_detected.connect(receiver, weak=False)
    try:
        yield found
    finally:
        contamination_detected.disconnect(receiver)


def _crossing(violation: Violation) -> tuple[object, ...]:
    """
    What makes two violations one finding: the same data crossing from
    the same request to the same request (or thread). A ContextVar leak
    is one finding however many requests held it.
    """
    origin = violation.origin.token if violation.origin else None
    if violation.code == "CG106":
        return (violation.app, violation.code, violation.subject, origin)
    accessor = (
        violation.accessor.token if violation.accessor else violation.thread
    )
    return (
        violation.app,
        violation.code,
        violation.subject,
        origin,
        accessor,
        None if violation.origin else violation.access_site,
    )


def group_violations(
    violations: Iterable[Violation],
) -> list[list[Violation]]:
    """
    *violations* grouped into findings, in the order of their first
    violation.

    The accesses of one crossing (the same data, from the same request to
    the same request or thread) are one finding; so are crossings of the
    same code and subject between the same two code sites (one bug hit
    by many requests).

    .. versionadded:: 0.1.0
    """
    findings: dict[tuple[object, ...], list[Violation]] = {}
    by_crossing: dict[tuple[object, ...], tuple[object, ...]] = {}
    for violation in violations:
        crossing = _crossing(violation)
        key = by_crossing.get(crossing)
        if key is None:
            key = by_crossing[crossing] = (
                violation.app,
                violation.code,
                violation.subject,
                violation.origin_site,
                violation.access_site,
            )
        findings.setdefault(key, []).append(violation)
    return list(findings.values())


def _format_finding(group: Sequence[Violation]) -> str:
    """The full report of one finding: its first violation and counts."""
    report = str(group[0])
    count = len(group)
    if count == 1:
        return report
    first = group[0]
    crossings = len({_crossing(v) for v in group})
    if first.code == "CG106":
        return f"{report}\n  (held by {count} requests)"
    sites = {v.access_site for v in group} - {first.access_site, None}
    extra = f"  ({count} accesses"
    if crossings > 1:
        extra += f" in {crossings} crossings"
    if sites:
        extra += "; also at " + ", ".join(sorted(s for s in sites if s))
    return f"{report}\n{extra})"


def _summarize_finding(group: Sequence[Violation]) -> str:
    """One line for *group*: code, slug, subject, requests and count."""
    first = group[0]
    origin = (
        f" from {first.origin.method} {first.origin.path}"
        if first.origin
        else ""
    )
    if first.accessor is not None:
        into = f" into {first.accessor.method} {first.accessor.path}"
    elif first.code == "CG106":
        into = ""
    else:
        into = f" in thread {first.thread!r}"
    count = f" (x{len(group)})" if len(group) > 1 else ""
    return f"{first.code} {first.kind}: {first.subject}{origin}{into}{count}"


def format_violations(violations: Iterable[Violation]) -> str:
    """
    The full reports of *violations*, one per finding, separated by blank
    lines.

    Violations of one crossing (the same subject, from the same request to
    the same request or thread) are one finding, shown once with the
    count: Flask-Login's ``'_login_user' in g`` and ``g._login_user`` in
    one request, or a ContextVar held by several requests.

    .. versionchanged:: 0.1.0
       Grouped by crossing rather than by code, subject and sites.
    """
    return "\n\n".join(
        _format_finding(group) for group in group_violations(violations)
    )


def _failure_text(violations: Sequence[Violation]) -> str:
    """
    The text a test fails with: a headline, then each finding once.
    """
    count = len(group_violations(violations))
    noun = "finding" if count == 1 else "findings"
    return (
        f"{count} request-context contamination {noun}:\n\n"
        f"{format_violations(violations)}"
    )


def _fail_if_any(violations: Sequence[Violation]) -> None:
    __tracebackhide__ = True
    if violations:
        raise AssertionError(_failure_text(violations))


@contextlib.contextmanager
def _no_contamination() -> Iterator[list[Violation]]:
    __tracebackhide__ = True
    with capture_violations() as found:
        yield found
    _fail_if_any(found)


def assert_no_contamination(
    *sources: CtxGuard | Iterable[Violation],
) -> contextlib.AbstractContextManager[list[Violation]]:
    """
    Fail with the full reports if there was any contamination.

    Called with guards or lists of violations, it checks them at once::

        assert_no_contamination(guard)

    Used as a context manager, it checks what happens inside the block::

        with assert_no_contamination():
            client.get("/")

    Raises:
        AssertionError: listing every violation.

    .. versionadded:: 0.1.0
    """
    __tracebackhide__ = True
    violations: list[Violation] = []
    for source in sources:
        if isinstance(source, CtxGuard):
            violations.extend(source.violations)
        else:
            violations.extend(source)
    _fail_if_any(violations)
    return _no_contamination()


@dataclasses.dataclass(frozen=True, slots=True)
class RequestSpec:
    """
    One request `hammer` sends.

    .. versionadded:: 0.1.0
    """

    path: str
    method: str = "GET"
    body: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class HammerResponse:
    """
    One response `hammer` received, with the client and round it belongs to.

    .. versionadded:: 0.1.0
    """

    client: int
    round: int
    request: RequestSpec
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True, slots=True)
class HammerResult:
    """
    What `hammer` saw: every response and every violation.

    .. versionadded:: 0.1.0
    """

    responses: list[HammerResponse]
    violations: list[Violation]

    def for_client(self, client: int) -> list[HammerResponse]:
        """The responses of one client, in the order it sent them."""
        return [r for r in self.responses if r.client == client]

    def assert_clean(self) -> None:
        """Fail with the full reports if there was any violation."""
        __tracebackhide__ = True
        _fail_if_any(self.violations)


Requests = (
    Sequence[str | RequestSpec] | Callable[[int], Sequence[str | RequestSpec]]
)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


def hammer(
    app: Flask,
    requests: Requests,
    *,
    threads: int = 8,
    rounds: int = 1,
    timeout: float = 30.0,
) -> HammerResult:
    """
    Serve *app* on a real threaded server on 127.0.0.1 and fire *requests*
    at it from *threads* concurrent clients, *rounds* times.

    Every client sends the whole sequence *requests* (or
    ``requests(client_index)``) in order, over one keep-alive connection
    and with its own cookies, so a client can log in and stay logged in.
    All clients start each round together (a barrier lines them up).

    An app without a `CtxGuard` gets one in ``log`` mode, so that the
    server keeps answering while violations are collected.

    Args:
        app: The app to serve.
        requests: Paths or `RequestSpec` objects, or a function of the
            client index returning them.
        threads: How many clients run concurrently.
        rounds: How many times each client sends its sequence.
        timeout: Seconds the whole run may take.

    Returns:
        Every response and every violation reported meanwhile.

    Raises:
        TimeoutError: if the run takes longer than *timeout*.

    .. versionadded:: 0.1.0
    """
    if threads < 1 or rounds < 1 or not timeout > 0:
        msg = (
            "threads and rounds must be at least 1 and timeout positive; got"
            f" threads={threads}, rounds={rounds}, timeout={timeout}."
        )
        raise ValueError(msg)
    if isinstance(requests, str):
        requests = [requests]  # one path, not a sequence of characters
    if EXTENSION_KEY not in app.extensions:
        app.config.setdefault("CTXGUARD_MODE", "log")
        CtxGuard(app)
    run = _Hammer(requests, threads, rounds, timeout)
    with capture_violations() as violations:
        run.serve(app)
    responses = sorted(run.responses, key=lambda r: (r.client, r.round))
    return HammerResult(responses=responses, violations=list(violations))


class _Hammer:
    """One `hammer` run: a server, its clients, what they received."""

    def __init__(
        self, requests: Requests, threads: int, rounds: int, timeout: float
    ) -> None:
        self.requests = requests
        self.threads = threads
        self.rounds = rounds
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.barrier = threading.Barrier(threads)
        self.lock = threading.Lock()
        self.responses: list[HammerResponse] = []
        self.errors: list[BaseException] = []
        self.connections: list[http.client.HTTPConnection] = []
        self.port = 0

    def _remaining(self) -> float:
        return max(self.deadline - time.monotonic(), 0.01)

    def serve(self, app: Flask) -> None:
        server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_QuietHandler
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
        if self.errors:
            broken = threading.BrokenBarrierError
            real = [e for e in self.errors if not isinstance(e, broken)]
            raise real[0] if real else self.errors[0]

    def _run_clients(self) -> None:
        clients = [
            threading.Thread(
                target=self._client, args=(i,), name=f"ctxguard-hammer-{i}"
            )
            for i in range(self.threads)
        ]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join(self._remaining())
        if any(thread.is_alive() for thread in clients):
            # Unblock clients still waiting for an answer, then report.
            with self.lock:
                for conn in self.connections:
                    if conn.sock is not None:
                        with contextlib.suppress(OSError):
                            conn.sock.shutdown(socket.SHUT_RDWR)
            msg = (
                f"hammer: the clients did not finish within {self.timeout}s;"
                " pass a larger timeout= or fewer requests."
            )
            raise TimeoutError(msg)

    def _client(self, index: int) -> None:
        requests = self.requests
        specs = [
            RequestSpec(s) if isinstance(s, str) else s
            for s in (requests(index) if callable(requests) else requests)
        ]
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
                self.barrier.wait(timeout=self._remaining())
                for spec in specs:
                    got = _send(conn, spec, cookies)
                    with self.lock:
                        self.responses.append(
                            HammerResponse(index, round_, spec, *got)
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
    conn.request(spec.method, spec.path, body=spec.body, headers=headers)
    response = conn.getresponse()
    body = response.read()
    for value in response.headers.get_all("Set-Cookie") or ():
        jar = http.cookies.SimpleCookie()
        jar.load(value)
        for name, morsel in jar.items():
            cookies[name] = morsel.value
    return response.status, body, tuple(response.getheaders())
