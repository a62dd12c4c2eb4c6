"""
Writes to a request's own ``g`` from outside its context, and the order in
which an escaped ``g`` class learns a name.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
from flask import Flask, copy_current_request_context, g

from flask_ctxguard import CtxGuard
from flask_ctxguard._guard import g_escape
from flask_ctxguard._guard.g_escape import is_escaped
from tests.helpers import TIMEOUT


def _app() -> tuple[Flask, CtxGuard]:
    app = Flask("g_writes")
    app.config["CTXGUARD_MODE"] = "log"
    return app, CtxGuard(app)


def in_a_thread(work: Any) -> None:
    """Run *work* in a thread of its own, which has no context."""
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=TIMEOUT)


def found(guard: CtxGuard) -> list[tuple[str, str | None]]:
    return [
        (v.code, v.origin.path if v.origin else None) for v in guard.violations
    ]


class TestLateWrites:
    def test_a_new_name_written_after_the_request_is_cg102(self):
        """A thread that adds a name to a kept g after its request ended
        is reported as CG102, at the write."""
        app, guard = _app()
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            g.user = "ada"
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return "kept"

        app.test_client().get("/keep")

        def write() -> None:
            kept[0].late = "written"

        in_a_thread(write)

        assert [("CG102", "/keep")] == found(guard)
        assert "test_g_writes.py" in (guard.violations[0].access_site or "")

    def test_a_write_during_another_request_is_cg103(self):
        """A kept g written while another request is handled is CG103."""
        app, guard = _app()
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            g.user = "ada"
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return "kept"

        @app.get("/other")
        def other() -> str:
            kept[0].note = "from another request"
            return "other"

        client = app.test_client()
        client.get("/keep")
        client.get("/other")

        assert [("CG103", "/keep")] == found(guard)

    def test_a_g_kept_after_teardown_is_checked_on_write(self):
        """A g kept by a teardown_appcontext function (never switched to
        its escaped class) is CG102 when a thread adds, replaces or
        deletes a name of it: the fast path checks the writes of a g
        whose request ended."""
        app, guard = _app()
        kept: list[Any] = []

        @app.teardown_appcontext
        def keep_g(exc: BaseException | None) -> None:
            kept.append(g._get_current_object())  # type: ignore[attr-defined]

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            return "ok"

        app.test_client().get("/")
        switched = is_escaped(kept[0])

        def write() -> None:
            kept[0].late = 1
            kept[0].user = "bob"
            del kept[0].late

        in_a_thread(write)

        assert False is switched
        assert [("CG102", "/")] * 3 == found(guard)
        assert {"test_g_writes.py"} == {
            (v.access_site or "").partition(":")[0].rpartition("/")[2]
            for v in guard.violations
        }

    def test_teardown_writing_its_own_g_is_silent(self):
        """A teardown_appcontext function that writes and deletes names of
        its own g, after the request retired, is not reported."""
        app, guard = _app()

        @app.teardown_appcontext
        def note_done(exc: BaseException | None) -> None:
            g.done = True
            g.user = "nobody"
            del g.done

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            return "ok"

        app.test_client().get("/")

        assert [] == found(guard)

    def test_writes_inside_the_request_are_silent(self):
        """The request's own writes, through the proxy or a reference it
        holds, and a copy_current_request_context thread's, are silent;
        the g was escaped (held), so the thread's write was checked."""
        app, guard = _app()
        kept: list[Any] = []

        @app.get("/")
        def index() -> str:
            raw = g._get_current_object()  # type: ignore[attr-defined]
            kept.append(raw)
            g.user = "ada"
            raw.theme = "dark"
            raw.user = "bob"  # replaces while kept: escapes

            @copy_current_request_context
            def work() -> None:
                g.extra = 1
                raw.other = 2

            in_a_thread(work)
            return "ok"

        app.test_client().get("/")

        assert [] == found(guard)
        assert True is is_escaped(kept[0])


