"""
Sanctioned patterns (docs/rules.md#sanctioned-patterns): programs that use
Flask's contexts the way Flask intends. The guard must report nothing and
change no response.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from importlib.metadata import version
from typing import Any

from flask import (
    Flask,
    after_this_request,
    copy_current_request_context,
    current_app,
    g,
    redirect,
    request,
    session,
    stream_with_context,
    url_for,
)

from tests._compat import needs_shared_g
from tests.helpers import (
    Worker,
    http_get,
    reply,
    reports,
    run_bare_and_guarded,
    serve,
    wait,
)


class CopiedContextThreadJoined:
    """
    A view renders a thumbnail in a thread wrapped with
    'copy_current_request_context' and waits for it.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"

        @app.get("/albums/<album>/thumbnail")
        def thumbnail(album: str) -> str:
            session["viewed"] = album

            @copy_current_request_context
            def render() -> str:
                size = request.args.get("size", "64")
                return f"{album}@{size} for {session['viewed']}"

            worker = Worker(render, name="thumbnailer")
            worker.start()
            return worker.outcome()

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.get("/albums/holidays/thumbnail?size=128")),
            reply(client.get("/albums/pets/thumbnail")),
        ]


class CopiedContextThreadOutlivesRequest:
    """
    A view starts a notification thread wrapped with
    'copy_current_request_context' that only runs after the response was
    sent, reading the request and session of its (ended) request.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"
        self.response_sent = threading.Event()
        self.notifiers: list[Worker] = []

        @app.post("/comments")
        def comment() -> str:
            session["author"] = request.args["author"]

            @copy_current_request_context
            def notify() -> str:
                wait(self.response_sent)
                post = request.args["post"]
                return (
                    f"{session['author']} commented on {post}"
                    f" ({request.method} {request.path})"
                )

            notifier = Worker(notify, name="notifier")
            notifier.start()
            self.notifiers.append(notifier)
            return "comment saved"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        response = reply(client.post("/comments?author=ada&post=engines"))
        self.response_sent.set()
        return [response, [notifier.outcome() for notifier in self.notifiers]]


class StreamedWithContext:
    """
    A CSV export streams rows from a generator wrapped with
    'stream_with_context', reading request, session and 'g' while
    streaming.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"

        @app.before_request
        def load_user() -> None:
            g.user = request.headers.get("X-User", "anonymous")

        @app.get("/export.csv")
        def export() -> Any:
            session["exports"] = session.get("exports", 0) + 1

            @stream_with_context
            def rows() -> Iterator[str]:
                yield f"user,{g.user}\n"
                for n in range(int(request.args["rows"])):
                    yield f"row,{n}\n"
                yield f"exports,{session['exports']}\n"

            return app.response_class(rows(), mimetype="text/csv")

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        headers = {"X-User": "ada"}
        return [
            reply(client.get("/export.csv?rows=2", headers=headers)),
            reply(client.get("/export.csv?rows=1", headers=headers)),
        ]


class AsyncAndSyncViews:
    """
    An app with async views (run by asgiref on another thread with a copied
    context) next to ordinary sync views, exercised by the test client.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"

        @app.get("/dashboard")
        async def dashboard() -> str:
            g.user = request.args["user"]

            async def widget(name: str) -> str:
                await asyncio.sleep(0)
                return f"{name}:{request.args['user']}"

            widgets = await asyncio.gather(widget("news"), widget("mail"))
            session["visits"] = session.get("visits", 0) + 1
            return f"{g.user} {widgets} visits={session['visits']}"

        @app.get("/health")
        def health() -> str:
            return f"ok {request.path}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.get("/dashboard?user=ada")),
            reply(client.get("/health")),
            reply(client.get("/dashboard?user=ada")),
            reply(client.get("/health")),
        ]


class AsyncViewsOverlapOnThreadedServer:
    """
    Two async views in flight at once under Werkzeug's threaded server,
    each awaiting the other.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.barrier = threading.Barrier(2)

        @app.get("/quote/<symbol>")
        async def quote(symbol: str) -> str:
            g.symbol = symbol
            await asyncio.to_thread(self.barrier.wait, 5)
            return f"{g.symbol}={request.args['price']}"

    def drive(self) -> list[Any]:
        with serve(self.app) as port:
            workers = [
                Worker(
                    lambda s=symbol: http_get(port, f"/quote/{s}?price=1"),
                    name=symbol,
                )
                for symbol in ("ACME", "GLOBEX")
            ]
            for worker in workers:
                worker.start()
            return [worker.outcome() for worker in workers]


