"""
flask_ctxguard.testing.hammer: a production-like pooled server, per-client
canaries and crossovers, against real apps, real threads and real sockets.
"""

from __future__ import annotations

import contextvars
import functools
import http.client
import io
import re
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, Response, g, request, session

from flask_ctxguard import ContaminationError, CtxGuard
from flask_ctxguard.testing import (
    Crossover,
    HammerResult,
    RequestSpec,
    hammer,
)

#: Bound of every wait on a thread or an event.
TIMEOUT = 5.0

#: The plan of the acceptance runs: log in as yourself, then ask who you are.
LOGIN_THEN_ME = ["/login/{client}", "/me"]


# -- the bugs only hammer can see, at module level as real code has them ------

#: A module-global "current user".
CURRENT_USER: str | None = None

#: A per-thread "current user".
THREAD_USER = threading.local()

#: A ContextVar set and never reset.
USER_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("user")


class CurrentUser:
    """A class attribute as the "current user"."""

    name = "anonymous"


@functools.cache
def profile_of_the_current_user() -> str:
    """The bug: a cache over request data, keyed by nothing."""
    return f"profile of {session['user']}"


@functools.cache
def profile_of(user: str) -> str:
    """The sanctioned pattern: the cache is keyed by the user."""
    return f"profile of {user}"


@pytest.fixture(autouse=True)
def _reset_module_state():
    """Every test starts with the module's buggy state untouched."""
    global CURRENT_USER
    yield
    CURRENT_USER = None
    CurrentUser.name = "anonymous"
    profile_of_the_current_user.cache_clear()
    profile_of.cache_clear()


def make_app(kind: str, *, testing: bool = False) -> Flask:
    """
    An app whose ``/login/<name>`` logs in and whose ``/me`` says who is
    logged in, the way *kind* says.
    """
    app = Flask(f"hammered-{kind}")
    app.config.update(SECRET_KEY="test", TESTING=testing)

    @app.route("/login/<name>")
    def login(name):
        global CURRENT_USER
        session["user"] = name
        if kind == "thread-local":
            THREAD_USER.name = name
        elif kind == "module-global":
            CURRENT_USER = name
        elif kind == "class-attribute":
            CurrentUser.name = name
        elif kind == "contextvar":
            USER_VAR.set(name)
        return "logged in"

    if kind == "thread-local-per-request":
        # Sanctioned: every request sets the thread's value first.
        @app.before_request
        def load_user():
            THREAD_USER.name = session.get("user", "anonymous")

    if kind == "contextvar-reset":
        # Sanctioned: set for the request, reset with its token.
        @app.before_request
        def bind_user():
            g.user_token = USER_VAR.set(session.get("user", "anonymous"))

        @app.teardown_request
        def unbind_user(exc):
            USER_VAR.reset(g.user_token)

    readers: dict[str, Callable[[], str]] = {
        "thread-local": lambda: getattr(THREAD_USER, "name", "anonymous"),
        "module-global": lambda: CURRENT_USER or "anonymous",
        "class-attribute": lambda: CurrentUser.name,
        "contextvar": lambda: USER_VAR.get("anonymous"),
        "lru-cache": profile_of_the_current_user,
        "lru-cache-keyed": lambda: profile_of(session["user"]),
    }
    readers["thread-local-per-request"] = readers["thread-local"]
    readers["contextvar-reset"] = readers["contextvar"]

    @app.route("/me")
    def me():
        read = readers.get(kind, lambda: session.get("user", "anonymous"))
        return read()

    return app


def _remembering_the_last_name(app_name: str) -> tuple[Flask, list[str]]:
    """
    An app whose '/hello/<name>' keeps *name* in a list that every request
    shares (returned with the app, for the test's reading views).
    """
    app = Flask(app_name)
    last: list[str] = ["nobody"]

    @app.route("/hello/<name>")
    def hello(name):
        last[0] = name
        return "ok"

    return app, last


def crossing(result: HammerResult) -> set[tuple[str, str]]:
    """(request, where) of every crossover."""
    return {(c.request.describe(), c.where) for c in result.crossovers}


