"""
flask_ctxguard.testing: capture_violations() and assert_no_contamination()
against real apps and real threads (hammer() is tested in test_hammer.py).
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest
from flask import Flask, g, request, session

from flask_ctxguard import CtxGuard
from flask_ctxguard.testing import (
    assert_no_contamination,
    capture_violations,
)
from tests._compat import needs_shared_g
from tests.helpers import add_g_user_views, share_g

#: Bound of every wait on a thread or an event.
TIMEOUT = 5.0


def add_views(app: Flask) -> dict[str, Any]:
    """
    Give *app* clean views and two buggy ones; return the module-level
    cache the buggy ones share, as real code keeps it.
    """
    cache: dict[str, Any] = {}

    @app.before_request
    def load_account():
        g.account = session.get("user", "anonymous")

    @app.route("/login/<name>")
    def login(name):
        session["user"] = name
        return name

    @app.route("/me")
    def me():
        return g.account

    add_g_user_views(app)

    @app.route("/remember")
    def remember():
        # The bug: "the current request" kept in a module-level cache.
        cache["request"] = request._get_current_object()  # type: ignore[attr-defined] # a proxy's method
        return request.args["u"]

    @app.route("/whoami")
    def whoami():
        return cache["request"].args["u"]

    @app.route("/g/remember")
    def remember_g():
        # The bug: this request's 'g' kept for later requests.
        cache["g"] = g._get_current_object()
        return g.account

    @app.route("/g/whoami")
    def whoami_g():
        return cache["g"].account

    return cache


@pytest.fixture(name="views")
def _views(app):
    return add_views(app)


class TestCaptureViolations:
    @needs_shared_g
    def test_several_apps(self):
        """Violations of every guarded app are collected, oldest first."""
        first, second = Flask("first"), Flask("second")
        for app in (first, second):
            app.config.update(SECRET_KEY="test", CTXGUARD_MODE="log")
            CtxGuard(app)
        add_views(first)
        cache = add_views(second)

        with capture_violations() as found:
            share_g(first)
            second.test_client().get("/remember?u=bob")
            cache["request"].args

        assert [("CG101", "first"), ("CG102", "second")] == [
            (v.code, v.app) for v in found
        ]

    def test_threads(self, app, guard, views):
        """A violation in another thread is collected too."""
        app.test_client().get("/remember?u=bob")
        worker = threading.Thread(
            target=lambda: views["request"].args, name="late-worker"
        )

        with capture_violations() as found:
            worker.start()
            worker.join(TIMEOUT)

        assert [("CG102", "late-worker")] == [
            (v.code, v.thread) for v in found
        ]

    @needs_shared_g
    def test_only_inside_the_block(self, app, guard, views):
        """Violations after the block are not collected."""
        with capture_violations() as found:
            pass
        share_g(app)

        assert [] == found
        assert ["CG101"] == [v.code for v in guard.violations]

    def test_app_already_collected(self):
        """
        A kept request used after its app was garbage-collected is still
        collected.
        """
        app = Flask("short-lived")
        app.config.update(SECRET_KEY="test", CTXGUARD_MODE="log")
        CtxGuard(app)
        cache = add_views(app)
        app.test_client().get("/remember?u=bob")
        del app
        gc.collect()

        with capture_violations() as found:
            cache["request"].args

        assert ["CG102"] == [v.code for v in found]


class TestAssertNoContamination:
    @needs_shared_g
    def test_clean_guard(self, app, guard, views):
        """A guard without violations passes; the same guard fails once it
        has one."""
        app.test_client().get("/me")

        assert_no_contamination(guard)

        share_g(app)

        with pytest.raises(
            AssertionError,
            match=r"\A1 request-context contamination finding:",
        ):
            assert_no_contamination(guard)

    @needs_shared_g
    def test_guard(self, app, guard, views):
        """A guard with a violation fails with its full report."""
        share_g(app)

        with pytest.raises(
            AssertionError,
            match=r"\A1 request-context contamination finding:\n\n"
            r"CG101 g-leak: 'g\.user' was read during GET /get ",
        ):
            assert_no_contamination(guard)

    @needs_shared_g
    def test_list(self, app, guard, views):
        """Lists of violations are checked together; two crossings of one
        bug (same code, subject and sites) are one finding, with counts."""
        share_g(app)
        share_g(app)
        first, second = guard.violations

        with pytest.raises(
            AssertionError,
            match=r"\A1 request-context contamination finding:\n\n",
        ) as info:
            assert_no_contamination([first], [second])

        assert (
            f"{first}\n  (2 accesses in 2 crossings)"
            == (str(info.value).split("\n\n", 1)[1])
        )

    @needs_shared_g
    def test_one_crossing_is_one_finding(self, app, guard, views):
        """Several accesses of one crossing (a lookup with 'in', then a
        read) are one finding, shown once with their count."""

        @app.route("/check")
        def check():
            return str("user" in g and g.user)

        client = app.test_client()
        with app.app_context():
            client.get("/set/alice")
            client.get("/check")
        first, _ = guard.violations

        with pytest.raises(
            AssertionError,
            match=r"\A1 request-context contamination finding:\n\n",
        ) as info:
            assert_no_contamination(guard)

        assert 2 == len(guard.violations)
        assert (
            f"{first}\n  (2 accesses)" == (str(info.value).split("\n\n", 1)[1])
        )

    @needs_shared_g
    def test_empty_list(self, app, guard, views):
        """An empty list passes; a list of one violation does not."""
        assert_no_contamination([])

        share_g(app)

        with pytest.raises(AssertionError, match=r"\A1 "):
            assert_no_contamination(list(guard.violations))

    @needs_shared_g
    def test_context_manager(self, app, guard, views):
        """As a context manager, it fails for a violation inside the block."""
        with pytest.raises(
            AssertionError,
            match=r"\A1 request-context contamination finding:\n\nCG101 ",
        ):
            with assert_no_contamination():
                share_g(app)

    @needs_shared_g
    def test_context_manager_clean(self, app, guard, views):
        """A clean block passes and yields the (empty) violations; the same
        block with a leak added fails."""
        with assert_no_contamination() as found:
            assert b"anonymous" == app.test_client().get("/me").data

        assert [] == found

        def leak_in_the_block() -> None:
            with assert_no_contamination():
                app.test_client().get("/me")
                share_g(app)

        with pytest.raises(AssertionError, match=r"\A1 "):
            leak_in_the_block()

    @needs_shared_g
    def test_context_manager_error(self, app, guard, views):
        """An error inside the block propagates unchanged, rather than the
        contamination that happened before it."""

        def leak_then_fail() -> None:
            with assert_no_contamination():
                share_g(app)
                raise KeyError("boom")

        with pytest.raises(KeyError, match="boom"):
            leak_then_fail()

        assert ["CG101"] == [v.code for v in guard.violations]
