"""
Ordinary requests under real servers, several apps in one process, and the
documented structlog pattern: the guard must report nothing and change no
response.
"""

from __future__ import annotations

import contextvars
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog
from flask import (
    Flask,
    abort,
    g,
    render_template_string,
    request,
    session,
)
from flask_login import LoginManager, UserMixin, current_user
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from flask_ctxguard import CtxGuard
from tests.helpers import (
    TIMEOUT,
    Worker,
    assert_sanctioned,
    http_get,
    isolated,
    kept_request_control,
    reply,
    reports,
    run_bare_and_guarded,
    serve,
    serve_waitress,
)


class User(UserMixin):
    def __init__(self, user_id: str) -> None:
        self.id = user_id


PAGE = "{{ user }} bought {{ item }} ({{ count }} in cart, request {{ rid }})"


def shop_app(name: str, barrier: threading.Barrier | None) -> Flask:
    """
    A realistic shop: Flask-Login from a header, structlog context cleared
    and bound per request, a request-id ContextVar reset in teardown, the
    session, 'g', a template, after_request and teardown handlers.

    With *barrier*, each purchase waits until that many are in flight.
    """
    app = Flask(name)
    app.secret_key = "scenario"
    login_manager = LoginManager(app)
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar(
        "request_id"
    )

    @login_manager.request_loader
    def load_user_from_header(req: Any) -> User | None:
        user = req.headers.get("X-User")
        return User(user) if user else None

    @app.before_request
    def start_request() -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(path=request.path)
        g.request_id_token = request_id.set(
            request.headers.get("X-Request-Id", "-")
        )

    @app.after_request
    def add_request_id(response: Any) -> Any:
        response.headers["X-Request-Id"] = request_id.get()
        return response

    @app.teardown_request
    def reset_request_id(exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id.reset(token)

    @app.teardown_appcontext
    def close_resources(exc: BaseException | None) -> None:
        g.pop("cart_cache", None)

    @app.errorhandler(404)
    def not_found(error: Any) -> tuple[str, int]:
        return f"no {request.view_args or request.path} here", 404

    @app.get("/buy/<item>")
    def buy(item: str) -> str:
        if item == "unicorn":
            abort(404)
        if barrier is not None:
            barrier.wait(TIMEOUT)
        g.cart_cache = [*session.get("cart", []), item]
        session["cart"] = g.cart_cache
        user = current_user.id if current_user.is_authenticated else "guest"
        return render_template_string(
            PAGE,
            user=user,
            item=item,
            count=len(session["cart"]),
            rid=request_id.get(),
        )

    return app


class ShopOnThreadedServer:
    """
    Three shoppers in flight at once under Werkzeug's threaded server,
    then a few more requests.
    """

    def __init__(self) -> None:
        self.app = shop_app(__name__, threading.Barrier(3))

    def drive(self) -> list[Any]:
        with serve(self.app) as port:

            def buy(user: str, item: str) -> tuple[int, bytes]:
                headers = {"X-User": user, "X-Request-Id": f"{user}-1"}
                return http_get(port, f"/buy/{item}", headers)

            shoppers = [
                Worker(lambda u=user, i=item: buy(u, i), name=user)
                for user, item in (
                    ("ada", "book"),
                    ("bob", "lamp"),
                    ("cy", "pen"),
                )
            ]
            for shopper in shoppers:
                shopper.start()
            return [shopper.outcome() for shopper in shoppers]


class ShopOnWaitress:
    """
    Two worker threads of waitress serve two rounds of two concurrent
    shoppers, so each thread serves request after request.
    """

    def __init__(self) -> None:
        self.app = shop_app(__name__, threading.Barrier(2))

    def drive(self) -> list[Any]:
        def buy(port: int, user: str, item: str, round_: str) -> Any:
            headers = {"X-User": user, "X-Request-Id": f"{user}-{round_}"}
            return http_get(port, f"/buy/{item}", headers)

        seen = []
        with serve_waitress(self.app, threads=2) as port:
            for round_ in ("1", "2"):
                shoppers = [
                    Worker(
                        lambda u=user, i=item, r=round_: buy(port, u, i, r),
                        name=user,
                    )
                    for user, item in (("ada", "book"), ("bob", "lamp"))
                ]
                for shopper in shoppers:
                    shopper.start()
                seen.append([shopper.outcome() for shopper in shoppers])
        return seen


class ShopOnPooledThreads:
    """
    A 2-thread pool standing in for a gthread server: test-client requests
    of two shoppers, two at a time, the same threads serving them all.
    """

    def __init__(self) -> None:
        self.app = shop_app(__name__, threading.Barrier(2))

    def drive(self) -> list[Any]:
        clients = {
            "ada": self.app.test_client(),
            "bob": self.app.test_client(),
        }

        def buy(user: str, item: str) -> tuple[int, bytes]:
            headers = {"X-User": user, "X-Request-Id": f"{user}-{item}"}
            return reply(clients[user].get(f"/buy/{item}", headers=headers))

        seen = []
        with ThreadPoolExecutor(2, thread_name_prefix="gthread") as pool:
            for ada_item, bob_item in (("book", "lamp"), ("pen", "mug")):
                futures = [
                    pool.submit(buy, "ada", ada_item),
                    pool.submit(buy, "bob", bob_item),
                ]
                seen.append([f.result(TIMEOUT) for f in futures])
        return seen


class StructlogClearThenBind:
    """
    structlog's documented Flask pattern, verbatim from its docs: at the
    start of every request 'clear_contextvars()', then
    'bind_contextvars(view=..., request_id=..., peer=...)'; the test client
    on one pooled worker thread serves every request.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.request_ids = iter(range(1, 100))

        @app.before_request
        def bind_request() -> None:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(
                view=request.path,
                # The docs use uuid4(); a counter keeps responses comparable.
                request_id=str(next(self.request_ids)),
                peer=request.access_route[0],
            )

        @app.get("/login/<name>")
        def login(name: str) -> str:
            structlog.contextvars.bind_contextvars(user=name)
            return log_context()

        @app.get("/home")
        def home() -> str:
            return log_context()

        def log_context() -> str:
            context = structlog.contextvars.get_contextvars()
            return json.dumps(context, sort_keys=True)

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        with ThreadPoolExecutor(1, thread_name_prefix="worker") as pool:
            return [
                pool.submit(lambda p=p: reply(client.get(p))).result(TIMEOUT)
                for p in ("/login/ada", "/home", "/home")
            ]


class SeveralAppsInOneProcess:
    """
    Three apps mounted with Werkzeug's DispatcherMiddleware and served by
    waitress on one worker thread: a guarded shop, a guarded billing app
    that the shop also calls in-process, and an unguarded status app.
    """

    def __init__(self) -> None:
        self.app = shop_app("shop", None)
        self.billing = billing = Flask("billing")
        billing.secret_key = "billing"
        self.status = status = Flask("status")
        tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")

        @billing.before_request
        def select_tenant() -> None:
            # The process's logging convention, in every app: a fresh
            # structlog context per request.
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(view=request.path)
            g.tenant_token = tenant.set(request.headers.get("X-Tenant", "-"))

        @billing.teardown_request
        def reset_tenant(exc: BaseException | None) -> None:
            tenant.reset(g.pop("tenant_token"))

        @billing.get("/invoice/<item>")
        def invoice(item: str) -> str:
            session["invoices"] = session.get("invoices", 0) + 1
            return f"invoice for {item} of {tenant.get()}"

        @status.get("/")
        def health() -> str:
            return f"up {request.path}"

        @self.app.get("/checkout/<item>")
        def checkout(item: str) -> str:
            # An in-process call to the billing app, inside the request.
            billed = billing.test_client().get(
                f"/invoice/{item}", headers={"X-Tenant": "shop"}
            )
            return f"{request.path}: {billed.get_data(as_text=True)}"

        self.wsgi = DispatcherMiddleware(
            self.app, {"/billing": billing, "/status": status}
        )

    def drive(self) -> list[Any]:
        with serve_waitress(self.wsgi, threads=1) as port:  # type: ignore[arg-type]
            return [
                http_get(port, "/buy/book", {"X-User": "ada"}),
                http_get(port, "/billing/invoice/book", {"X-Tenant": "acme"}),
                http_get(port, "/status/"),
                http_get(port, "/checkout/lamp", {"X-User": "bob"}),
                http_get(port, "/billing/invoice/lamp"),
                http_get(port, "/buy/unicorn"),
                http_get(port, "/buy/pen"),
            ]


class TestNoRaceServers:
    def test_norace_ordinary_requests_on_threaded_server(self):
        """Overlapping ordinary requests under Werkzeug's threaded server
        are not reported."""
        run = run_bare_and_guarded(ShopOnThreadedServer)

        assert [
            (200, b"ada bought book (1 in cart, request ada-1)"),
            (200, b"bob bought lamp (1 in cart, request bob-1)"),
            (200, b"cy bought pen (1 in cart, request cy-1)"),
        ] == run.bare
        assert_sanctioned(run)

    def test_norace_ordinary_requests_on_waitress(self):
        """Ordinary requests on waitress's pooled worker threads are not
        reported."""
        run = run_bare_and_guarded(ShopOnWaitress)

        assert [
            [
                (200, b"ada bought book (1 in cart, request ada-1)"),
                (200, b"bob bought lamp (1 in cart, request bob-1)"),
            ],
            [
                (200, b"ada bought book (1 in cart, request ada-2)"),
                (200, b"bob bought lamp (1 in cart, request bob-2)"),
            ],
        ] == run.bare
        assert_sanctioned(run)

    def test_norace_ordinary_requests_on_pooled_threads(self):
        """Ordinary test-client requests served by a pool of reused threads
        are not reported."""
        run = run_bare_and_guarded(ShopOnPooledThreads)

        assert [
            [
                (200, b"ada bought book (1 in cart, request ada-book)"),
                (200, b"bob bought lamp (1 in cart, request bob-lamp)"),
            ],
            [
                (200, b"ada bought pen (2 in cart, request ada-pen)"),
                (200, b"bob bought mug (2 in cart, request bob-mug)"),
            ],
        ] == run.bare
        assert_sanctioned(run)

    def test_norace_structlog_clear_then_bind(self):
        """structlog context cleared, then bound, at every request start
        is not reported."""
        run = run_bare_and_guarded(StructlogClearThenBind)

        assert [
            (
                200,
                b'{"peer": "127.0.0.1", "request_id": "1", "user": "ada",'
                b' "view": "/login/ada"}',
            ),
            (
                200,
                b'{"peer": "127.0.0.1", "request_id": "2", "view": "/home"}',
            ),
            (
                200,
                b'{"peer": "127.0.0.1", "request_id": "3", "view": "/home"}',
            ),
        ] == run.bare
        assert_sanctioned(run)


class TestNoRaceSeveralApps:
    def test_norace_several_apps_in_one_process(self):
        """Two guarded apps and an unguarded one, mounted together and
        calling each other on one worker thread, are not reported."""
        bare = isolated(SeveralAppsInOneProcess().drive)
        program = SeveralAppsInOneProcess()
        # One extension object, initialised on each app (app factories).
        guard = CtxGuard()
        for app in (program.app, program.billing):
            app.config["CTXGUARD_MODE"] = "log"
            guard.init_app(app)

        observed = isolated(program.drive)

        assert [
            (200, b"ada bought book (1 in cart, request -)"),
            (200, b"invoice for book of acme"),
            (200, b"up /"),
            (200, b"/checkout/lamp: invoice for lamp of shop"),
            (200, b"invoice for lamp of -"),
            (404, b"no {'item': 'unicorn'} here"),
            (200, b"guest bought pen (1 in cart, request -)"),
        ] == bare
        assert bare == observed
        assert [] == reports(guard.violations)
        assert ["CG104", "CG104"] == [
            *kept_request_control(program.app, guard),
            *kept_request_control(program.billing, guard),
        ]
