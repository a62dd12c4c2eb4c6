"""
CG106 on the ways apps put the logged-in user into ContextVars, on real
servers: the documented patterns are silent (structlog's clear and bind,
reached through the module or through names imported before the guard,
``bound_contextvars``, ``reset_contextvars``, a plain ContextVar set on
every request to the cached user's tenant), even though a user's requests
on one pooled thread set the very same objects again; next to each, on the
same server, a positive control that leaks is reported, with the line that
bound the value where structlog bound it. Werkzeug's threaded server gives
each connection a new thread, so nothing leaks there, and its controls
show that nothing is reported either.
"""

from __future__ import annotations

import contextlib
import io
import json
import pathlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from flask_ctxguard._logs.findings import Findings
from flask_ctxguard.testing import RequestSpec, hammer
from tests import bindapp
from tests.helpers import (
    ROOT,
    TIMEOUT,
    contamination,
    gunicorn,
    http_get,
    line_of,
    pooled,
    serve_waitress,
)

pytestmark = pytest.mark.usefixtures("no_thread_left")

ALICE = {"X-User": "alice"}
BOB = {"X-User": "bob"}
ANONYMOUS: dict[str, str] = {}
#: One client after another on one worker thread: a user's requests bind
#: the same cached objects again; an anonymous one follows a user's.
SEQUENCE = [ALICE, ALICE, ANONYMOUS, BOB, BOB, ALICE, ANONYMOUS]
SILENT = ["module", "by_name", "bound", "reset", "tenant"]
BIND_LINE = line_of(bindapp.__file__, bindapp.BIND_MARKER)

#: (replies as JSON, findings as (code, subject, origin_site)).
Outcome = tuple[list[dict[str, Any]], list[tuple[str, str, str | None]]]


def _findings(violations: Any) -> list[tuple[str, str, str | None]]:
    return [(v.code, v.subject, v.origin_site) for v in violations]


def on_the_test_clients_thread(pattern: str) -> Outcome:
    app, guard = bindapp.guarded_app(pattern)
    replies = pooled(app, [("/whoami", headers) for headers in SEQUENCE])
    return [json.loads(body) for _, body in replies], _findings(
        guard.violations
    )


class _KeepAlive(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"


@contextlib.contextmanager
def _werkzeug(app: Any, *, threaded: bool) -> Iterator[int]:
    server = make_server(
        "127.0.0.1", 0, app, threaded=threaded, request_handler=_KeepAlive
    )
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="werkzeug-server",
    )
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=TIMEOUT)


def _on_werkzeug(pattern: str, *, threaded: bool) -> Outcome:
    app, guard = bindapp.guarded_app(pattern)
    with _werkzeug(app, threaded=threaded) as port:
        replies = [
            json.loads(http_get(port, "/whoami", headers)[1])
            for headers in SEQUENCE
        ]
    return replies, _findings(guard.violations)


def on_werkzeugs_threaded_server(pattern: str) -> Outcome:
    # A new thread, with a new context, for each connection (Werkzeug
    # closes the connection after each response): nothing can leak.
    return _on_werkzeug(pattern, threaded=True)


def on_werkzeugs_single_threaded_server(pattern: str) -> Outcome:
    # The server's one thread serves every request, in one context.
    return _on_werkzeug(pattern, threaded=False)


def on_waitress(pattern: str) -> Outcome:
    app, guard = bindapp.guarded_app(pattern)
    with serve_waitress(app, threads=1) as port:
        replies = [
            json.loads(http_get(port, "/whoami", headers)[1])
            for headers in SEQUENCE
        ]
    return replies, _findings(guard.violations)


def on_gunicorn_gthread(pattern: str) -> Outcome:
    with gunicorn(
        f"tests.bindapp:gunicorn_app({pattern!r})", workers=1, threads=1
    ) as server:
        replies = [
            json.loads(http_get(server.port, "/whoami", headers)[1])
            for headers in SEQUENCE
        ]
    found = [
        (e["code"], e["subject"], e["origin_site"])
        for e in contamination(server.events())
    ]
    return replies, found


SERVERS: dict[str, Callable[[str], Outcome]] = {
    "test client": on_the_test_clients_thread,
    "werkzeug threaded": on_werkzeugs_threaded_server,
    "werkzeug single-threaded": on_werkzeugs_single_threaded_server,
    "waitress": on_waitress,
    "gunicorn": on_gunicorn_gthread,
}

#: Servers that run each request of this sequence in a fresh context.
FRESH_CONTEXTS = {"werkzeug threaded"}