class TestWhatItCatches:
    @pytest.mark.parametrize(
        "kind",
        [
            "thread-local",
            "module-global",
            "class-attribute",
            "lru-cache",
            "contextvar",
        ],
    )
    def test_leak_is_a_crossover(self, kind):
        """
        A user kept in a threading.local, a module global, a class
        attribute, a cache or a ContextVar reaches other clients' '/me':
        a crossover, and assert_clean() fails.
        """
        app = make_app(kind)

        result = hammer(app, LOGIN_THEN_ME, threads=8, rounds=6)

        assert {200} == {r.status for r in result.responses}
        assert {("GET /me", "body")} == crossing(result)
        with pytest.raises(
            AssertionError, match=r"\Ahammer: \d+ crossover"
        ) as raised:
            result.assert_clean()
        # One line for pytest's short summary (see test_pytest_output).
        summary = raised.value.ctxguard_summary
        assert summary == result.summary()
        assert re.fullmatch(r"hammer: \d+ crossovers?(; .*)?", summary)

    def test_contextvar_on_a_pooled_thread_is_cg106(self):
        """
        A ContextVar set and never reset is CG106 on the pooled server: a
        worker thread serves the next request with the stale value.
        """
        app = make_app("contextvar")

        result = hammer(app, LOGIN_THEN_ME, threads=8, rounds=6)

        assert {("CG106", "ContextVar user")} == {
            (v.code, v.subject) for v in result.violations
        }

    def test_thread_per_connection_hides_what_pools_show(self):
        """
        On Werkzeug's thread-per-connection server the same ContextVar bug
        shows nothing: the thread dies with its connection.
        """
        app = make_app("contextvar")

        result = hammer(
            app,
            LOGIN_THEN_ME,
            threads=8,
            rounds=2,
            server="thread-per-connection",
        )

        assert {200} == {r.status for r in result.responses}
        assert ([], []) == (result.violations, result.crossovers)

    @pytest.mark.parametrize(
        ("clean", "leaky"),
        [
            ("session", "thread-local"),
            ("thread-local-per-request", "thread-local"),
            ("contextvar-reset", "contextvar"),
            ("lru-cache-keyed", "lru-cache"),
        ],
    )
    def test_sanctioned_pattern_is_silent(self, clean, leaky):
        """
        The same plan over the sanctioned pattern (a per-request value, a
        reset ContextVar, a cache keyed by the user) shows nothing over
        ten rounds; the buggy twin is caught.
        """
        result = hammer(make_app(clean), LOGIN_THEN_ME, threads=8, rounds=10)
        control = hammer(make_app(leaky), LOGIN_THEN_ME, threads=8, rounds=1)

        assert ([], []) == (result.violations, result.crossovers)
        for client in range(8):
            assert [
                result.canaries[client]
                if clean != "lru-cache-keyed"
                else f"profile of {result.canaries[client]}"
            ] * 10 == [r.text for r in result.for_client(client)][1::2]
        result.assert_clean()
        assert [] != control.crossovers

    def test_leak_in_raise_mode_is_collected(self, capfd):
        """
        An app whose guard raises (TESTING) still answers every request
        during the run; the violations are collected, nothing is printed
        to stderr, and the guard raises again afterwards.
        """
        app = make_app("contextvar", testing=True)
        guard = CtxGuard(app)
        kept: list[Any] = []

        @app.route("/keep")
        def keep():
            kept.append(request._get_current_object())  # type: ignore[attr-defined] # a proxy's method
            return ""

        capfd.readouterr()

        result = hammer(app, LOGIN_THEN_ME, threads=4, rounds=3)

        assert "raise" == app.extensions["ctxguard"].settings.mode
        assert {200} == {r.status for r in result.responses}
        assert {"CG106"} == {v.code for v in result.violations}
        assert "" == capfd.readouterr().err
        app.test_client().get("/keep")
        with pytest.raises(ContaminationError):
            kept[0].args
        assert guard is app.extensions["ctxguard"].guard


