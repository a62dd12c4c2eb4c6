"""
Under load on real servers: gunicorn's gthread workers, waitress, Werkzeug's
threaded server and gevent. Every response must be its own request's and
nothing may be reported for clean endpoints; a buggy endpoint mixed in is
reported while the server keeps answering 200.

All servers listen on 127.0.0.1 on a port the OS picks; every run and every
client is bounded in time, and nothing is left running.
"""

from __future__ import annotations

import collections
import json
import pathlib
import subprocess
import sys
import time
from typing import Any

import pytest

from flask_ctxguard import CtxGuard
from flask_ctxguard.testing import RequestSpec, hammer
from tests.helpers import (
    ROOT,
    START_TIMEOUT,
    contamination,
    gunicorn,
    internal_errors,
    kept_request_control,
    serve_waitress,
)
from tests.loadclient import (
    Plan,
    Reply,
    check_replies,
    clean_plan,
    mixed_plan,
    run_load,
)
from tests.serverapp import create_app

CLIENTS = 32
#: Bound of every load run and of every client's socket.
TIMEOUT = 60.0


#: No server, pool, reader or client thread outlives its test.
pytestmark = pytest.mark.usefixtures("no_thread_left")


def guarded_app(name: str) -> tuple[Any, CtxGuard]:
    """The server app, guarded in log mode."""
    app = create_app(name)
    return app, CtxGuard(app)


def messages(events: list[dict[str, Any]]) -> list[str]:
    """What each of *events* says, for a readable failure."""
    return [f"{e.get('code')} {e.get('message', e)}" for e in events]


def codes_and_subjects(events: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["code"], e["subject"]) for e in events}


#: What the buggy endpoints cause: a cached request read by the next
#: request, a ContextVar left set for the next request of the thread.
BUGS = {("CG103", "request"), ("CG106", "ContextVar tenant")}


def buggy_replies(replies: list[Reply]) -> list[Reply]:
    return [r for r in replies if r.path.startswith("/buggy/")]


# -- gunicorn -----------------------------------------------------------------


def same_request_same_token(events: list[dict[str, Any]]) -> dict[str, Any]:
    """
    Map every token in *events* to the requests it was given to, which must
    be one: tokens are unique across threads and worker processes.
    """
    identities = collections.defaultdict(set)
    for event in events:
        for tag in (event["origin"], event["accessor"]):
            if tag and "token" in tag:
                identity = (tag["path"], tag["thread_id"], tag["started"])
                identities[tag["token"]].add(identity)
    return {token: seen for token, seen in identities.items() if len(seen) > 1}


class TestGunicorn:
    def test_clean_load_is_answered_and_not_reported(self):
        """
        4000 requests of 32 clients on 2 gthread workers of 8 threads each:
        every response is its own request's, and no contamination is logged
        but that of the buggy endpoint the same server serves afterwards.
        """
        with gunicorn() as server:
            replies = run_load(
                server.port,
                clean_plan(125),
                clients=CLIENTS,
                timeout=TIMEOUT,
            )
            # The positive control: one keep-alive client, so one worker.
            control = run_load(
                server.port,
                lambda client: [f"/buggy/remember?rid=c-{n}" for n in (1, 2)],
                clients=1,
                timeout=TIMEOUT,
            )
        events = server.events()

        assert 4000 == len(replies)
        assert [] == check_replies(replies)
        assert [200, 200] == [r.status for r in control]
        assert {("CG103", "request", "/buggy/remember")} == {
            (e["code"], e["subject"], e["accessor"]["path"])
            for e in contamination(events)
        }
        assert [] == messages(internal_errors(events))
        # The JSON log was read: both workers' ready events are in it.
        ready = [e for e in events if e["event"] == "worker-ready"]
        assert 2 == len({e["pid"] for e in ready})
        served_by = {
            json.loads(r.body)["pid"] for r in replies if "/me" in r.path
        }
        assert served_by <= {e["pid"] for e in ready}

    def test_buggy_endpoint_is_reported_under_load(self):
        """
        The same load with buggy endpoints mixed in: every request is still
        answered 200 (clean ones correctly), and the workers' structured logs
        report each bug with its code, at warning level.
        """
        with gunicorn() as server:
            replies = run_load(
                server.port,
                mixed_plan(125),
                clients=CLIENTS,
                timeout=TIMEOUT,
            )
        events = server.events()
        found = contamination(events)

        assert 4000 == len(replies)
        assert [] == check_replies(replies)
        assert 768 == len(buggy_replies(replies))
        assert BUGS == codes_and_subjects(found)
        assert {"warning"} == {e["level"] for e in found}
        assert [] == internal_errors(events)
        for event in found:
            if event["code"] == "CG103":
                assert "/buggy/remember" == event["origin"]["path"]
                assert "/buggy/remember" == event["accessor"]["path"]
            else:
                assert "set_tenant" == event["origin"]["endpoint"]
                # Held through a whole request of the same worker thread.
                assert "set_tenant" != event["accessor"]["endpoint"]
                assert (
                    event["origin"]["thread_id"]
                    == event["accessor"]["thread_id"]
                )
        assert {} == same_request_same_token(found)


# -- waitress -----------------------------------------------------------------


