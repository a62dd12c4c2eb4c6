"""
Reads of a request's own ``g``: checked per attribute name.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, g, render_template_string
from flask.ctx import _AppCtxGlobals

from flask_ctxguard import CtxGuard
from flask_ctxguard._guard.g_escape import MAX_CHECKED_NAMES, is_escaped
from tests.helpers import TIMEOUT, internal_errors


def in_a_thread(work: Callable[[], Any]) -> None:
    """Run *work* in a thread of its own, which has no context."""
    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=TIMEOUT)


def _app(g_class: type | None = None) -> tuple[Flask, CtxGuard]:
    app = Flask("g_reads")
    if g_class is not None:
        app.app_ctx_globals_class = g_class
    return app, CtxGuard(app)


class TestOwnG:
    def test_reads_in_the_request_are_silent(self):
        """Every way a view reads its own g is silent, and its g is never
        switched to its escaped class; the same g handed to a thread and
        then changed is CG104 there (the positive control)."""
        app, guard = _app()
        seen: list[Any] = []
        escaped: list[bool] = []

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            g.setdefault("theme", "dark")
            values = [
                g.user,
                getattr(g, "missing", None),
                g.get("theme"),
                "user" in g,
                sorted(g),
                g.pop("theme"),
            ]
            escaped.append(is_escaped(g._get_current_object()))  # type: ignore[attr-defined]
            raw = g._get_current_object()  # type: ignore[attr-defined]
            g.user = "bob"  # changed while the thread holds it
            in_a_thread(lambda: seen.append(raw.user))
            return repr(values)

        body = app.test_client().get("/").text

        assert "['ada', None, 'dark', True, ['theme', 'user'], 'dark']" == (
            body
        )
        assert [False] == escaped
        assert ["bob"] == seen
        assert [("CG104", "g")] == [
            (v.code, v.subject) for v in guard.violations
        ]

    def test_an_unchanged_g_read_by_a_thread_in_flight_is_not_seen(self):
        """The documented limit: a thread reading a request's g while the
        request runs, before the request changes a value of it, reads
        what the request sees, and goes unreported; the same g read after
        the request ended is CG102."""
        app, guard = _app()
        seen: list[Any] = []
        kept: list[Any] = []

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            raw = g._get_current_object()  # type: ignore[attr-defined]
            kept.append(raw)
            g.tenant = "acme"  # adds a name: changes nothing seen
            in_a_thread(lambda: seen.append(raw.user))
            return "ok"

        app.test_client().get("/")
        in_flight = list(guard.violations)
        late = kept[0].user

        assert (["ada"], [], "ada") == (seen, in_flight, late)
        assert ["CG102"] == [v.code for v in guard.violations]

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param(lambda g: setattr(g, "user", "bob"), id="write"),
            pytest.param(lambda g: delattr(g, "user"), id="del"),
            pytest.param(lambda g: g.pop("user"), id="pop"),
        ],
    )
    def test_a_change_while_something_holds_g_checks_it(self, change):
        """Replacing, deleting or popping a value of a g that something
        else holds switches it to its escaped class: from then on a
        thread's read of it is CG104."""
        app, guard = _app()
        holders: list[Any] = []
        outcome: list[Any] = []

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            g.tenant = "acme"
            holders.append(g._get_current_object())  # type: ignore[attr-defined]
            change(g)
            outcome.append(is_escaped(holders[0]))
            in_a_thread(lambda: outcome.append(holders[0].tenant))
            return "ok"

        app.test_client().get("/")

        assert [True, "acme"] == outcome
        assert [("CG104", "g")] == [
            (v.code, v.subject) for v in guard.violations
        ]

    def test_a_g_nothing_holds_is_not_switched(self):
        """Writes through the proxy, new names added mid-template (as
        Flask-Login loads its user) and a template reading g leave an
        ordinary request's g on its own class, to its end."""
        app, guard = _app()
        app.secret_key = "test"
        classes: list[bool] = []

        def load_user() -> str:
            if "lazy_user" not in g:
                g.lazy_user = "ada"  # added while the template holds g
            return str(g.lazy_user)

        app.jinja_env.globals["load_user"] = load_user

        @app.teardown_appcontext
        def after(exc: BaseException | None) -> None:
            classes.append(is_escaped(g._get_current_object()))  # type: ignore[attr-defined]

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            g.user = "bob"  # replaced: nothing else holds g
            return render_template_string(
                "{{ g.user }} {{ load_user() }} {{ g.lazy_user }}"
            )

        body = app.test_client().get("/").text

        assert ("bob ada ada", [False]) == (body, classes)
        assert [] == guard.violations

    def test_flask_login_page_keeps_its_g_unchecked(self, escapes):
        """A real Flask-Login page (a request_loader, current_user read in
        a template, the user loaded mid-template) never switches its g;
        the user kept by a buggy view and read after the request is
        CG102."""
        from flask_login import LoginManager, UserMixin, current_user

        class User(UserMixin):
            def __init__(self, name: str) -> None:
                self.id = name
                self.name = name

        app, guard = _app()
        app.secret_key = "test"
        manager = LoginManager(app)
        manager.request_loader(lambda req: User(req.headers["X-User"]))
        kept: list[Any] = []

        @app.get("/orders")
        def orders() -> str:
            return render_template_string(
                "{% for _ in range(3) %}{{ current_user.name }}"
                "{{ current_user.is_authenticated }}{% endfor %}"
            )

        @app.get("/keep")
        def keep() -> str:
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return current_user.name

        client = app.test_client()
        pages = [client.get("/orders", headers={"X-User": "ada"}).text]
        pages.append(client.get("/keep", headers={"X-User": "bob"}).text)
        silent = list(guard.violations)
        late = kept[0]._login_user.name

        assert ["adaTrue" * 3, "bob"] == pages
        assert ([], "bob") == (silent, late)
        assert 1 == len(escapes)  # the kept g only, at its request's end
        assert ["CG102"] == [v.code for v in guard.violations]

    def test_a_thread_using_g_methods_or_missing_names_is_seen(self):
        """Unchanged or not, a g's get(), iteration and names it lacks,
        used from a thread while its request runs, are CG104."""
        app, guard = _app()
        seen: list[Any] = []

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            raw = g._get_current_object()  # type: ignore[attr-defined]

            def work() -> None:
                seen.append(raw.get("user"))
                seen.append(getattr(raw, "missing", None))
                seen.append(list(raw))

            in_a_thread(work)
            return "ok"

        app.test_client().get("/")

        assert ["ada", None, ["user"]] == seen
        assert ["CG104"] * 3 == [v.code for v in guard.violations]

    def test_names_added_after_the_switch_are_checked(self):
        """Once a g is switched, the names the request adds to it later
        (an attribute, setdefault) are checked too."""
        app, guard = _app()
        seen: list[Any] = []

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            raw = g._get_current_object()  # type: ignore[attr-defined]
            g.user = "bob"  # switched: raw holds it
            g.tenant = "acme"
            g.setdefault("theme", "dark")

            def work() -> None:
                seen.append(raw.tenant)
                seen.append(raw.theme)

            in_a_thread(work)
            return "ok"

        app.test_client().get("/")

        assert ["acme", "dark"] == seen
        assert ["CG104", "CG104"] == [v.code for v in guard.violations]

    def test_a_g_class_that_cannot_be_switched_never_breaks(self, events):
        """A g class that refuses a second subclass (its escaped class):
        the request goes on unbroken, the failure is reported once as the
        guard's own, and the g is left as it is."""

        class Touchy(_AppCtxGlobals):
            made = 0

            def __init_subclass__(cls, **kwargs: Any) -> None:
                Touchy.made += 1
                if Touchy.made > 1:
                    raise RuntimeError("no more subclasses")
                super().__init_subclass__(**kwargs)

        app, guard = _app(Touchy)
        kept: list[Any] = []

        @app.get("/")
        def index() -> str:
            g.user = "ada"
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            g.user = "bob"
            return str(g.user)

        response = app.test_client().get("/")

        assert (200, "bob") == (response.status_code, response.text)
        assert "bob" == kept[0].user
        assert [] == guard.violations
        assert ["checking a 'g'"] == [
            e.get("where") for e in internal_errors(events)
        ]

    def test_each_read_of_a_kept_g_is_reported_once(self):
        """A kept g read after its request, by attribute, getattr with a
        default, get and pop, is one CG102 per read."""
        app, guard = _app()
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            g.user = "ada"
            g.tenant = "acme"
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return "kept"

        app.test_client().get("/keep")
        stale = kept[0]
        values = [
            stale.user,
            getattr(stale, "never_set", None),
            stale.get("tenant"),
            stale.pop("tenant"),
        ]

        assert ["ada", None, "acme", "acme"] == values
        assert ["CG102"] * 4 == [v.code for v in guard.violations]

    def test_names_beyond_the_bound_are_still_checked(self):
        """A g class given more names than it makes properties of still
        reports a kept g's every read once, old names and new."""

        class ManyNamesG(_AppCtxGlobals):
            """A g class of its own, so the bound is this test's."""

        app, guard = _app(ManyNamesG)
        kept: list[Any] = []
        names = MAX_CHECKED_NAMES + 10

        @app.get("/many")
        def many() -> str:
            for n in range(names):
                setattr(g, f"n{n}", n)
            total = sum(getattr(g, f"n{n}") for n in range(names))
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return str(total)

        body = app.test_client().get("/many").text
        silent = list(guard.violations)
        first, last = kept[0].n0, getattr(kept[0], f"n{names - 1}")

        assert str(sum(range(names))) == body
        assert [] == silent
        assert (0, names - 1) == (first, last)
        assert ["CG102", "CG102"] == [v.code for v in guard.violations]