class TestServer:
    def test_workers_change_hands(self):
        """
        The default server has fewer worker threads than clients, each
        serving several clients: the pool is reused across clients.
        """
        app = Flask("pool")
        served: list[tuple[str, str]] = []
        lock = threading.Lock()

        @app.route("/who/<name>")
        def who(name):
            with lock:
                served.append((threading.current_thread().name, name))
            return name

        result = hammer(app, ["/who/{client}"], threads=8, rounds=2)

        threads = {thread for thread, _ in served}
        clients_per_thread = [
            len({name for thread, name in served if thread == one})
            for one in threads
        ]
        assert 16 == len(served)
        assert threads <= {f"ctxguard-hammer-worker-{i}" for i in range(4)}
        assert max(clients_per_thread) >= 2
        assert "pooled" == result.server

    def test_workers_option(self):
        """*workers* sets the pool's size."""
        app = Flask("one-worker")
        served: set[str] = set()

        @app.route("/")
        def index():
            served.add(threading.current_thread().name)
            return ""

        hammer(app, "/", threads=4, rounds=3, workers=1)

        assert {"ctxguard-hammer-worker-0"} == served

    @pytest.mark.parametrize(
        ("server", "ports_per_client"),
        [("pooled", 1), ("thread-per-connection", 6)],
    )
    def test_keep_alive(self, server, ports_per_client):
        """
        Each client keeps one connection on the pooled server; Werkzeug's
        closes after every response.
        """
        app = Flask("keep-alive")
        ports: dict[str, set[int]] = {}
        lock = threading.Lock()

        @app.route("/port/<name>")
        def port(name):
            with lock:
                ports.setdefault(name, set()).add(
                    request.environ["REMOTE_PORT"]
                )
            return request.environ["SERVER_PROTOCOL"]

        result = hammer(
            app, ["/port/{client}"] * 2, threads=3, rounds=3, server=server
        )

        assert {"HTTP/1.1"} == {r.text for r in result.responses}
        assert [ports_per_client] * 3 == [
            len(ports[result.canaries[i]]) for i in range(3)
        ]

    def test_bodies_and_odd_responses(self):
        """
        A body the view never reads does not spill into the next request
        on the connection; HEAD, 204, a streamed body and a read body are
        answered as sent.
        """
        app = Flask("bodies")

        @app.post("/ignore")
        def ignore():
            return "ignored"

        @app.post("/echo")
        def echo():
            return request.get_data()

        @app.route("/empty")
        def empty():
            return "", 204

        @app.route("/stream")
        def stream():
            return Response(iter([b"one ", b"two"]))

        @app.route("/plain", methods=["GET", "HEAD"])
        def plain():
            return "plain"

        plan = [
            RequestSpec("/ignore", method="POST", body=b"x" * 100_000),
            RequestSpec("/echo", method="POST", body="for {client}"),
            RequestSpec("/empty"),
            RequestSpec("/stream"),
            RequestSpec("/plain", method="HEAD"),
            RequestSpec("/plain"),
        ]

        result = hammer(app, plan, threads=2, rounds=2)

        for client in range(2):
            got = [(r.status, r.body) for r in result.for_client(client)]

            assert [
                (200, b"ignored"),
                (200, f"for {result.canaries[client]}".encode()),
                (204, b""),
                (200, b"one two"),
                (200, b""),
                (200, b"plain"),
            ] * 2 == got

    def test_chunked_request_and_expect_continue(self):
        """
        A chunked request body is read to its end, and a client that
        expects '100 Continue' gets it, on the same keep-alive connection.
        """
        app = Flask("chunked")

        @app.post("/echo")
        def echo():
            return request.get_data()

        plan = [
            RequestSpec(
                "/echo",
                method="POST",
                body=b"5\r\nhello\r\n0\r\n\r\n",
                headers=(("Transfer-Encoding", "chunked"),),
            ),
            RequestSpec(
                "/echo",
                method="POST",
                body=b"world",
                headers=(("Expect", "100-continue"),),
            ),
        ]

        result = hammer(app, plan, threads=2)

        assert [b"hello", b"world"] * 2 == [r.body for r in result.responses]

    def test_app_closing_the_connection(self):
        """
        A response with 'Connection: close' closes the connection; the
        client opens a new one for its next request.
        """
        app = Flask("closing")
        ports: list[int] = []

        @app.route("/close")
        def close():
            ports.append(request.environ["REMOTE_PORT"])
            return "bye", 200, {"Connection": "close"}

        result = hammer(app, ["/close", "/close"], threads=1)

        assert ["bye", "bye"] == [r.text for r in result.responses]
        assert 2 == len(set(ports))

    def test_broken_connection_is_raised(self):
        """A connection the app breaks fails the run with the client's
        error."""
        app = Flask("breaking")

        @app.route("/break")
        def break_it():
            request.environ["werkzeug.socket"].shutdown(socket.SHUT_RDWR)
            return "never sent"

        with pytest.raises(http.client.RemoteDisconnected):
            hammer(app, ["/break"], threads=2)

    def test_app_log_lines_pass(self, caplog):
        """The app's own log lines during a run are left alone."""
        app = Flask("logging")

        @app.route("/")
        def index():
            app.logger.warning("serving %s", request.path)
            return ""

        hammer(app, "/", threads=2)

        assert ["serving /"] * 2 == [
            r.getMessage() for r in caplog.records if r.name == "logging"
        ]


