"""
Load under gevent, run in its own process by test_servers.py: gevent must
monkey-patch before anything else is imported.

The guarded `tests.serverapp` app is served by gevent's pywsgi server (one
greenlet per connection) and loaded by clients that are greenlets too
(``threading`` is patched), first with clean requests only, then with
buggy ones mixed in. The replies, the violations and every event the guard
logged are written as JSON to the file named by the first argument.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import structlog  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from flask_ctxguard import CtxGuard  # noqa: E402
from tests.loadclient import (  # noqa: E402
    Plan,
    clean_plan,
    mixed_plan,
    run_load,
)
from tests.serverapp import create_app  # noqa: E402

CLIENTS = 32
REQUESTS = 40  # per client
TIMEOUT = 30.0


def run(name: str, plan: Plan) -> dict[str, Any]:
    events: list[dict[str, Any]] = []

    def collect(logger: Any, method: str, event: Any) -> Any:
        events.append(
            {
                key: event.get(key)
                for key in ("event", "log_level", "code", "subject")
            }
        )
        raise structlog.DropEvent

    structlog.configure(
        processors=[structlog.processors.add_log_level, collect]
    )
    app = create_app(name)
    guard = CtxGuard(app)
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        replies = run_load(
            server.server_port, plan, clients=CLIENTS, timeout=TIMEOUT
        )
    finally:
        server.stop(timeout=5)
    return {
        "replies": [[r.client, r.path, r.status, r.body] for r in replies],
        "violations": [[v.code, v.subject] for v in guard.violations],
        "events": events,
    }


def main() -> None:
    outcome = {
        "patched": monkey.is_module_patched("threading"),
        "clean": run("gevent-clean", clean_plan(REQUESTS)),
        "buggy": run("gevent-buggy", mixed_plan(REQUESTS)),
    }
    pathlib.Path(sys.argv[1]).write_text(json.dumps(outcome))


if __name__ == "__main__":
    main()