class PreservedContextWithClient:
    """
    A test uses 'with client:' and inspects request, session and 'g' of
    each request after it returned, as Flask's testing docs show.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"

        @app.post("/login/<name>")
        def login(name: str) -> str:
            session["user"] = name
            g.user = name
            return "ok"

        @app.get("/profile")
        def profile() -> str:
            g.tab = request.args["tab"]
            return f"{session['user']}/{g.tab}"

        @app.post("/switch/<name>")
        def switch(name: str) -> Any:
            session["user"] = name
            return redirect(url_for("profile", tab="switched"))

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        with client:
            login = reply(client.post("/login/ada"))
            after_login = (request.path, session["user"], g.user)
            profile = reply(client.get("/profile?tab=orders"))
            after_profile = (request.args["tab"], session["user"], g.tab)
        with client:
            # A redirect followed inside the block: both requests'
            # contexts are preserved, the last one on top.
            landed = reply(client.post("/switch/bob", follow_redirects=True))
            after_redirect = (
                request.full_path,
                session["user"],
                g.get("tab"),
            )
        return [
            login,
            after_login,
            profile,
            after_profile,
            landed,
            after_redirect,
        ]


class FakeUserInjectedOnG:
    """
    A test pushes an app context, injects a fake user on 'g' outside any
    request, and makes client requests that read it (and set their own
    per-request values in before_request).
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.before_request
        def start_timer() -> None:
            g.request_name = request.path

        @app.get("/whoami")
        def whoami() -> str:
            return f"{g.user} at {g.request_name}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        with self.app.app_context():
            g.user = "fake-admin"
            first = reply(client.get("/whoami"))
            g.user = "fake-guest"
            return [first, reply(client.get("/whoami")), g.request_name]


class SessionTransaction:
    """
    A test prepares the session with 'client.session_transaction()', as
    Flask's testing docs show, then makes requests that use it.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"

        @app.get("/theme")
        def theme() -> str:
            session["views"] = session.get("views", 0) + 1
            return f"{session['theme']} {session['views']}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        with client.session_transaction() as prepared:
            prepared["theme"] = "dark"
        first = reply(client.get("/theme"))
        with client.session_transaction() as inspected:
            views = inspected["views"]
        return [first, views, reply(client.get("/theme"))]


class RequestHandlers:
    """
    'after_this_request', 'after_request', 'teardown_request' and
    'teardown_appcontext' handlers that read request, session and 'g'.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"
        self.log: list[Any] = []

        @app.before_request
        def load_user() -> None:
            g.user = request.headers.get("X-User", "anonymous")

        @app.after_request
        def tag_response(response: Any) -> Any:
            response.headers["X-User"] = g.user
            session["last_path"] = request.path
            return response

        @app.teardown_request
        def log_request(exc: BaseException | None) -> None:
            self.log.append(
                ("request", request.path, g.user, session.get("last_path"))
            )

        @app.teardown_appcontext
        def log_app(exc: BaseException | None) -> None:
            self.log.append(("app", g.get("user")))

        @app.get("/items/<int:item>")
        def item(item: int) -> str:
            @after_this_request
            def remember(response: Any) -> Any:
                response.headers["X-Item"] = str(item)
                response.headers["X-Query"] = request.query_string.decode()
                return response

            return f"item {item} for {g.user}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        seen = []
        for user in ("ada", "bob"):
            response = client.get(
                "/items/3?ref=mail", headers={"X-User": user}
            )
            seen.append(
                (
                    reply(response),
                    response.headers["X-User"],
                    response.headers["X-Item"],
                    response.headers["X-Query"],
                )
            )
        return [seen, self.log]