class TestCanaries:
    def test_placeholders_are_replaced(self):
        """
        '{client}' in the path, a header value and the body is the
        client's canary: short, URL-safe, distinct, new for every run.
        """
        app = Flask("canaries")

        @app.post("/echo/<name>")
        def echo(name):
            return f"{name} {request.headers['X-User']} {request.get_data()!r}"

        plan = [
            RequestSpec(
                "/echo/{client}",
                method="POST",
                headers=(("X-User", "user-{client}"),),
                body=b"{client}!",
            )
        ]

        first = hammer(app, plan, threads=3)
        second = hammer(app, plan, threads=3)

        for client, canary in first.canaries.items():
            assert re.fullmatch("cg[a-z0-9]{8}", canary)
            assert [f"{canary} user-{canary} b'{canary}!'"] == [
                r.text for r in first.for_client(client)
            ]
        assert 3 == len(set(first.canaries.values()))
        assert not set(first.canaries.values()) & set(second.canaries.values())
        assert [] == first.crossovers

    def test_plan_as_a_function_of_the_client(self):
        """A plan may be a function of the client index."""
        app = make_app("session")

        result = hammer(
            app,
            lambda client: [f"/login/user{client}", "/me"][: client + 1],
            threads=2,
            rounds=2,
        )

        assert [["logged in"] * 2, ["logged in", "user1"] * 2] == [
            [r.text for r in result.for_client(client)] for client in (0, 1)
        ]

    def test_plan_words_of_one_client_are_marks(self):
        """
        Without '{client}', a word only one client's plan has (such as
        'user3') is that client's mark: found elsewhere, it is a crossover.
        """
        app = make_app("module-global")

        result = hammer(
            app,
            lambda client: [f"/login/user{client}", "/me"],
            threads=8,
            rounds=2,
        )

        assert {("GET /me", "body")} == crossing(result)
        for crossover in result.crossovers:
            assert f"user{crossover.source}" == crossover.canary
            assert (f"GET /login/user{crossover.source}",) == (
                crossover.sent_in
            )

    def test_plan_words_match_whole_words(self):
        """
        A clean app whose clients are user1 and user10 shows no crossover:
        marks match whole words; numbers alone are no marks (positive
        control: the test above).
        """
        app = make_app("session")

        result = hammer(
            app,
            lambda client: [f"/login/user{client}", "/me", f"/login/{client}"],
            threads=11,
        )

        assert [] == result.crossovers
        assert {"user1", "user10"} <= {r.text for r in result.responses}

    def test_upper_cased_canary_is_found(self):
        """An app that changes the canary's case still shows a crossover."""
        app, last = _remembering_the_last_name("upper")

        @app.route("/shout")
        def shout():
            return last[0].upper()

        result = hammer(app, ["/hello/{client}", "/shout"], threads=4)

        assert {("GET /shout", "body")} == crossing(result)

    def test_public_page_is_not_searched(self):
        """
        A page that rightly shows every user (private=False) is not a
        crossover; the same page marked private is.
        """
        app = Flask("members")
        members: set[str] = set()
        lock = threading.Lock()

        @app.route("/join/<name>")
        def join(name):
            with lock:
                members.add(name)
            return "joined"

        @app.route("/members")
        def listing():
            with lock:
                return ", ".join(sorted(members))

        public = hammer(
            app,
            ["/join/{client}", RequestSpec("/members", private=False)],
            threads=4,
        )
        private = hammer(app, ["/join/{client}", "/members"], threads=4)

        assert [] == public.crossovers
        assert {("GET /members", "body")} == crossing(private)

    def test_crossover_in_a_header(self):
        """A canary in a response header is found there."""
        app, last = _remembering_the_last_name("header")

        @app.route("/greet")
        def greet():
            return "", 200, {"X-Last-User": last[0]}

        result = hammer(app, ["/hello/{client}", "/greet"], threads=4)

        assert {("GET /greet", "header 'X-Last-User'")} == crossing(result)


