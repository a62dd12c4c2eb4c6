"""
One `hammer` run on the wire: the server, the clients lined up step by
step at a barrier, and what they received.

Each client sends its plan over one keep-alive connection with its own
cookies. While the run lasts the app's guard collects instead of raising
(`collecting`). The servers themselves are in `_hammer_server`.
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookies
import socket
import threading
import time
from collections.abc import Iterator

from flask import Flask
from werkzeug.serving import make_server

from flask_ctxguard._guard.extension import EXTENSION_KEY
from flask_ctxguard._hammer.plan import RequestSpec
from flask_ctxguard._hammer.result import HammerResponse
from flask_ctxguard._hammer.server import (
    Buffered,
    ErrorLog,
    PooledServer,
    QuietHandler,
)
from flask_ctxguard._reporting.reporter import Reporter


@contextlib.contextmanager
def collecting(app: Flask) -> Iterator[None]:
    """
    While hammer runs, the app's guard collects instead of raising: a
    ContaminationError raised into the served app would turn the request
    into a 500 and hide the rest of the run.
    """
    state = app.extensions.get(EXTENSION_KEY)
    reporter: Reporter | None = getattr(state, "reporter", None)
    if reporter is None:
        yield
        return
    with reporter.collecting():
        yield


class Run:
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
