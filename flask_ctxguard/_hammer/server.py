"""
The servers of `flask_ctxguard.testing.hammer`, and how they stay quiet.

- `PooledServer`: a fixed pool of worker threads serving every
  connection one request at a time, with HTTP/1.1 keep-alive, as
  gunicorn's ``gthread`` worker and waitress serve (the default).
- `Buffered` and `QuietHandler`: the app on Werkzeug's own
  thread-per-connection server, as ``flask run`` serves.

Both run the app through `call_app`, which buffers the response and turns
an exception into a short 500 counted in an `ErrorLog`, never a traceback
on stderr; `QuietFlaskErrors` does the same for the errors Flask logs
itself; the errors' text is escaped with `_core.escape.escape`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import selectors
import socket
import threading
import time
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, cast

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import LimitedStream

from flask_ctxguard._core.escape import escape
from flask_ctxguard._reporting.sites import relative

__all__ = [
    "Buffered",
    "ErrorLog",
    "PooledServer",
    "QuietFlaskErrors",
    "QuietHandler",
    "call_app",
]

# -- the app's own errors, collected quietly ----------------------------------


class ErrorLog:
    """The app's errors during a run, grouped by type and site."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: dict[tuple[str, str | None], list[Any]] = {}

    def add(
        self,
        exc: BaseException,
        tb: TracebackType | None,
        request: str,
    ) -> None:
        kind = type(exc).__name__
        site = _site(tb)
        key = (kind, site)
        with self._lock:
            group = self._groups.get(key)
            if group is not None:
                group[0] += 1
                return
        text = "".join(traceback.format_exception(type(exc), exc, tb))
        message = escape(str(exc))[:200]
        with self._lock:
            group = self._groups.setdefault(key, [0, message, request, text])
            group[0] += 1

    def grouped(self) -> list[tuple[str, str, str | None, int, str, str]]:
        """(type, message, site, count, first request, traceback) each."""
        with self._lock:
            return [
                (kind, message, site, count, request, text)
                for (kind, site), (count, message, request, text) in (
                    self._groups.items()
                )
            ]


def _site(tb: TracebackType | None) -> str | None:
    """The last frame of *tb* outside Flask, Werkzeug and ourselves."""
    site = None
    while tb is not None:
        frame = tb.tb_frame
        module = str(frame.f_globals.get("__name__", ""))
        if module.partition(".")[0] not in ("flask", "werkzeug") and not (
            module.startswith("flask_ctxguard.")
        ):
            code = frame.f_code
            site = (
                f"{relative(code.co_filename)}:{tb.tb_lineno} in"
                f" {code.co_name}"
            )
        tb = tb.tb_next
    return site


# While a hammer server thread runs the app: Flask's own log line for an
# unhandled exception is counted, not printed. A threading.local, not a
# ContextVar: the guard watches ContextVars (CG106).
_serving = threading.local()


class QuietFlaskErrors(logging.Filter):
    """Counts Flask's "Exception on ..." records of a hammer run."""

    def __init__(self, errors: ErrorLog) -> None:
        super().__init__()
        self.errors = errors

    def filter(self, record: logging.LogRecord) -> bool:
        _, exc, tb = record.exc_info or (None, None, None)
        if exc is None or not getattr(_serving, "active", False):
            return True
        self.errors.add(exc, tb, escape(str(getattr(_serving, "request", ""))))
        return False


