"""
The guard's own bookkeeping is free of races.

Each race test forces the interleaving that lost an update: a dict the
guard reads (``app.extensions``, ``app.before_request_funcs``) is replaced
by one whose lookup stops the first thread right after its read, until a
second thread has made the same read or a short time has passed. Without
the guard's lock both threads read the same old state; with it, the second
waits for the first to finish. The stress test runs the bookkeeping with a
switch interval of a microsecond and many threads.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator

import pytest
from flask import Flask, g, session

from flask_ctxguard import CtxGuard
from flask_ctxguard._guard.lifecycle import install_fallback
from flask_ctxguard._guard.state import EXTENSION_KEY, AppState
from tests.helpers import TIMEOUT

#: How long the first thread waits, inside its read, for a second thread
#: that its lock keeps out: long enough to let an unlocked one in.
WINDOW = 0.5


class PausingDict(dict):
    """
    A dict whose ``get(key)`` stops the first caller after its read until
    a second caller has read too (or `WINDOW` passed).
    """

    def __init__(self, data, key):
        super().__init__(data)
        self.key = key
        self.first_read = threading.Event()
        self.both_read = threading.Barrier(2)

    def get(self, key, default=None):
        value = super().get(key, default)
        if key == self.key:
            self.first_read.set()
            # A broken barrier: the second reader was kept out by a lock.
            with contextlib.suppress(threading.BrokenBarrierError):
                self.both_read.wait(WINDOW)
        return value


class TestInstall:
    def test_two_threads_installing_on_one_app_share_one_state(self):
        """Two threads installing the plugin's guard on one app at once
        get the same AppState, so its violations go to one reporter."""
        app = Flask("race")
        app.extensions = PausingDict(app.extensions, EXTENSION_KEY)
        guard = CtxGuard()
        states: list[AppState] = []

        def install():
            states.append(guard._install(app, auto=True))

        first = threading.Thread(target=install)
        first.start()
        assert app.extensions.first_read.wait(TIMEOUT)
        second = threading.Thread(target=install)
        second.start()
        first.join(TIMEOUT)
        second.join(TIMEOUT)

        assert 2 == len(states)
        assert states[0] is states[1]
        assert states[0] is app.extensions[EXTENSION_KEY]


class TestFallback:
    def test_fallback_removed_while_another_thread_needs_it(self):
        """The fallback removing itself (its request was armed) while
        another request's close installs it again leaves it installed:
        the two read-modify-writes of the before_request list do not
        interleave."""
        app = Flask("race")
        app.secret_key = "s"
        CtxGuard(app)
        state = app.extensions[EXTENSION_KEY]
        (fallback,) = app.before_request_funcs[None]
        app.before_request_funcs = PausingDict(app.before_request_funcs, None)

        def remove():
            # A request armed by its session interface: the fallback sees
            # arming at work and removes itself.
            with app.test_request_context("/"):
                session.get("x")
                fallback()

        first = threading.Thread(target=remove)
        first.start()
        assert app.before_request_funcs.first_read.wait(TIMEOUT)
        second = threading.Thread(target=install_fallback, args=(app, state))
        second.start()
        first.join(TIMEOUT)
        second.join(TIMEOUT)

        names = [f.__name__ for f in app.before_request_funcs.get(None, [])]
        assert ["ctxguard_arm_request"] == names


@pytest.fixture(name="tiny_switch_interval")
def _tiny_switch_interval() -> Iterator[None]:
    """Threads switch every microsecond: races show up if there are any."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


@pytest.mark.usefixtures("tiny_switch_interval")
class TestStress:
    def test_bookkeeping_under_constant_thread_switches(self):
        """Sixteen threads installing on the same apps and serving their
        requests at once: one state per app, every response its own, and
        no violation on correct code."""
        apps = [Flask(f"stress{n}") for n in range(4)]
        for app in apps:
            app.secret_key = "s"

            @app.get("/<name>")
            def view(name):
                g.name = name
                session["name"] = name
                return g.name

        guard = CtxGuard()
        states: dict[str, set[int]] = {app.name: set() for app in apps}
        bodies: list[tuple[str, str]] = []
        errors: list[BaseException] = []
        start = threading.Barrier(16)

        def work(n: int) -> None:
            try:
                start.wait(TIMEOUT)
                for app in apps:
                    state = guard._install(app, auto=True)
                    states[app.name].add(id(state))
                    client = app.test_client()
                    for i in range(5):
                        name = f"u{n}-{i}"
                        bodies.append((name, client.get(f"/{name}").text))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT * 4)

        assert [] == errors
        assert {app.name: 1 for app in apps} == {
            name: len(ids) for name, ids in states.items()
        }
        assert 16 * 4 * 5 == len(bodies)
        assert [] == [(want, got) for want, got in bodies if want != got]
        assert [] == guard.violations
