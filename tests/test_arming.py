"""
Arming does not rest on the session interface alone: requests whose
session is not opened through the guard's interface (an app that replaces
``session_interface``, before or after its first requests; a Flask that
opens sessions lazily) are guarded too. And the guard makes no warning.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest
from flask import Flask, copy_current_request_context, request
from flask.sessions import SecureCookieSessionInterface

from flask_ctxguard import CtxGuard
from tests.helpers import KEPT, add_keep_route, codes


class OwnSessions(SecureCookieSessionInterface):
    """An app's own session interface, as Flask-Session installs one."""


@pytest.fixture(name="app")
def _app():
    app = Flask("arming")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")

    add_keep_route(app)

    @app.route("/thread")
    def in_a_thread():
        seen = []
        live = request._get_current_object()
        worker = threading.Thread(target=lambda: seen.append(live.args["q"]))
        worker.start()
        worker.join(timeout=10)
        return seen[0]

    @app.route("/copied")
    def copied():
        @copy_current_request_context
        def work():
            return request.args["q"]

        seen = []
        worker = threading.Thread(target=lambda: seen.append(work()))
        worker.start()
        worker.join(timeout=10)
        return seen[0]

    @app.route("/armed")
    def armed():
        guard = app.extensions["ctxguard"].guard
        return "yes" if guard.current() is not None else "no"

    return app


class TestReplacedSessionInterface:
    def test_replaced_after_init_app(self, app):
        """An interface set after init_app, before any request (or a Flask
        that opens sessions lazily: the guard's interface is not the one
        opening them at push): every request is armed, and a kept request
        is caught (CG102)."""
        guard = CtxGuard(app)
        app.session_interface = OwnSessions()
        client = app.test_client()

        answers = [client.get("/armed").data for _ in range(3)]
        client.get("/keep/alice")
        _ = KEPT[0][0].args

        assert [b"yes"] * 3 == answers
        assert ["CG102"] == codes(guard)

    def test_replaced_after_requests_ran(self, app):
        """An interface set once requests ran (the guard's fallback had
        removed itself): the first request after it is still caught when
        kept, and the next ones are armed in flight (CG104)."""
        guard = CtxGuard(app)
        client = app.test_client()
        assert b"yes" == client.get("/armed").data
        app.session_interface = OwnSessions()

        client.get("/keep/alice")
        first = KEPT[0]
        _ = first[0].path
        _ = first[2].user
        armed = client.get("/armed").data
        answer = client.get("/thread?q=secret").data

        assert [b"yes", b"secret"] == [armed, answer]
        assert ["CG102", "CG102", "CG104"] == codes(guard)
        assert ["request", "g", "request"] == [
            v.subject for v in guard.violations
        ]

    def test_sanctioned_copy_stays_silent(self, app):
        """copy_current_request_context under a replaced interface is not
        reported, while the same harness catches a thread given the live
        request (positive control)."""
        guard = CtxGuard(app)
        app.session_interface = OwnSessions()
        client = app.test_client()

        copied = client.get("/copied?q=a").data
        silent = codes(guard)
        leaked = client.get("/thread?q=b").data

        assert [b"a", b"b"] == [copied, leaked]
        assert [] == silent
        assert ["CG104"] == codes(guard)


class TestNoWarnings:
    def test_import_install_and_requests_under_warnings_as_errors(self):
        """Importing the package, installing the guard, serving requests
        (a bug caught included) and checking contexts warn about nothing,
        on any supported Flask (-W error in a fresh interpreter)."""
        code = textwrap.dedent(
            """
            import flask_ctxguard
            from flask import Flask, request, session, g
            from flask_ctxguard import CtxGuard

            app = Flask("w")
            app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
            kept = []

            @app.route("/<name>")
            def view(name):
                session["n"] = name
                g.n = name
                kept.append(request._get_current_object())
                return name

            guard = CtxGuard(app)
            client = app.test_client()
            for name in ("a", "b"):
                assert client.get("/" + name).data == name.encode()
            kept[0].args
            with app.test_request_context("/x"):
                guard.check_contexts()
            print(sorted(v.code for v in guard.violations))
            """
        )
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert "" == result.stderr
        assert "['CG102', 'CG105']" == result.stdout.splitlines()[-1]
        assert 0 == result.returncode