def call_app(
    app: Any, environ: dict[str, Any], errors: ErrorLog
) -> tuple[str, list[tuple[str, str]], bytes]:
    """
    Run the WSGI *app* for one request and buffer its response; an
    exception becomes a short 500 and is counted in *errors*.
    """
    answer: list[Any] = []

    def start_response(
        status: str,
        headers: list[tuple[str, str]],
        exc_info: Any = None,
    ) -> Callable[[bytes], None]:
        answer[:] = [status, list(headers)]
        return _no_write

    request = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
    _serving.active = True
    _serving.request = request
    try:
        iterable = app(environ, start_response)
        try:
            body = b"".join(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
    except Exception as exc:  # noqa: BLE001 - summarised, never printed
        errors.add(exc, exc.__traceback__, escape(request))
        text = (
            f"hammer: the app raised {type(exc).__name__}; see"
            " HammerResult.errors\n"
        )
        return (
            "500 INTERNAL SERVER ERROR",
            [("Content-Type", "text/plain; charset=utf-8")],
            text.encode(),
        )
    finally:
        _serving.active = False
    status, headers = answer
    return status, headers, body


def _no_write(data: bytes) -> None:
    msg = "hammer's server does not support the WSGI write() callable."
    raise NotImplementedError(msg)


# -- the servers --------------------------------------------------------------


class QuietHandler(WSGIRequestHandler):
    """Werkzeug's handler without its per-request and error lines."""

    def log(self, type: str, message: str, *args: Any) -> None:
        pass


class Connection(QuietHandler):
    """
    One keep-alive connection of the pooled server. Whichever worker picks
    it up serves one request on it (`serve_one`), as gunicorn's gthread
    and waitress do; Werkzeug parses the request and builds the environ.
    """

    protocol_version = "HTTP/1.1"
    server: PooledServer

    def __init__(
        self, sock: socket.socket, address: Any, server: PooledServer
    ) -> None:
        # Not BaseRequestHandler.__init__, which would serve the whole
        # connection on the calling thread.
        self.request = sock
        self.client_address = address
        self.server = server
        # A worker never waits forever for a request that does not come.
        sock.settimeout(server.io_timeout)
        self.setup()

    def serve_one(self) -> bool:
        """Serve one request; whether the connection stays open."""
        self.close_connection = True
        try:
            self.handle_one_request()
        except (OSError, ValueError):
            # The client went away (or hammer is stopping): no more
            # requests on this connection.
            return False
        return not self.close_connection

    def run_wsgi(self) -> None:
        # Werkzeug's own run_wsgi closes every connection: it cannot drain
        # a request body before the next request on a keep-alive one. Here
        # the body is read through a LimitedStream and drained afterwards.
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        if "wsgi.input_terminated" not in environ:
            length = int(self.headers.get("Content-Length") or 0)
            environ["wsgi.input"] = LimitedStream(
                cast("IO[bytes]", self.rfile), length
            )
            environ["wsgi.input_terminated"] = True
        status, headers, body = call_app(
            self.server.app, environ, self.server.errors
        )
        stream = environ["wsgi.input"]
        while stream.read(65536):
            pass
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        names = set()
        for name, value in headers:
            names.add(name.lower())
            self.send_header(name, value)
            if name.lower() == "connection" and value.lower() == "close":
                self.close_connection = True
        no_body = self.command == "HEAD" or code in ("204", "304")
        if "content-length" not in names and not code.startswith("1"):
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not no_body:
            self.wfile.write(body)


class PooledServer(BaseWSGIServer):
    """
    A fixed pool of worker threads serving every connection, one request
    at a time: after each response the connection goes back to a poller,
    and its next request is served by whichever worker is free.

    That is how gunicorn's ``gthread`` worker and waitress serve, and why
    a worker thread (and whatever a ``threading.local`` or a ContextVar
    left on it) passes from one client to the next.
    """

    multithread = True

    def __init__(
        self, app: Any, workers: int, errors: ErrorLog, io_timeout: float
    ) -> None:
        super().__init__("127.0.0.1", 0, app, handler=Connection)
        self.errors = errors
        self.io_timeout = io_timeout
        self.workers = workers
        self._ready: queue.SimpleQueue[Connection | None] = queue.SimpleQueue()
        self._back: list[Connection] = []
        self._open: set[Connection] = set()
        self._lock = threading.Lock()
        self._stopping = False
        self._wake_read, self._wake_write = socket.socketpair()
        self._threads = [
            threading.Thread(
                target=self._poll, name="ctxguard-hammer-poller", daemon=True
            ),
            *(
                threading.Thread(
                    target=self._work,
                    name=f"ctxguard-hammer-worker-{i}",
                    daemon=True,
                )
                for i in range(workers)
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_write.send(b"x")

    def _poll(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self.socket, selectors.EVENT_READ, "accept")
        selector.register(self._wake_read, selectors.EVENT_READ, "wake")
        try:
            while not self._stopping:
                for key, _ in selector.select():
                    if key.data == "accept":
                        try:
                            sock, address = self.socket.accept()
                        except OSError:  # the client gave up meanwhile
                            continue
                        connection = Connection(sock, address, self)
                        with self._lock:
                            self._open.add(connection)
                        selector.register(
                            sock, selectors.EVENT_READ, connection
                        )
                    elif key.data == "wake":
                        self._wake_read.recv(4096)
                        with self._lock:
                            back, self._back = self._back, []
                        for connection in back:
                            selector.register(
                                connection.connection,
                                selectors.EVENT_READ,
                                connection,
                            )
                    else:
                        selector.unregister(key.fileobj)
                        self._ready.put(key.data)
        finally:
            selector.close()

    def _work(self) -> None:
        while (connection := self._ready.get()) is not None:
            if connection.serve_one() and not self._stopping:
                with self._lock:
                    self._back.append(connection)
                self._wake()
            else:
                self._close(connection)

    def _close(self, connection: Connection) -> None:
        with self._lock:
            self._open.discard(connection)
        with contextlib.suppress(OSError, ValueError):
            connection.finish()
        self.shutdown_request(connection.connection)

    def stop(self, timeout: float) -> None:
        """Stop the poller and the workers, close every connection."""
        self._stopping = True
        self._wake()
        for _ in range(self.workers):
            self._ready.put(None)
        with self._lock:
            still_open = list(self._open)
        for connection in still_open:
            # Unblocks a worker waiting for a request that never comes.
            with contextlib.suppress(OSError):
                connection.connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.01))
        for connection in still_open:
            self._close(connection)
        self._wake_read.close()
        self._wake_write.close()
        self.server_close()


class Buffered:
    """The app as a WSGI callable that never raises into Werkzeug."""

    def __init__(self, app: Any, errors: ErrorLog) -> None:
        self.app = app
        self.errors = errors

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> list[bytes]:
        status, headers, body = call_app(self.app, environ, self.errors)
        start_response(status, headers)
        return [body]