class TestReport:
    def test_crossover_fields(self):
        """
        A crossover names the receiving client, the round, the planned
        request, the source client and canary, and where it was found.
        """
        app = make_app("module-global")

        result = hammer(app, LOGIN_THEN_ME, threads=4, rounds=2)

        owner = {canary: client for client, canary in result.canaries.items()}
        for crossover in result.crossovers:
            assert isinstance(crossover, Crossover)
            assert owner[crossover.canary] == crossover.source
            assert crossover.source != crossover.client
            assert crossover.round in (0, 1)
            assert (1, "/me") == (crossover.step, crossover.request.path)
            assert crossover.canary == crossover.excerpt
            assert ("GET /login/{client}",) == crossover.sent_in

    def test_report_text(self):
        """
        assert_clean() fails with the request, whose data, an excerpt and
        the fix, grouped per request.
        """
        app = make_app("module-global")

        result = hammer(app, LOGIN_THEN_ME, threads=4, rounds=2)
        with pytest.raises(AssertionError) as info:
            result.assert_clean()

        text = str(info.value)
        count = len(result.crossovers)
        first = result.crossovers[0]
        assert text.startswith(
            f"hammer: {count} crossovers: responses that carried another"
            " client's canary, so one client's data reached another"
            " client.\n\nGET /me (step 2 of the plan), in the body:"
            f" {count} times in 2 rounds\n"
            f"  client {first.client}, round {first.round}: GET /me returned"
            f" client {first.source}'s canary '{first.canary}' (sent in"
            f" GET /login/{{client}}) in the body:\n    {first.canary}\n"
        )
        assert (
            "  fix: find what 'GET /me' reads that an earlier request left"
            " outside its own context: a module global, a class attribute,"
            " a threading.local, a cache (functools.lru_cache) not keyed by"
            " the user, or a ContextVar set and never reset.\n"
            "  docs: https://flask-ctxguard.readthedocs.io/en/latest/hammer.html"
            "#crossovers"
        ) in text

    def test_control_characters_are_escaped(self):
        """Request-derived text reaches the report with escapes only."""
        app, last = _remembering_the_last_name("ansi")

        @app.route("/\x1b[31mred")
        def red():
            return f"\x1b[31m{last[0]}\r\n\x00\u2028".encode()

        result = hammer(app, ["/hello/{client}", "/%1B[31mred"], threads=4)

        text = result.report()
        assert [] != result.crossovers
        assert "\x1b" not in text
        assert "\r" not in text
        assert "\x00" not in text
        assert "\\x1b[31mcg" in text
        assert "\\r\\n\\x00\\u2028" in text

    def test_violations_are_reported_too(self):
        """assert_clean() fails on violations alone, with their reports."""
        app = make_app("contextvar-reset")
        kept: dict[str, Any] = {}

        @app.route("/keep")
        def keep():
            kept["g"] = g._get_current_object()
            return ""

        @app.route("/read")
        def read():
            return str(getattr(kept["g"], "user_token", None) is None)

        result = hammer(app, ["/keep", "/read"], threads=2)

        assert [] == result.crossovers
        with pytest.raises(
            AssertionError,
            match=(
                r"\A\d+ request-context contamination violations? in \d+"
                r" findings?:\n\nCG10"
            ),
        ) as raised:
            result.assert_clean()
        summary = raised.value.ctxguard_summary
        assert "\n" not in summary
        assert re.fullmatch(
            r"hammer: \d+ request-context contamination findings?: CG10\d .*",
            summary,
        ), summary

    def test_clean_report(self):
        """A clean run says so."""
        result = hammer(make_app("session"), LOGIN_THEN_ME, threads=2)

        assert "hammer: clean." == result.report()
        assert "hammer: clean" == result.summary()
        assert result.is_clean