class TestWaitress:
    def test_clean_load_is_answered_and_not_reported(self, events):
        """
        2000 requests of 32 clients on 8 waitress threads: every response
        is its own request's, and nothing is reported.
        """
        app, guard = guarded_app("waitress-clean")

        with serve_waitress(app, threads=8) as port:
            replies = run_load(
                port, clean_plan(63), clients=CLIENTS, timeout=TIMEOUT
            )

        assert 2016 == len(replies)
        assert [] == check_replies(replies)
        assert [] == [str(v) for v in guard.violations]
        assert [] == messages(contamination(events))
        assert [] == internal_errors(events)
        assert ["CG104"] == kept_request_control(app, guard)

    def test_buggy_endpoint_is_reported_under_load(self, events):
        """
        Buggy endpoints mixed in are reported while every request is
        answered 200 and clean ones stay correct.
        """
        app, guard = guarded_app("waitress-buggy")

        with serve_waitress(app, threads=8) as port:
            replies = run_load(
                port, mixed_plan(63), clients=CLIENTS, timeout=TIMEOUT
            )

        assert 2016 == len(replies)
        assert [] == check_replies(replies)
        assert BUGS == {(v.code, v.subject) for v in guard.violations}
        assert BUGS == codes_and_subjects(contamination(events))
        assert [] == internal_errors(events)


class TestPooledThreads:
    def test_structlog_rebinding_a_constant_is_not_reported(self, events):
        """
        structlog's documented pattern on a pooled worker thread (clear,
        then bind) with a constant default, '-' for a request without an
        id: the second such request on the thread is not reported, for it
        cleared the value and bound its own.
        """
        app, guard = guarded_app("constant")

        with serve_waitress(app, threads=1) as port:
            replies = run_load(
                port,
                lambda client: ["/login/user0", "/login/user0"],
                clients=1,
                timeout=TIMEOUT,
            )

        assert [] == check_replies(replies)
        assert [] == [str(v) for v in guard.violations]
        assert ["CG104"] == kept_request_control(app, guard)


# -- Werkzeug -----------------------------------------------------------------


def hammer_replies(app: Any, plan: Plan) -> tuple[list[Reply], Any]:
    """`hammer` *plan* with 32 clients; the replies as `Reply` objects."""

    def specs(client: int) -> list[RequestSpec]:
        headers = (("X-Client", str(client)),)
        return [RequestSpec(path, headers=headers) for path in plan(client)]

    # Werkzeug's own server, as `flask run` serves; hammer's default pooled
    # server stands for gunicorn gthread and waitress (tests/test_hammer.py).
    result = hammer(
        app,
        specs,
        threads=CLIENTS,
        timeout=TIMEOUT,
        server="thread-per-connection",
    )
    replies = [
        Reply(r.client, r.request.path, r.status, r.text)
        for r in result.responses
    ]
    return replies, result


class TestWerkzeug:
    def test_clean_load_is_answered_and_not_reported(self, events):
        """
        1280 requests of 32 keep-alive clients on Werkzeug's threaded
        server: every response is its own request's, nothing is reported.
        """
        app, guard = guarded_app("werkzeug-clean")

        replies, result = hammer_replies(app, clean_plan(40))

        assert 1280 == len(replies)
        assert [] == check_replies(replies)
        assert [] == result.violations
        assert [] == guard.violations
        assert [] == internal_errors(events)
        assert ["CG104"] == kept_request_control(app, guard)

    def test_buggy_endpoint_is_reported_under_load(self, events):
        """Buggy endpoints mixed in are reported; all answered 200."""
        app, guard = guarded_app("werkzeug-buggy")

        replies, result = hammer_replies(app, mixed_plan(40))

        assert 1280 == len(replies)
        assert [] == check_replies(replies)
        # Werkzeug serves every request on a new thread: the tenant that
        # /buggy/tenant leaves behind dies with it, and nothing leaks.
        assert {("CG103", "request")} == {
            (v.code, v.subject) for v in result.violations
        }
        assert len(guard.violations) == len(result.violations)
        assert [] == internal_errors(events)


# -- gevent -------------------------------------------------------------------


@pytest.fixture(scope="module", name="gevent_outcome")
def _gevent_outcome(tmp_path_factory):
    """
    Run tests/gevent_load.py in its own process (gevent patches first),
    once for the module; what it saw, as JSON.
    """
    out = tmp_path_factory.mktemp("gevent") / "outcome.json"
    program = pathlib.Path(__file__).with_name("gevent_load.py")
    started = time.monotonic()
    finished = subprocess.run(
        [sys.executable, str(program), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT + START_TIMEOUT,
        check=False,
    )
    assert 0 == finished.returncode, (
        f"after {time.monotonic() - started:.1f}s:\n{finished.stderr}"
    )
    return json.loads(out.read_text())


def gevent_replies(run: dict[str, Any]) -> list[Reply]:
    return [Reply(*reply) for reply in run["replies"]]


class TestGevent:
    def test_clean_load_is_answered_and_not_reported(self, gevent_outcome):
        """
        1280 requests of 32 greenlet clients on gevent's pywsgi server,
        monkey-patched: every response is its own request's, nothing is
        reported.
        """
        run = gevent_outcome["clean"]
        replies = gevent_replies(run)

        assert gevent_outcome["patched"] is True
        assert 1280 == len(replies)
        assert [] == check_replies(replies)
        assert [] == run["violations"]
        assert [] == contamination(run["events"])
        assert [] == internal_errors(run["events"])
        # The positive control: the same program's buggy run, reported.
        buggy = gevent_outcome["buggy"]
        assert BUGS == {tuple(v) for v in buggy["violations"]}

    def test_buggy_endpoint_is_reported_under_load(self, gevent_outcome):
        """
        Buggy endpoints mixed in are reported; every request is answered
        200 and clean ones stay correct.
        """
        run = gevent_outcome["buggy"]
        replies = gevent_replies(run)

        assert 1280 == len(replies)
        assert [] == check_replies(replies)
        assert BUGS == {tuple(v) for v in run["violations"]}
        assert BUGS == codes_and_subjects(contamination(run["events"]))
        assert [] == internal_errors(run["events"])