class FixtureRequestContext:
    """
    As pytest-flask does: a fixture pushes 'app.test_request_context()'
    for the whole test, the test makes client requests and uses 'url_for'
    inside it, and the fixture pops it again.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"

        @app.before_request
        def load_user() -> None:
            g.user = request.headers.get("X-User", "anonymous")

        @app.get("/me")
        def me() -> str:
            session["seen"] = session.get("seen", 0) + 1
            return f"{g.user} seen={session['seen']}"

    def drive(self) -> list[Any]:
        ctx = self.app.test_request_context()
        ctx.push()  # the fixture's setup
        try:
            client = self.app.test_client()
            return [
                reply(client.get("/me", headers={"X-User": "ada"})),
                url_for("me"),
                reply(client.get("/me", headers={"X-User": "bob"})),
                reply(client.get("/me")),
                request.path,
            ]
        finally:
            ctx.pop()  # the fixture's teardown


class NestedAppContextInView:
    """
    A view pushes a nested 'app.app_context()' for a maintenance task, then
    goes on with its own request and 'g'.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.get("/reindex")
        def reindex() -> str:
            g.user = request.args["user"]
            # Read before: from Flask 3.2 a nested app context hides the
            # request.
            scope = request.args["scope"]
            with current_app.app_context():
                g.scratch = "index"
                inner = f"{scope}/{g.scratch}"
            return f"{inner} by {g.user}, scratch={'scratch' in g}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.get("/reindex?user=ada&scope=all")),
            reply(client.get("/reindex?user=bob&scope=docs")),
        ]


