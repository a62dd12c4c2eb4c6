"""
Structured logging: structlog configured by the app, request ids bound per
request.

Every log line is one event with key-values: a coloured console line when
standard error is a terminal, a JSON object per line otherwise (under a
server, in CI, in a log pipeline). flask_ctxguard logs through structlog's
``"flask_ctxguard"`` logger and so uses this configuration too.

Each request binds ``request_id``, ``method`` and ``path`` (and, once the
user is known, ``user`` and ``tenant``) with ``bind_contextvars`` and
resets them with the returned tokens when the request is torn down, so a
pooled server thread carries nothing into its next request.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from flask import Flask, Response, g, request
from structlog.contextvars import bind_contextvars, reset_contextvars
from structlog.typing import Processor

__all__ = ["bind_request_values", "configure_logging", "init_app"]

FORMATS = ("auto", "console", "json")


class NamedLogger(structlog.PrintLogger):
    """
    A `structlog.PrintLogger` that knows its name and writes to the
    current standard error.
    """

    def __init__(self, name: str) -> None:
        super().__init__(sys.stderr)
        self.name = name


def named_logger_factory(*args: Any) -> NamedLogger:
    """
    Make the logger behind ``structlog.get_logger(name)``.
    """
    return NamedLogger(str(args[0]) if args else "example_app")


def add_logger_name(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Add ``logger``: which library or module logged the event."""
    event_dict.setdefault("logger", getattr(logger, "name", None))
    return event_dict


def configure_logging(
    *, fmt: str = "auto", level: str = "INFO", stream: TextIO | None = None
) -> None:
    """
    Configure structlog for the whole process.

    Args:
        fmt: ``"console"``, ``"json"``, or ``"auto"``: console when
            *stream* (standard error by default) is a terminal.
        level: The lowest level logged, such as ``"INFO"``.
        stream: Only consulted to pick the format.
    """
    if fmt not in FORMATS:
        allowed = ", ".join(repr(f) for f in FORMATS)
        msg = f"LOG_FORMAT must be one of {allowed}; got {fmt!r}."
        raise ValueError(msg)
    if fmt == "auto":
        stream = stream or sys.stderr
        fmt = "console" if stream.isatty() else "json"
    renderer: Processor = (
        structlog.dev.ConsoleRenderer()
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(logging, level.upper())
        ),
        logger_factory=named_logger_factory,
        # Not cached: an app created later (or a test) may reconfigure.
        cache_logger_on_first_use=False,
    )


def bind_request_values(**values: Any) -> None:
    """
    Bind *values* to every log line of the current request.

    They are reset when the request is torn down.
    """
    tokens = bind_contextvars(**values)
    g.log_tokens = [*g.get("log_tokens", ()), tokens]


def _start_request() -> None:
    g.request_started = time.perf_counter()
    bind_request_values(
        request_id=request.headers.get("X-Request-ID") or uuid.uuid4().hex,
        method=request.method,
        path=request.path,
    )


def _log_response(response: Response) -> Response:
    started = g.get("request_started")
    duration = time.perf_counter() - started if started else None
    structlog.get_logger("example_app").info(
        "request.finished",
        status=response.status_code,
        endpoint=request.endpoint,
        duration_ms=round(duration * 1000, 2) if duration else None,
    )
    return response


def _reset_request_values(exc: BaseException | None = None) -> None:
    # Reset in reverse order of binding, so that a key bound twice gets
    # its value from before the request back.
    for tokens in reversed(g.pop("log_tokens", ())):
        reset_contextvars(**tokens)


def init_app(app: Flask) -> None:
    """
    Configure structlog from *app*'s ``LOG_FORMAT`` and ``LOG_LEVEL`` and
    bind the request values around every request.
    """
    configure_logging(
        fmt=app.config["LOG_FORMAT"], level=app.config["LOG_LEVEL"]
    )
    app.before_request(_start_request)
    app.after_request(_log_response)
    app.teardown_request(_reset_request_values)