@pytest.mark.parametrize("server", list(SERVERS))
class TestOnServers:
    @pytest.mark.parametrize("pattern", SILENT)
    def test_the_documented_patterns_are_silent(self, server, pattern):
        """Each documented pattern serves every request its own user and
        is never reported, on every server."""
        replies, found = SERVERS[server](pattern)

        assert [] == found
        users = [reply["user"] for reply in replies]
        assert ["user-alice", "user-alice", None, "user-bob"] == users[:4]
        for reply in replies:
            if pattern == "tenant":
                expected = reply["user"] and reply["user"].replace(
                    "user-", "tenant of "
                )
                assert expected == reply["tenant"]
            else:
                assert reply["user"] == reply["log"].get("user_id")

    def test_binding_without_clearing_is_reported_with_its_line(self, server):
        """The same app without the clear leaks the last user into the
        anonymous requests' logs, and each is CG106 naming the line that
        bound the value."""
        replies, found = SERVERS[server]("no_clear")
        leaked = [
            replies[2]["log"].get("user_id"),
            replies[6]["log"].get("user_id"),
        ]

        if server in FRESH_CONTEXTS:
            # Nothing leaked, and nothing is reported.
            assert ([None, None], []) == (leaked, found)
            return
        assert ["user-alice", "user-alice"] == leaked
        assert 2 == len(found)
        for code, subject, site in found:
            assert "CG106" == code
            assert "ContextVar structlog_user_id" == subject
            assert site is not None
            assert site.endswith(
                f"bindapp.py:{BIND_LINE} in bind_log_context"
            ), site

    def test_a_plain_contextvar_left_by_a_user_is_reported(self, server):
        """A tenant ContextVar set only for users, to a value of the
        request's making, is CG106 in the anonymous requests after them."""
        replies, found = SERVERS[server]("tenant_for_users")

        if server in FRESH_CONTEXTS:
            assert ([None], []) == ([replies[2]["tenant"]], found)
            return
        assert "tenant of alice//whoami" == replies[2]["tenant"]
        assert [("CG106", "ContextVar tenant")] * 2 == [
            (code, subject) for code, subject, _ in found
        ]


class TestReportCommand:
    @pytest.mark.parametrize(
        ("pattern", "expected"), [("by_name", 0), ("no_clear", 1)]
    )
    def test_report_over_a_gunicorn_log(self, tmp_path, pattern, expected):
        """'report' over the JSON log of concurrent clients on gunicorn
        gthread exits 0 for the corrected app, 1 for the one without the
        clear, whose finding names the bind line."""
        with gunicorn(
            f"tests.bindapp:gunicorn_app({pattern!r})", workers=1, threads=4
        ) as server:
            clients = [
                threading.Thread(
                    target=lambda: [
                        http_get(server.port, "/whoami", headers)
                        for headers in SEQUENCE
                    ]
                )
                for _ in range(4)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join(TIMEOUT)
            log = server.output()
        path = pathlib.Path(tmp_path, "app.log")
        path.write_text(log)

        result = subprocess.run(
            [sys.executable, "-m", "flask_ctxguard", "report", str(path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            cwd=ROOT,
            check=False,
        )

        assert expected == result.returncode, result.stdout + result.stderr
        if expected:
            assert f"bindapp.py:{BIND_LINE} in bind_log_context" in (
                result.stdout
            )


class TestFindings:
    def test_one_bind_line_is_one_finding_for_every_endpoint(self):
        """The requests of two endpoints that held the value one line
        bound are one finding, under that line, with both views."""
        app, guard = bindapp.guarded_app("no_clear")
        pooled(
            app,
            [
                ("/whoami", ALICE),
                ("/whoami", ANONYMOUS),
                ("/whoami", BOB),
                ("/health", ANONYMOUS),
            ],
        )
        log = b"".join(
            json.dumps({"event": "contamination", **v.log_fields()}).encode()
            + b"\n"
            for v in guard.violations
        )
        findings = Findings()
        findings.read(io.BytesIO(log))

        found = findings.to_dict()["findings"]
        assert 2 == len(guard.violations)
        assert 1 == len(found)
        assert found[0]["origin_site"].endswith(
            f"bindapp.py:{BIND_LINE} in bind_log_context"
        )
        assert ["health", "whoami"] == found[0]["accessor_endpoints"]


class TestHammer:
    @pytest.mark.parametrize(
        ("pattern", "codes"), [("by_name", set()), ("no_clear", {"CG106"})]
    )
    def test_hammer_is_clean_on_the_documented_pattern(self, pattern, codes):
        """hammer() on concurrent clients, each its own cached user, plus
        anonymous requests: clean on the documented pattern, CG106 (and
        responses carrying another client's user) without the clear."""
        app = bindapp.create_app(pattern)
        requests = [
            RequestSpec("/whoami", headers={"X-User": "{client}"}),
            RequestSpec("/whoami"),
            RequestSpec("/whoami", headers={"X-User": "alice"}),
        ]

        result = hammer(app, requests, threads=4, rounds=3)

        assert codes == {v.code for v in result.violations}
        # The leak is real: another client's canary in a response.
        assert bool(codes) == bool(result.crossovers)