class BackgroundThreadWithItsOwnAppContext:
    """
    A view hands plain values to a background thread that pushes its own
    app context and outlives the request.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.response_sent = threading.Event()
        self.exporters: list[Worker] = []

        @app.post("/exports")
        def start_export() -> str:
            flask_app = current_app._get_current_object()  # type: ignore[attr-defined]
            user = request.headers["X-User"]

            def export() -> str:
                wait(self.response_sent)
                with flask_app.app_context():
                    g.user = user
                    return f"{current_app.name} exported for {g.user}"

            exporter = Worker(export, name="exporter")
            exporter.start()
            self.exporters.append(exporter)
            return "export started"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        response = reply(client.post("/exports", headers={"X-User": "ada"}))
        self.response_sent.set()
        return [response, [exporter.outcome() for exporter in self.exporters]]


class TestNoRaceThreadsAndStreams:
    def test_norace_copied_context_thread_joined(self):
        """A thread running with 'copy_current_request_context' inside the
        request is not reported."""
        run = run_bare_and_guarded(CopiedContextThreadJoined)

        assert [
            (200, b"holidays@128 for holidays"),
            (200, b"pets@64 for pets"),
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    def test_norace_copied_context_thread_outlives_request(self):
        """A thread with 'copy_current_request_context' that runs after its
        request ended is not reported."""
        run = run_bare_and_guarded(CopiedContextThreadOutlivesRequest)

        assert [
            (200, b"comment saved"),
            ["ada commented on engines (POST /comments)"],
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    def test_norace_stream_with_context(self):
        """A generator wrapped with 'stream_with_context' reading request,
        session and 'g' while streaming is not reported."""
        run = run_bare_and_guarded(StreamedWithContext)

        assert [
            (200, b"user,ada\nrow,0\nrow,1\nexports,1\n"),
            (200, b"user,ada\nrow,0\nexports,2\n"),
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    def test_norace_background_thread_with_its_own_app_context(self):
        """A thread that pushes its own app context, fed plain values, is
        not reported, even after the request ended."""
        run = run_bare_and_guarded(BackgroundThreadWithItsOwnAppContext)

        assert [
            (200, b"export started"),
            ["tests.scenarios.test_norace_sanctioned exported for ada"],
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()


class TestNoRaceAsync:
    def test_norace_async_and_sync_views(self):
        """Async views run through asgiref, next to sync views on the same
        thread, are not reported."""
        run = run_bare_and_guarded(AsyncAndSyncViews)

        assert [
            (200, b"ada ['news:ada', 'mail:ada'] visits=1"),
            (200, b"ok /health"),
            (200, b"ada ['news:ada', 'mail:ada'] visits=2"),
            (200, b"ok /health"),
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    def test_norace_async_views_overlap_on_threaded_server(self):
        """Two async views in flight at once on Werkzeug's threaded server
        are not reported."""
        run = run_bare_and_guarded(AsyncViewsOverlapOnThreadedServer)

        assert [(200, b"ACME=1"), (200, b"GLOBEX=1")] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()


class TestNoRaceTestingPatterns:
    def test_norace_preserved_context_with_client(self):
        """Inspecting request, session and 'g' after a request inside
        'with client:' is not reported."""
        run = run_bare_and_guarded(PreservedContextWithClient)

        assert [
            (200, b"ok"),
            ("/login/ada", "ada", "ada"),
            (200, b"ada/orders"),
            ("orders", "ada", "orders"),
            (200, b"bob/switched"),
        ] == run.bare[:5]
        # Which of the redirect's two preserved contexts ends on top is
        # Flask's choice: the first one before Flask 3.1.2, the last since
        # (3.1.2 keeps the redirect's final state, pallets/flask#5786).
        flask_version = tuple(
            int(part)
            for part in version("flask").split(".")[:3]
            if part.isdigit()
        )
        assert (
            ("/switch/bob?", "bob", None)
            if flask_version < (3, 1, 2)
            else ("/profile?tab=switched", "bob", "switched")
        ) == run.bare[5]
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    def test_norace_fixture_pushes_and_pops_a_request_context(self):
        """Client requests inside a request context that a fixture pushes
        and pops (pytest-flask) are not reported."""
        run = run_bare_and_guarded(FixtureRequestContext)

        assert [
            (200, b"ada seen=1"),
            "/me",
            (200, b"bob seen=2"),
            (200, b"anonymous seen=3"),
            "/",
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    @needs_shared_g
    def test_norace_fake_injected_on_g_outside_requests(self):
        """Values a test sets on 'g' outside any request, read by later
        requests in the same app context, are not reported."""
        run = run_bare_and_guarded(FakeUserInjectedOnG)

        assert [
            (200, b"fake-admin at /whoami"),
            (200, b"fake-guest at /whoami"),
            "/whoami",
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    def test_norace_session_transaction(self):
        """Preparing and inspecting the session with
        'client.session_transaction()' is not reported."""
        run = run_bare_and_guarded(SessionTransaction)

        assert [(200, b"dark 1"), 1, (200, b"dark 2")] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()


class TestNoRaceHandlersAndNesting:
    def test_norace_request_handlers(self):
        """after_this_request, after_request, teardown_request and
        teardown_appcontext handlers using their request are not
        reported."""
        run = run_bare_and_guarded(RequestHandlers)

        assert [
            [
                ((200, b"item 3 for ada"), "ada", "3", "ref=mail"),
                ((200, b"item 3 for bob"), "bob", "3", "ref=mail"),
            ],
            [
                ("request", "/items/3", "ada", "/items/3"),
                ("app", "ada"),
                ("request", "/items/3", "bob", "/items/3"),
                ("app", "bob"),
            ],
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()

    def test_norace_nested_app_context_in_view(self):
        """A nested app context pushed inside a view is not reported."""
        run = run_bare_and_guarded(NestedAppContextInView)

        assert [
            (200, b"all/index by ada, scratch=False"),
            (200, b"docs/index by bob, scratch=False"),
        ] == run.bare
        assert run.bare == run.guarded
        assert [] == reports(run.violations)
        assert ["CG104"] == run.control()


class TestNoRaceGevent:
    def test_norace_gevent_greenlets_with_monkey_patching(self):
        """Concurrent requests in gevent greenlets (monkey-patched, pywsgi)
        spawning greenlets with a copied request context are not
        reported."""
        program = pathlib.Path(__file__).with_name("gevent_program.py")

        finished = subprocess.run(
            [sys.executable, str(program)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert 0 == finished.returncode, finished.stderr
        assert "internal-error" not in finished.stdout
        # The guard logs its control violations to stdout before the JSON.
        outcome = json.loads(finished.stdout.splitlines()[-1])
        assert True is outcome["patched"]
        assert [
            [200, "hello ada (ada#0)"],
            [200, "hello bob (bob#1)"],
            [200, "hello cy (cy#2)"],
        ] == outcome["bare"]
        assert outcome["bare"] == outcome["guarded"]
        assert [] == outcome["violations"]
        # The guard is live under gevent: a greenlet handed the real
        # request is reported.
        assert ["CG104", "CG104", "CG104"] == outcome["control"]