class TestErrors:
    @pytest.mark.parametrize("testing", [True, False])
    def test_app_errors_are_summarised_once(self, capfd, events, testing):
        """
        The app's own errors become 500s, grouped once in result.errors
        and one log event; nothing is printed per request.
        """
        app = Flask("failing")
        app.config["TESTING"] = testing

        @app.route("/boom")
        def boom():
            raise KeyError("missing")

        capfd.readouterr()
        result = hammer(app, ["/boom", "/boom"], threads=4, rounds=2)

        assert {500} == {r.status for r in result.responses}
        assert 1 == len(result.errors)
        error = result.errors[0]
        assert ("KeyError", "'missing'", 16, "GET /boom") == (
            error.type,
            error.message,
            error.count,
            error.request,
        )
        assert re.fullmatch(r".*test_hammer\.py:\d+ in boom", str(error.site))
        assert "raise KeyError" in error.traceback
        assert "" == capfd.readouterr().err
        assert ["hammer-errors"] == [
            e["event"] for e in events if e["event"].startswith("hammer")
        ]
        assert result.is_clean
        assert "hammer: the app raised 16 errors" in result.report()

    def test_wsgi_write_is_refused(self):
        """
        Middleware that uses WSGI's legacy write() gets a 500 and a
        grouped error naming it.
        """
        app = Flask("legacy")

        def legacy(environ, start_response):
            write = start_response("200 OK", [])
            write(b"old style")
            return []

        app.wsgi_app = legacy  # type: ignore[method-assign] # middleware

        result = hammer(app, "/", threads=1)

        assert [500] == [r.status for r in result.responses]
        assert ["NotImplementedError"] == [e.type for e in result.errors]
        assert "write() callable" in result.errors[0].message


class TestInput:
    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"threads": 0}, "threads and rounds must be at least 1"),
            ({"threads": -1}, "threads and rounds must be at least 1"),
            ({"rounds": 0}, "threads and rounds must be at least 1"),
            ({"timeout": 0}, "timeout positive"),
            ({"server": "gunicorn"}, "server must be one of 'pooled'"),
            ({"workers": 0}, "workers must be at least 1"),
            (
                {"workers": 2, "server": "thread-per-connection"},
                "only goes with server='pooled'",
            ),
        ],
    )
    def test_bad_options(self, kwargs, message):
        """Bad counts, servers and workers are refused before any request."""
        # Not timeout=-1: http.client would leak its socket on a negative
        # timeout, and the ResourceWarning would hit a later test.
        app = make_app("session")

        with pytest.raises(ValueError, match=re.escape(message)):
            hammer(app, ["/me"], **kwargs)

    def test_bad_plan_item(self):
        """A plan item that is neither a path nor a RequestSpec is named."""
        with pytest.raises(
            TypeError,
            match=re.escape(
                "hammer: request 1 of client 0's plan is 42 (int); expected a"
                " path such as '/me' or a flask_ctxguard.testing.RequestSpec."
            ),
        ):
            hammer(make_app("session"), ["/me", 42], threads=1)  # type: ignore[list-item] # the point

    def test_empty_plan(self):
        """An empty plan is refused."""
        with pytest.raises(ValueError, match="client 1's plan is empty"):
            hammer(
                make_app("session"),
                lambda client: ["/me"] * (1 - client),
                threads=2,
            )

    @pytest.mark.parametrize("path", ["me", "", "http://example.com/"])
    def test_bad_path(self, path):
        """A path must start with '/'."""
        with pytest.raises(
            ValueError, match="RequestSpec: path must be a str starting"
        ):
            RequestSpec(path)

    def test_bad_headers(self):
        """Headers must be pairs or a mapping."""
        with pytest.raises(TypeError, match="headers must be"):
            RequestSpec("/", headers=42)  # type: ignore[arg-type] # the point

    def test_plan_function_returning_a_path(self):
        """A plan function may return one path."""
        result = hammer(make_app("session"), lambda client: "/me", threads=2)

        assert ["/me", "/me"] == [r.request.path for r in result.responses]

    def test_plan_function_returning_nonsense(self):
        """A plan function returning neither paths nor specs is named."""
        with pytest.raises(
            TypeError,
            match=re.escape(
                "hammer: client 0's plan is 42; expected a list of paths or"
                " RequestSpec objects."
            ),
        ):
            hammer(make_app("session"), lambda client: 42, threads=1)  # type: ignore[arg-type,return-value] # the point

    def test_single_path(self):
        """A bare string is one path, not a sequence of characters."""
        result = hammer(make_app("session"), "/me", threads=1)

        assert ["/me"] == [r.request.path for r in result.responses]


class TestGuardInstalling:
    def test_unguarded_app(self):
        """An app without a guard gets one in log mode, even when testing."""
        app = make_app("contextvar", testing=True)

        result = hammer(app, LOGIN_THEN_ME, threads=2, rounds=2)

        assert "log" == app.config["CTXGUARD_MODE"]
        assert isinstance(app.extensions["ctxguard"].guard, CtxGuard)
        assert {200} == {r.status for r in result.responses}
        assert {"CG106"} == {v.code for v in result.violations}

    def test_own_guard_is_kept(self):
        """An app that has a guard keeps it."""
        app = make_app("contextvar")
        app.config["CTXGUARD_MODE"] = "log"
        guard = CtxGuard(app)

        result = hammer(app, LOGIN_THEN_ME, threads=1, rounds=2)

        assert guard is app.extensions["ctxguard"].guard
        assert list(guard.violations) == list(result.violations)
        assert [] != result.violations