class DictLikeG:
    """A g class of its own: not an _AppCtxGlobals, with dict methods."""

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)

    def pop(self, name: str, default: Any = None) -> Any:
        return self.__dict__.pop(name, default)

    def setdefault(self, name: str, default: Any = None) -> Any:
        return self.__dict__.setdefault(name, default)

    def __iter__(self) -> Any:
        return iter(self.__dict__)


class SlotsOnlyG:
    """A g class without a __dict__: every read is hooked."""

    __slots__ = ("__weakref__", "user")


class DescriptorG(_AppCtxGlobals):
    """A Flask g class with a slot and a read-only property of its own."""

    __slots__ = ("tenant",)

    @property
    def region(self) -> str:
        return "eu-west"


def _descriptor_app() -> Flask:
    app = Flask("descriptors")
    app.app_ctx_globals_class = DescriptorG
    kept: list[Any] = []
    app.config["KEPT"] = kept

    @app.get("/")
    def index() -> str:
        seen: list[Any] = []
        g.tenant = "acme"
        seen.append(g.tenant)
        try:
            g.region = "us-east"
            seen.append("region set")
        except AttributeError:
            seen.append("AttributeError")
        seen.append(g.region)
        del g.tenant
        try:
            del g.tenant
        except AttributeError:
            seen.append("AttributeError")
        seen.append(getattr(g, "tenant", "gone"))
        seen.append(sorted(g))
        kept.append(g._get_current_object())  # type: ignore[attr-defined]
        return repr(seen)

    return app


