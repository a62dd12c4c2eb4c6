"""
A worker process writing the guard's JSON log, for the report command's
tests.

``python -m tests.logworker OUT [--gzip] [--remember N] [--shared-g]``
serves a guarded app in log mode with the test client and writes, through
structlog's JSON renderer, one JSON line per event to *OUT* (gzipped with
``--gzip``), with an unrelated JSON line and a plain-text line before every
request, as a real log has. ``--remember N`` makes N+1 requests to a view
that keeps the last request object in a module cache and reads the previous
one: N times CG103. ``--shared-g`` makes two requests inside one pushed app
context, the second reading what the first set on ``g``: once CG101.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from typing import Any

import structlog
from flask import Flask, g, request

from flask_ctxguard import CtxGuard


def create_app() -> Flask:
    """The worker's guarded app, with one buggy view per bug."""
    app = Flask("worker")
    app.config.update(CTXGUARD_MODE="log", SECRET_KEY="worker")
    CtxGuard(app)
    cache: list[Any] = []

    @app.get("/remember")
    def remember() -> dict[str, Any]:
        previous = cache[-1].path if cache else None
        cache[:] = [request._get_current_object()]  # type: ignore[attr-defined]
        return {"previous": previous}

    @app.get("/login")
    def login() -> str:
        g.user = "alice"
        return "ok"

    @app.get("/me")
    def me() -> str:
        return str(g.get("user"))

    return app


def main(argv: list[str] | None = None) -> int:
    """Serve the requests the arguments ask for and log to *OUT*."""
    parser = argparse.ArgumentParser(prog="python -m tests.logworker")
    parser.add_argument("out")
    parser.add_argument("--gzip", action="store_true")
    parser.add_argument("--remember", type=int, default=0)
    parser.add_argument("--shared-g", action="store_true")
    args = parser.parse_args(argv)
    opener: Any = gzip.open if args.gzip else open
    with opener(args.out, "wt", encoding="utf-8") as stream:
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.JSONRenderer(),
            ],
            logger_factory=structlog.WriteLoggerFactory(stream),
        )
        app = create_app()
        client = app.test_client()

        def noise(path: str) -> None:
            stream.write(json.dumps({"event": "request", "path": path}))
            stream.write("\n[2026-11-25 20:52:53 +0000] [7] [INFO] GET\n")

        for _ in range(args.remember + 1):
            noise("/remember")
            client.get("/remember")
        if args.shared_g:
            with app.app_context():
                noise("/login")
                client.get("/login")
                noise("/me")
                client.get("/me")
    return 0


if __name__ == "__main__":
    sys.exit(main())
