from __future__ import annotations

import contextvars
import json
import re
import subprocess
import sys
import threading

from flask import g

from flask_ctxguard import CtxGuard, RequestTag
from flask_ctxguard._core.tags import new_token

_PRINT_TOKENS = (
    "from flask_ctxguard._core.tags import new_token;"
    "print(' '.join(new_token() for _ in range(200)))"
)


class TestTokens:
    def test_unique_across_threads(self):
        """Tokens made concurrently by many threads never collide."""
        tokens: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(8)

        def make():
            barrier.wait(timeout=10)
            mine = [new_token() for _ in range(500)]
            with lock:
                tokens.extend(mine)

        threads = [threading.Thread(target=make) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)

        assert 4000 == len(set(tokens))

    def test_unique_across_processes(self):
        """Two processes make disjoint sets of tokens."""
        runs = [
            subprocess.run(
                [sys.executable, "-c", _PRINT_TOKENS],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout.split()
            for _ in range(2)
        ]

        assert 200 == len(set(runs[0])) == len(set(runs[1]))
        assert set() == set(runs[0]) & set(runs[1])

    def test_unique_after_fork(self):
        """A forked child does not repeat its parent's tokens."""
        code = (
            "import os\n"
            "from flask_ctxguard._core.tags import new_token\n"
            "r, w = os.pipe()\n"
            "if os.fork() == 0:\n"
            "    os.write(w, new_token().encode()); os._exit(0)\n"
            "os.wait()\n"
            "print(new_token(), os.read(r, 100).decode())\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.split()

        parent, child = out
        assert parent.split("-")[0] != child.split("-")[0]

    def test_short_and_free_of_request_data(self):
        """A token is short: a random prefix and a counter, nothing else."""
        token = new_token()
        prefix, _, counter = token.partition("-")

        assert re.fullmatch(r"[0-9a-f]{8}", prefix), token
        assert re.fullmatch(r"[0-9a-f]+", counter), token
        assert int(counter, 16) > 0
        assert len(token) < 20


class TestCurrent:
    def test_current_in_a_request(self, app, guard, client):
        """guard.current() describes the running request."""
        seen = []

        @app.route("/items/<int:n>", methods=["POST"])
        def item(n):
            seen.append(guard.current())
            return "ok"

        client.post("/items/3")

        tag = seen[0]
        assert isinstance(tag, RequestTag)
        assert ("POST", "/items/3", "item") == (
            tag.method,
            tag.path,
            tag.endpoint,
        )
        assert threading.get_ident() == tag.thread_id
        assert threading.current_thread().name == tag.thread_name
        assert tag.started > 0

    def test_current_is_stable_within_a_request(self, app, guard, client):
        """The same request gets the same tag; the next one another."""
        seen = []

        @app.route("/")
        def index():
            seen.append(guard.current())
            seen.append(guard.current())
            return "ok"

        client.get("/")
        client.get("/")

        assert seen[0] is seen[1]
        assert seen[0].token != seen[2].token

    def test_current_outside_a_request(self, app, guard):
        """guard.current() is None outside a request, even in an app
        context."""
        assert guard.current() is None
        with app.app_context():
            assert guard.current() is None

    def test_current_in_a_test_request_context(self, app, guard):
        """A pushed test request context is a request: it has a tag."""
        with app.test_request_context("/items/7?x=1"):
            tag = guard.current()

        assert ("GET", "/items/7") == (tag.method, tag.path)

    def test_current_of_another_guard(self, app, guard):
        """A guard does not describe requests of apps it does not guard."""
        from flask import Flask

        other_app = Flask("other")
        other_app.config["CTXGUARD_MODE"] = "log"
        other = CtxGuard(other_app)
        seen = []

        @other_app.route("/")
        def index():
            g.x = 1
            seen.append((guard.current(), other.current()))
            return "ok"

        other_app.test_client().get("/")

        assert seen[0][0] is None
        assert "/" == seen[0][1].path


class TestRequestTag:
    def test_str_and_dict(self):
        """A tag reads well and serialises to JSON."""
        tag = RequestTag(
            token="3f9a-7",
            thread_id=1,
            thread_name="MainThread",
            method="GET",
            path="/me",
            endpoint="me",
            started=1.5,
        )

        assert "GET /me (request 3f9a-7, thread 'MainThread')" == str(tag)
        assert {
            "token": "3f9a-7",
            "method": "GET",
            "path": "/me",
            "endpoint": "me",
            "thread": "MainThread",
            "thread_id": 1,
            "started": 1.5,
        } == json.loads(json.dumps(tag.to_dict()))

    def test_pushed_by_a_harness(self):
        """A request context a test harness pushed is named by what pushed
        it, not by its method and path."""
        tag = RequestTag(
            token="3f9a-8",
            thread_id=1,
            thread_name="MainThread",
            method="GET",
            path="/",
            endpoint=None,
            started=1.5,
            pushed_by="the fixture 'req_ctx'",
        )

        assert (
            "the fixture 'req_ctx' (request 3f9a-8, thread 'MainThread')"
            == str(tag)
        )
        assert "the fixture 'req_ctx'" == tag.to_dict()["pushed_by"]


class TestRequestRecord:
    def _record(self):
        from flask_ctxguard._rules.records import RequestRecord

        return RequestRecord(object(), 1, "GET", "/a")  # type: ignore[arg-type]

    def test_a_new_record_is_armed_in_this_thread(self):
        """Everything a record holds is set when it is made."""
        from flask_ctxguard._rules.records import ARMED

        record = self._record()

        assert (ARMED, None, 0) == (
            record.phase,
            record.endpoint,
            record.unlinked,
        )
        assert threading.get_ident() == record.thread_id
        assert isinstance(record.snapshot, contextvars.Context)
        assert record.number < self._record().number  # arrival order

    def test_retire_hands_over_the_snapshot(self):
        """retire() marks it ended, notes the endpoint it matched, and
        gives the ContextVars it started with away; no route keeps the
        endpoint unknown."""
        from flask_ctxguard._rules.records import RETIRED

        record = self._record()
        snapshot = record.snapshot

        assert snapshot is record.retire("index")
        assert (RETIRED, "index", None) == (
            record.phase,
            record.endpoint,
            record.snapshot,
        )
        unrouted = self._record()
        unrouted.retire(None)
        assert None is unrouted.endpoint

    def test_what_the_rules_note(self):
        """note_endpoint keeps the first endpoint; note_bind keeps the
        last site per key; unlink and forget_snapshot say what they do."""
        record = self._record()

        record.note_endpoint("a")
        record.note_endpoint("b")
        record.note_bind("user_id", None)
        record.note_bind("user_id", ("code", 3))  # type: ignore[arg-type]
        record.unlink(2)
        record.forget_snapshot()

        assert "a" == record.endpoint
        assert {"user_id": ("code", 3)} == record.bound
        assert (2, None) == (record.unlinked, record.snapshot)

    def test_tag_learns_the_endpoint_and_keeps_its_token(self):
        """A tag built before the URL was matched is rebuilt once the
        endpoint is known, with the same token."""
        record = self._record()
        before = record.tag()
        record.note_endpoint("index")

        after = record.tag()

        assert (None, "index") == (before.endpoint, after.endpoint)
        assert before.token == after.token
        assert after is record.tag()

    def test_repr(self):
        from flask_ctxguard._rules.records import RETIRED

        record = self._record()
        assert "<RequestRecord GET /a in flight>" == repr(record)
        record.retire(None)
        assert RETIRED == record.phase
        assert "<RequestRecord GET /a ended>" == repr(record)