class TestCustomGClasses:
    def test_g_class_with_a_slot_and_a_property(self):
        """A g class whose names are a slot and a property of its own
        answers as on plain Flask, request after request; its kept g's
        property read later is CG102."""
        bare = _descriptor_app().test_client()
        app = _descriptor_app()
        guard = CtxGuard(app)
        guarded = app.test_client()

        expected = [bare.get("/").text for _ in range(2)]
        answers = [guarded.get("/").text for _ in range(2)]
        silent = list(guard.violations)
        late = app.config["KEPT"][-1].region

        assert expected == answers
        assert "acme" in answers[0]
        assert [] == silent
        assert "eu-west" == late
        assert [("CG102", "g")] == [
            (v.code, v.subject) for v in guard.violations
        ]

    def test_dict_like_g_class(self):
        """A g class with its own dict methods reads as without the guard
        in its request, and each use of it kept is reported once."""
        app, guard = _app(DictLikeG)
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            g.user = "ada"
            g.setdefault("theme", "dark")
            values = [g.user, g.get("theme"), sorted(g), g.pop("theme")]
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return repr(values)

        body = app.test_client().get("/keep").text
        silent = list(guard.violations)
        stale = kept[0]
        values = [
            stale.user,
            stale.get("user"),
            stale.setdefault("user", "bob"),
            list(stale),
            stale.pop("user"),
        ]

        assert "['ada', 'dark', ['theme', 'user'], 'dark']" == body
        assert [] == silent
        assert ["ada", "ada", "ada", ["user"], "ada"] == values
        assert ["CG102"] * 5 == [v.code for v in guard.violations]

    def test_slots_only_g_class(self):
        """A g class without a __dict__ is checked on every read: silent
        in its request, CG102 kept."""
        app, guard = _app(SlotsOnlyG)
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            g.user = "ada"
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return str(g.user)

        body = app.test_client().get("/keep").text
        silent = list(guard.violations)
        value = kept[0].user

        assert ("ada", "ada") == (body, value)
        assert [] == silent
        assert ["CG102"] == [v.code for v in guard.violations]

    def test_deleting_a_checked_name(self):
        """A name deleted from a g is gone, as without the guard, and a
        kept g's deleted name read later is reported once."""
        app, guard = _app()
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            g.user = "ada"
            del g.user
            kept.append(g._get_current_object())  # type: ignore[attr-defined]
            return str(hasattr(g, "user"))

        body = app.test_client().get("/keep").text
        silent = list(guard.violations)
        found = hasattr(kept[0], "user")

        assert ("False", False) == (body, found)
        assert [] == silent
        assert ["CG102"] == [v.code for v in guard.violations]