@pytest.fixture(name="stuck")
def _stuck():
    """An app whose '/stuck' answers only when the test is over."""
    app = Flask("stuck")
    release = threading.Event()

    @app.route("/stuck")
    def stuck():
        release.wait(TIMEOUT)
        return "late"

    yield app
    release.set()


class TestTimeout:
    @pytest.mark.parametrize("server", ["pooled", "thread-per-connection"])
    def test_timeout_message(self, stuck, server):
        """
        A run longer than its timeout raises hammer's own TimeoutError,
        naming the timeout and the fix.
        """
        with pytest.raises(
            TimeoutError,
            match=re.escape(
                "hammer: the clients did not finish within 0.5s;"
                " pass a larger timeout= or fewer requests."
            ),
        ):
            hammer(stuck, ["/stuck"], threads=2, timeout=0.5, server=server)


class TestExampleApp:
    def test_drafts_leak_is_found_by_hammer_only(self, tmp_path):
        """
        The example app's draft kept in a threading.local is a crossover
        on '/buggy/drafts/current'; the guard reports nothing.
        """
        from example_app import hammering

        result = hammering.run(str(tmp_path))

        assert {200} == {r.status for r in result.responses}
        assert [] == result.violations
        assert {("GET /buggy/drafts/current", "body")} == crossing(result)

    def test_demo_step(self):
        """
        The demo's hammer step prints the crossover and what the guard
        saw, and exits 0.
        """
        from example_app import hammering

        out = io.StringIO()

        assert 0 == hammering.main(out)
        text = out.getvalue()
        assert "the guard reported no violation; hammer found" in text
        assert "GET /buggy/drafts/current returned client" in text

    def test_clean_path(self, tmp_path):
        """
        Logging in and reading one's own profile under the same load
        shows nothing (positive control: the drafts plan above).
        """
        from example_app import create_app
        from example_app.hammering import drafts_plan

        app = create_app(
            {
                "SECRET_KEY": "test",
                "DATABASE": str(tmp_path / "notes.sqlite3"),
                "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
                "AUDIT_FLUSH_INTERVAL": None,
                "LOG_LEVEL": "ERROR",
            }
        )

        def plan(client):
            login = drafts_plan(client)[0]
            return [
                login,
                RequestSpec("/auth/me", headers=(("X", "{client}"),)),
            ]

        result = hammer(app, plan, threads=4, rounds=3)

        assert {200} == {r.status for r in result.responses}
        assert ([], []) == (result.violations, result.crossovers)


class TestPytestSummary:
    @pytest.fixture(name="suite")
    def _suite(self, pytester):
        pytester.makeini(
            "[pytest]\nconsole_output_style = classic\n"
            "addopts = -p no:randomly\n"
        )
        pytester.makepyfile(
            test_leak="""
            import threading
            from flask import Flask
            from flask_ctxguard.testing import hammer

            def test_leak():
                app = Flask("leak")
                last = threading.local()

                @app.route("/login/<name>")
                def login(name):
                    last.name = name
                    return "ok"

                @app.route("/me")
                def me():
                    return getattr(last, "name", "nobody")

                result = hammer(app, ["/login/{client}", "/me"], threads=4)
                assert result.crossovers

            def test_other():
                pass
            """
        )
        return pytester

    def test_summary_lists_crossovers(self, suite):
        """With the plugin on, the summary shows each test's crossovers."""
        result = suite.runpytest("--ctxguard=warn")

        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(
            [
                "*ctxguard hammer crossovers*",
                "test_leak.py::test_leak",
                "  hammer: * crossovers: responses that carried another*",
                "  GET /me (step 2 of the plan), in the body: *",
            ]
        )
        result.stdout.no_fnmatch_line("*INTERNALERROR*")
        result.stdout.no_fnmatch_line("test_leak.py::test_other")

    def test_no_summary_without_the_plugin(self, suite):
        """Without --ctxguard the summary has no such section."""
        result = suite.runpytest_subprocess()

        result.assert_outcomes(passed=2)
        result.stdout.no_fnmatch_line("*ctxguard hammer crossovers*")