class TestLearningOrder:
    def test_a_holder_reading_while_a_name_is_learnt_is_checked(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        """A thread reading an escaped g's new name while the request's
        write is still making it a checked property is reported: the
        property is installed before the value is stored and the name is
        published."""
        app, guard = _app()
        reached = threading.Event()
        read = threading.Event()
        seen: list[Any] = []
        make = g_escape._checked_g_attribute

        def paused(name: str, inherited: Any) -> property:
            # The switch point: the writer is learning 'fresh'.
            if name == "fresh":
                reached.set()
                read.wait(TIMEOUT)
            return make(name, inherited)

        monkeypatch.setattr(g_escape, "_checked_g_attribute", paused)

        @app.get("/")
        def index() -> str:
            raw = g._get_current_object()  # type: ignore[attr-defined]
            g.user = "ada"
            g.user = "bob"  # replaced while held: escaped

            def holder() -> None:
                reached.wait(TIMEOUT)
                seen.append(getattr(raw, "fresh", "missing"))
                read.set()

            thread = threading.Thread(target=holder)
            thread.start()
            raw.fresh = "value"
            thread.join(timeout=TIMEOUT)
            return "ok"

        app.test_client().get("/")

        assert [("CG104", "/")] == found(guard)
        assert ["missing"] == seen

    def test_a_read_that_missed_the_property_is_checked_by_getattr(self):
        """The interleaving the stress test below caught under load: a
        holder's lookup finds neither a property nor a value, then, before
        Python calls the class's __getattr__, the request's thread makes
        the name a checked property. That __getattr__ (called here as
        Python calls it) must still check the read: no property did."""
        app, guard = _app()
        kept: list[Any] = []

        @app.get("/")
        def index() -> str:
            raw = g._get_current_object()  # type: ignore[attr-defined]
            g.user = "ada"
            g.user = "bob"  # replaced while held: escaped
            kept.append(raw)

            def holder() -> None:
                # The name is a checked property of the class by now.
                assert isinstance(type(raw).__dict__.get("user"), property), (
                    "user is no checked property"
                )
                with pytest.raises(AttributeError):
                    type(raw).__getattr__(raw, "fresh")
                type(raw).__getattr__(raw, "user")

            in_a_thread(holder)
            return "ok"

        app.test_client().get("/")

        assert [("CG104", "/"), ("CG104", "/")] == found(guard)

    def test_a_property_read_of_a_missing_value_is_checked_once(self):
        """A checked property that finds no value checks the read and
        leaves the __getattr__ Python calls next alone: one report."""
        app, guard = _app()

        @app.get("/")
        def index() -> str:
            raw = g._get_current_object()  # type: ignore[attr-defined]
            g.user = "ada"
            g.user = "bob"  # replaced while held: escaped
            del g.user  # the property stays; the value is gone

            in_a_thread(lambda: getattr(raw, "user", None))
            return "ok"

        app.test_client().get("/")

        assert [("CG104", "/")] == found(guard)


class TestLearningUnderStress:
    def test_every_holder_read_is_checked_while_names_are_learnt(self):
        """With the interpreter switching threads every microsecond, four
        holders reading names the request is adding to its escaped g have
        every read checked: as many CG104 reports as reads."""
        app, guard = _app()
        names = [f"name{n}" for n in range(40)]
        reads: list[int] = []
        start = threading.Barrier(5)

        @app.get("/")
        def index() -> str:
            raw = g._get_current_object()  # type: ignore[attr-defined]
            g.user = "ada"
            g.user = "bob"  # replaced while held: escaped

            def holder() -> None:
                start.wait(TIMEOUT)
                for name in names:
                    getattr(raw, name, None)
                reads.append(len(names))

            threads = [threading.Thread(target=holder) for _ in range(4)]
            for thread in threads:
                thread.start()
            start.wait(TIMEOUT)
            for name in names:
                setattr(raw, name, name)
            for thread in threads:
                thread.join(TIMEOUT)
            return "ok"

        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        try:
            app.test_client().get("/")
        finally:
            sys.setswitchinterval(interval)

        assert [40] * 4 == reads
        assert 160 == len(guard.violations)
        assert {"CG104"} == {v.code for v in guard.violations}
