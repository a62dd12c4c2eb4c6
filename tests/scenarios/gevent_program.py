"""
A gevent program, run in its own process by test_norace_sanctioned.py:
gevent must monkey-patch before anything else is imported.

Three requests are in flight at once under gevent's pywsgi server, each in
its own greenlet; each waits until all three arrived, then spawns a
greenlet with 'copy_current_request_context'. The app runs bare, then
guarded; the outcome is printed as JSON.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import json  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from flask import (  # noqa: E402
    Flask,
    copy_current_request_context,
    g,
    request,
    session,
)
from gevent.event import Event  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from flask_ctxguard import CtxGuard  # noqa: E402

TIMEOUT = 5.0
USERS = ("ada", "bob", "cy")


def build_app() -> Flask:
    app = Flask("gevent_program")
    app.secret_key = "scenario"
    arrived: list[str] = []
    everyone_here = Event()

    @app.before_request
    def load_user() -> None:
        g.user = request.headers["X-User"]

    @app.get("/greet")
    def greet() -> str:
        session["greeted"] = request.args["n"]
        arrived.append(g.user)
        if len(arrived) == len(USERS):
            everyone_here.set()
        if not everyone_here.wait(TIMEOUT):
            return "never met the others"

        @copy_current_request_context
        def audit() -> str:
            return f"{request.headers['X-User']}#{session['greeted']}"

        audited = gevent.spawn(audit).get(timeout=TIMEOUT)
        return f"hello {g.user} ({audited})"

    return app


def drive(app: Flask) -> list[Any]:
    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:

        def get(n: int, user: str) -> list[Any]:
            conn = http.client.HTTPConnection(
                "127.0.0.1", server.server_port, timeout=TIMEOUT
            )
            try:
                conn.request("GET", f"/greet?n={n}", headers={"X-User": user})
                response = conn.getresponse()
                return [response.status, response.read().decode()]
            finally:
                conn.close()

        jobs = [gevent.spawn(get, n, user) for n, user in enumerate(USERS)]
        gevent.joinall(jobs, timeout=TIMEOUT, raise_error=True)
        return [job.value for job in jobs]
    finally:
        server.stop(timeout=TIMEOUT)


def control_codes() -> list[str]:
    """
    A positive control: the same server and greenlets, with a greenlet
    handed the real request instead of a copied context, is reported.
    """
    app = Flask("gevent_control")
    app.config["CTXGUARD_MODE"] = "log"
    guard = CtxGuard(app)

    @app.get("/greet")
    def greet() -> str:
        req = request._get_current_object()  # type: ignore[attr-defined]
        return gevent.spawn(lambda: req.args["n"]).get(timeout=TIMEOUT)

    drive(app)
    return [violation.code for violation in guard.violations]


def main() -> None:
    bare = drive(build_app())
    app = build_app()
    app.config["CTXGUARD_MODE"] = "log"
    guard = CtxGuard(app)
    guarded = drive(app)
    outcome = {
        "patched": monkey.is_module_patched("threading"),
        "bare": bare,
        "guarded": guarded,
        "violations": [str(violation) for violation in guard.violations],
        "control": control_codes(),
    }
    print(json.dumps(outcome))  # the parent reads it


if __name__ == "__main__":
    main()
