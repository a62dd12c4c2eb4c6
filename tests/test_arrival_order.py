"""
Request tokens are numbered in arrival order, when the guard arms a
request, not when a report first needs the token.
"""

from __future__ import annotations

import threading

from flask import Flask

from flask_ctxguard import CtxGuard, RequestTag


def number(tag: RequestTag) -> int:
    """The counter part of *tag*'s token."""
    return int(tag.token.rpartition("-")[2], 16)


class TestArrivalOrder:
    def test_earlier_request_has_the_lower_number(self):
        """
        A request that started first keeps the lower number although the
        later one's token was made first.
        """
        app = Flask("order")
        app.config["CTXGUARD_MODE"] = "log"
        guard = CtxGuard(app)
        first_in, second_done = threading.Event(), threading.Event()
        tags: dict[str, RequestTag] = {}

        @app.get("/first")
        def first() -> str:
            first_in.set()
            assert second_done.wait(timeout=30)
            tag = guard.current()
            assert tag is not None
            tags["first"] = tag
            return "first"

        @app.get("/second")
        def second() -> str:
            tag = guard.current()
            assert tag is not None
            tags["second"] = tag
            return "second"

        thread = threading.Thread(
            target=lambda: app.test_client().get("/first"), name="first"
        )
        thread.start()
        try:
            assert first_in.wait(timeout=30)
            app.test_client().get("/second")
        finally:
            second_done.set()
            thread.join(timeout=30)

        first_tag, second_tag = tags["first"], tags["second"]
        assert (
            first_tag.token.rpartition("-")[0]
            == (second_tag.token.rpartition("-")[0])
        )
        assert number(first_tag) < number(second_tag)

    def test_numbers_follow_requests_one_by_one(self):
        """Requests in turn get consecutive numbers, even when untagged."""
        app = Flask("order")
        app.config["CTXGUARD_MODE"] = "log"
        guard = CtxGuard(app)
        tags: list[RequestTag] = []

        @app.get("/")
        def index() -> str:
            tag = guard.current()
            assert tag is not None
            tags.append(tag)
            return "ok"

        @app.get("/quiet")
        def quiet() -> str:
            return "ok"

        client = app.test_client()
        client.get("/")
        client.get("/quiet")
        client.get("/")

        assert 2 == number(tags[1]) - number(tags[0])
