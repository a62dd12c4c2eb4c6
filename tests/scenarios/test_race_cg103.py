"""
CG103 cross-request-access: programs in which one request uses the request
or session object of another request, ended or still in flight.
"""

from __future__ import annotations

import threading
from typing import Any

from flask import Flask, g, request, session

from tests.helpers import (
    Worker,
    drive_in_raise_mode,
    http_get,
    last_user_frame,
    line_of,
    reply,
    run_bare_and_guarded,
    serve,
    wait,
)


class BackLinkFromLastRequest:
    """
    A 'back' link remembers the last request per client address; everyone
    behind one proxy address shares it, so bob's back link shows alice's
    private search.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.last_seen: dict[str, Any] = {}

        @app.before_request
        def remember() -> None:
            previous = self.last_seen.get(request.remote_addr or "")
            if previous is not None:
                g.back = previous.full_path  # <- CG103 full_path
            self.last_seen[request.remote_addr or ""] = (
                request._get_current_object()  # type: ignore[attr-defined]
            )

        @app.get("/search")
        def search() -> str:
            return f"results for {request.args['q']}"

        @app.get("/settings")
        def settings() -> str:
            return f"back to {g.get('back', '/')}"

    def drive(self) -> list[Any]:
        alice, bob = self.app.test_client(), self.app.test_client()
        return [
            reply(alice.get("/search?q=divorce+lawyer")),
            reply(bob.get("/settings")),
        ]


class CartServiceBoundToFirstSession:
    """
    A cart service built lazily by the first request keeps that request's
    session: every later shopper sees (and fills) the first one's cart.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"
        self.service: CartService | None = None

        def cart_service() -> CartService:
            if self.service is None:
                self.service = CartService(
                    session._get_current_object()  # type: ignore[attr-defined]
                )
            return self.service

        @app.post("/cart/<item>")
        def add(item: str) -> str:
            cart_service().add(item)
            return "added"

        @app.get("/cart")
        def show() -> str:
            return ", ".join(cart_service().items()) or "empty"

    def drive(self) -> list[Any]:
        alice, bob = self.app.test_client(), self.app.test_client()
        return [
            reply(alice.post("/cart/ring")),
            reply(bob.get("/cart")),
        ]


class CartService:
    def __init__(self, store: Any) -> None:
        self.store = store

    def add(self, item: str) -> None:
        self.store["cart"] = [*self.store.get("cart", []), item]

    def items(self) -> list[str]:
        return list(self.store.get("cart", []))  # <- CG103 session


class CurrentRequestGlobalOnThreadedServer:
    """
    A 'current request' module global under Werkzeug's threaded server:
    while alice's request is in flight, bob's request reads the global and
    greets alice.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.current: dict[str, Any] = {}
        self.bob_waiting = threading.Event()
        self.alice_stored = threading.Event()
        self.bob_done = threading.Event()

        @app.before_request
        def track() -> None:
            self.current["request"] = request._get_current_object()  # type: ignore[attr-defined]

        @app.get("/hello")
        def hello() -> str:
            if request.headers["X-User"] == "alice":
                self.alice_stored.set()
                wait(self.bob_done)
                return "hello alice"
            self.bob_waiting.set()
            wait(self.alice_stored)
            try:
                user = self.current["request"].headers["X-User"]
            finally:
                self.bob_done.set()
            return f"hello {user}"

    def drive(self) -> list[Any]:
        with serve(self.app) as port:

            def get(user: str) -> tuple[int, bytes]:
                return http_get(port, "/hello", {"X-User": user})

            bob = Worker(lambda: get("bob"), name="bob")
            bob.start()
            wait(self.bob_waiting)
            alice = Worker(lambda: get("alice"), name="alice")
            alice.start()
            return [alice.outcome(), bob.outcome()]


class TestRaceCG103:
    def test_race_back_link_shows_another_users_search(self):
        """A request reading the remembered request of another client is
        CG103; on plain Flask bob sees alice's search."""
        run = run_bare_and_guarded(BackLinkFromLastRequest)

        assert [
            (200, b"results for divorce lawyer"),
            (200, b"back to /search?q=divorce+lawyer"),
        ] == run.bare
        assert run.bare == run.guarded
        assert ["CG103"] == run.codes
        violation = run.violations[0]
        assert ("request", "/search", "/settings") == (
            violation.subject,
            violation.origin.path,
            violation.accessor.path,
        )

    def test_race_cart_of_the_first_shopper(self):
        """A request using another request's session is CG103; on plain
        Flask bob sees alice's cart."""
        run = run_bare_and_guarded(CartServiceBoundToFirstSession)

        assert [(200, b"added"), (200, b"ring")] == run.bare
        assert run.bare == run.guarded
        assert ["CG103"] == run.codes
        violation = run.violations[0]
        assert ("session", "/cart/ring", "/cart") == (
            violation.subject,
            violation.origin.path,
            violation.accessor.path,
        )

    def test_race_in_flight_request_read_by_another(self):
        """On a threaded server, a request reading another in-flight
        request is CG103; on plain Flask bob is greeted as alice."""
        run = run_bare_and_guarded(CurrentRequestGlobalOnThreadedServer)

        assert [(200, b"hello alice"), (200, b"hello alice")] == run.bare
        assert run.bare == run.guarded
        assert ["CG103"] == run.codes
        violation = run.violations[0]
        assert "request" == violation.subject
        assert violation.origin.token != violation.accessor.token
        assert "while that request was still in flight" in violation.message


class TestRaceCG103RaiseMode:
    def test_race_raises_at_the_read_of_another_request(self):
        """In raise mode the read of the remembered request raises in the
        second request, at that line."""
        program = BackLinkFromLastRequest()
        program.app.testing = True
        error = drive_in_raise_mode(program)

        assert "CG103" == error.violation.code
        assert (line_of(__file__, "# <- CG103 full_path"), "remember") == (
            last_user_frame(error.__traceback__, __file__)
        )

    def test_race_raises_in_the_service_using_another_session(self):
        """In raise mode the cart service's read of the first shopper's
        session raises at that line."""
        program = CartServiceBoundToFirstSession()
        program.app.testing = True
        error = drive_in_raise_mode(program)

        assert "CG103" == error.violation.code
        assert (line_of(__file__, "# <- CG103 session"), "items") == (
            last_user_frame(error.__traceback__, __file__)
        )
