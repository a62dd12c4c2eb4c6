"""
Nothing the app holds breaks a request: values whose ``__eq__``,
``__hash__``, ``__repr__``, ``__bool__``, ``__len__`` or ``__getattr__``
raise, self-referential and very large values, views that are partials,
callable instances, class-based views or wrapper loops, and ``g`` classes
with odd ``__getattr__``. Each program runs bare and guarded: in log mode
the responses are identical, and in raise mode the only exception the
guard raises is `ContaminationError`.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from typing import Any

import pytest
import structlog.testing
from flask import Flask, g, request
from flask.ctx import _AppCtxGlobals
from flask.views import MethodView

from flask_ctxguard import ContaminationError, CtxGuard
from tests._compat import needs_shared_g

# -- hostile values ---------------------------------------------------------


class HostileError(Exception):
    """What hostile objects raise: nothing the guard may let through."""


class RaisingEq:
    """Like a NumPy array or an SQLAlchemy clause: '==' raises."""

    def __eq__(self, other: object) -> bool:
        raise HostileError("__eq__")

    __hash__ = object.__hash__


class ArrayLike:
    """'==' answers an object whose truth value raises (NumPy's)."""

    class _Truth:
        def __bool__(self) -> bool:
            raise HostileError("__bool__ of a comparison")

    def __eq__(self, other: object) -> Any:
        return self._Truth()

    __hash__ = object.__hash__


class RaisingHash:
    def __hash__(self) -> int:
        raise HostileError("__hash__")


class RaisingRepr:
    def __repr__(self) -> str:
        raise HostileError("__repr__")


class RaisingBool:
    def __bool__(self) -> bool:
        raise HostileError("__bool__")


class RaisingLen:
    def __len__(self) -> int:
        raise HostileError("__len__")

    def __iter__(self) -> Any:
        raise HostileError("__iter__")


class RaisingGetattr:
    """Any missing attribute raises, and not AttributeError."""

    def __getattr__(self, name: str) -> Any:
        msg = f"__getattr__ {name}"
        raise HostileError(msg)


class RaisingItems:
    """Looks like a mapping, and its items() raises."""

    def items(self) -> Any:
        raise HostileError("items")


class LyingClass:
    """A '__class__' property that raises: isinstance() raises with it."""

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        raise HostileError("__class__")


def _self_referential() -> Any:
    looped: list[Any] = []
    looped.append(looped)
    return {"self": looped, "nested": {"loop": looped}}


def _very_large() -> Any:
    return ["x" * 1000] * 50_000


HOSTILE: dict[str, Callable[[], Any]] = {
    "raising-eq": RaisingEq,
    "array-like": ArrayLike,
    "raising-hash": RaisingHash,
    "raising-repr": RaisingRepr,
    "raising-bool": RaisingBool,
    "raising-len": RaisingLen,
    "raising-getattr": RaisingGetattr,
    "raising-items": RaisingItems,
    "lying-class": LyingClass,
    "self-referential": _self_referential,
    "very-large": _very_large,
}

# -- running a program bare and guarded -------------------------------------

Drive = Callable[[Flask], list[Any]]


def _outcome(func: Callable[[], Any]) -> Any:
    """What a call gave: its result, or the type of what it raised."""
    try:
        return func()
    except Exception as exc:  # noqa: BLE001 - the outcome is the type
        # Flask 3.2 on Python 3.11+ raises an error from a context's
        # teardown inside an exception group: the outcome is what it holds.
        while len(getattr(exc, "exceptions", ())) == 1:
            exc = exc.exceptions[0]  # type: ignore[attr-defined]
        return type(exc)


def _run(
    make: Callable[[], Flask], drive: Drive, **config: Any
) -> tuple[list[Any], CtxGuard, list[dict[str, Any]]]:
    app = make()
    app.config.update(config)
    guard = CtxGuard(app)
    with structlog.testing.capture_logs() as events:
        outcome = contextvars.Context().run(drive, app)
    return outcome, guard, events


def _assert_identical(make: Callable[[], Flask], drive: Drive) -> CtxGuard:
    """
    Run *drive* on a bare app and on guarded ones (log mode, with values
    and stacks), and check every response is the same; return the guard.
    """
    bare = contextvars.Context().run(drive, make())
    for config in (
        {"CTXGUARD_MODE": "log"},
        {
            "CTXGUARD_MODE": "log",
            "CTXGUARD_LOG_VALUES": True,
            "CTXGUARD_STACKS": True,
        },
    ):
        guarded, guard, events = _run(make, drive, **config)

        assert bare == guarded, config
        assert [] == [e for e in events if e["event"] == "internal-error"]
    return guard


def _assert_raise_mode(make: Callable[[], Flask], drive: Drive) -> list[Any]:
    """In raise mode, each request either answers as bare Flask does or
    raises ContaminationError; nothing else escapes the guard."""
    bare = contextvars.Context().run(drive, make())
    guarded, _, events = _run(
        make,
        drive,
        CTXGUARD_MODE="raise",
        CTXGUARD_LOG_VALUES=True,
        CTXGUARD_STACKS=True,
    )

    assert len(bare) == len(guarded)
    for plain, checked in zip(bare, guarded, strict=True):
        assert checked in (plain, ContaminationError)
    assert [] == [e for e in events if e["event"] == "internal-error"]
    return guarded


def _replies(app: Flask, paths: list[str]) -> list[Any]:
    app.testing = True  # exceptions reach the caller, as they do in tests
    client = app.test_client()

    def get(path: str) -> tuple[int, bytes]:
        response = client.get(path)
        return response.status_code, response.data

    return [_outcome(lambda p=path: get(p)) for path in paths]


# -- the programs -----------------------------------------------------------


def _contextvar_app(value: Callable[[], Any], *, every_request: bool) -> Any:
    """A view that sets a ContextVar to a fresh hostile value (on every
    request, or only on '/set', leaving it to the next)."""

    def make() -> Flask:
        app = Flask("hostile")
        var: contextvars.ContextVar[Any] = contextvars.ContextVar("hostile")

        @app.get("/set")
        def set_value() -> str:
            var.set(value())
            return "set"

        @app.get("/read")
        def read() -> str:
            if every_request:
                var.set(value())
            return type(var.get(None)).__name__

        return app

    return make


def _shared_g_app(value: Callable[[], Any]) -> Any:
    """A hostile value on a g shared by two requests (CG101)."""

    def make() -> Flask:
        app = Flask("hostile")

        @app.get("/set")
        def set_value() -> str:
            g.hostile = value()
            return "set"

        @app.get("/read")
        def read() -> str:
            return type(g.get("hostile")).__name__

        return app

    return make


def _drive_shared_g(app: Flask) -> list[Any]:
    app.testing = True
    client = app.test_client()
    with app.app_context():
        return [
            _outcome(lambda p=path: client.get(p).data)
            for path in ("/set", "/read", "/read")
        ]


def _drive_pairs(app: Flask) -> list[Any]:
    return _replies(app, ["/set", "/read", "/read"])


def _drive_stale_thread(app: Flask) -> list[Any]:
    """A request kept and read from a thread after it ended (CG102)."""
    app.testing = True
    kept: list[Any] = []

    @app.get("/keep")
    def keep() -> str:
        from flask import request

        kept.append(request._get_current_object())  # type: ignore[attr-defined]
        return "kept"

    client = app.test_client()
    first = _outcome(lambda: client.get("/keep").data)
    seen: list[Any] = []
    worker = threading.Thread(
        target=lambda: seen.append(_outcome(lambda: kept[0].args.get("x")))
    )
    worker.start()
    worker.join(timeout=10)
    return [first, *seen]


class TestHostileValues:
    @pytest.mark.parametrize("kind", sorted(HOSTILE))
    def test_contextvar_set_on_every_request(self, kind):
        """A ContextVar set to a new hostile value on every request
        changes no response, in log and raise mode."""
        make = _contextvar_app(HOSTILE[kind], every_request=True)

        guard = _assert_identical(make, _drive_pairs)
        _assert_raise_mode(make, _drive_pairs)

        assert [] == guard.violations

    @pytest.mark.parametrize("kind", sorted(HOSTILE))
    def test_contextvar_left_to_the_next_request(self, kind):
        """A hostile value left in a ContextVar is reported as CG106 and
        changes no response; in raise mode only ContaminationError
        escapes."""
        make = _contextvar_app(HOSTILE[kind], every_request=False)

        guard = _assert_identical(make, _drive_pairs)
        raised = _assert_raise_mode(make, _drive_pairs)

        assert {"CG106"} == {v.code for v in guard.violations}
        assert ContaminationError in raised

    @needs_shared_g
    @pytest.mark.parametrize("kind", sorted(HOSTILE))
    def test_hostile_value_on_a_shared_g(self, kind):
        """A hostile value on a g shared by requests is reported as CG101
        and changes no response."""
        make = _shared_g_app(HOSTILE[kind])

        guard = _assert_identical(make, _drive_shared_g)
        raised = _assert_raise_mode(make, _drive_shared_g)

        assert "CG101" in {v.code for v in guard.violations}
        assert ContaminationError in raised

    def test_kept_request_read_from_a_thread(self):
        """A kept request read from a thread after it ended is CG102 with a
        hostile app around it, and changes nothing."""
        make = _contextvar_app(RaisingEq, every_request=False)

        guard = _assert_identical(make, _drive_stale_thread)

        assert ["CG102"] == [v.code for v in guard.violations]


# -- hostile views ------------------------------------------------------------


def _hello(name: str = "world") -> str:
    return f"hello {name}"


class CallableView:
    """A view that is an instance with __call__."""

    __name__ = "callable_view"

    def __call__(self) -> str:
        return "called"


class ItemsView(MethodView):
    def get(self) -> str:
        return "items"


def _looping_view() -> Callable[[], str]:
    def view() -> str:
        return "looped"

    view.__wrapped__ = view  # type: ignore[attr-defined]
    return view


def _two_layer_loop() -> Callable[[], str]:
    def outer() -> str:
        return "outer"

    def inner() -> str:
        return "inner"

    outer.__wrapped__ = inner  # type: ignore[attr-defined]
    inner.__wrapped__ = outer  # type: ignore[attr-defined]
    return outer


class RaisingWrapped:
    """A view whose '__wrapped__' is a property that raises."""

    __name__ = "raising_wrapped"

    @property
    def __wrapped__(self) -> Any:
        raise HostileError("__wrapped__")

    def __call__(self) -> str:
        return "wrapped"


VIEWS: dict[str, Callable[[], Any]] = {
    "partial": lambda: functools.partial(_hello, "partial"),
    "callable-instance": CallableView,
    "class-based": lambda: ItemsView.as_view("items"),
    "wrapper-loop": _looping_view,
    "two-layer-wrapper-loop": _two_layer_loop,
    "raising-wrapped": RaisingWrapped,
    "builtin": lambda: functools.partial(str.upper, "builtin"),
}


def _view_app(view: Callable[[], Any]) -> Callable[[], Flask]:
    """An app whose view leaks a ContextVar (so that CG106 builds the
    view's site) and is *view*."""
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")

    def make() -> Flask:
        app = Flask("views")

        @app.get("/login/<name>")
        def login(name: str) -> str:
            tenant.set(name)
            return name

        app.add_url_rule("/view", "view", view())
        return app

    return make


def _drive_views(app: Flask) -> list[Any]:
    return _replies(app, ["/login/alice", "/view", "/view"])


class TestHostileViews:
    @pytest.mark.parametrize("kind", sorted(VIEWS))
    def test_view(self, kind):
        """A view that is a partial, a callable instance, a class-based
        view, a __wrapped__ loop or a builtin changes no response, and the
        leak it runs with is still reported."""
        make = _view_app(VIEWS[kind])

        guard = _assert_identical(make, _drive_views)
        _assert_raise_mode(make, _drive_views)

        assert ["CG106", "CG106"] == [v.code for v in guard.violations]
        assert "endpoint 'login'" in guard.violations[0].origin_site


# -- odd g classes ------------------------------------------------------------


class DefaultingG(_AppCtxGlobals):
    """A g whose missing attributes default to None, as some apps do."""

    def __getattr__(self, name: str) -> Any:
        return None


class RaisingG(_AppCtxGlobals):
    """A g whose missing attributes raise something else."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        msg = f"g.{name}"
        raise HostileError(msg)


class PlainG:
    """A g class that is no _AppCtxGlobals at all, with __slots__."""

    __slots__ = ("__dict__", "__weakref__")

    def get(self, name: str, default: Any = None) -> Any:
        return self.__dict__.get(name, default)


G_CLASSES: dict[str, type] = {
    "defaulting": DefaultingG,
    "raising": RaisingG,
    "plain": PlainG,
}


def _g_app(cls: type) -> Callable[[], Flask]:
    def make() -> Flask:
        app = Flask("odd_g")
        app.app_ctx_globals_class = cls

        @app.get("/set")
        def set_value() -> str:
            g.user = "alice"
            return "set"

        @app.get("/read")
        def read() -> str:
            try:
                return repr(g.user)
            except (AttributeError, HostileError) as exc:
                return type(exc).__name__

        return app

    return make


class TestOddG:
    @pytest.mark.parametrize("kind", sorted(G_CLASSES))
    def test_own_g_per_request(self, kind):
        """A g class with an odd __getattr__ changes no response."""
        make = _g_app(G_CLASSES[kind])

        guard = _assert_identical(make, _drive_pairs)
        _assert_raise_mode(make, _drive_pairs)

        assert [] == guard.violations

    @needs_shared_g
    @pytest.mark.parametrize("kind", sorted(G_CLASSES))
    def test_shared_g(self, kind):
        """A shared g of an odd class is still checked (CG101), and changes
        no response."""
        make = _g_app(G_CLASSES[kind])

        guard = _assert_identical(make, _drive_shared_g)
        _assert_raise_mode(make, _drive_shared_g)

        assert "CG101" in {v.code for v in guard.violations}


# -- request-derived text ---------------------------------------------------

FORGED = "/x%0Aforged%20line%1B[31m%E2%80%A8%C2%85"


class TestControlCharacters:
    def _leak(self) -> tuple[CtxGuard, Flask]:
        app = Flask("paths")
        app.config["CTXGUARD_MODE"] = "log"
        tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant")

        @app.before_request
        def select_tenant() -> None:
            if request.path.endswith("set"):
                tenant.set(f"tenant of {request.path}")

        @app.errorhandler(404)
        def anything(error: Exception) -> str:
            return "ok"

        return CtxGuard(app), app

    def test_control_characters_are_escaped_in_reports(self):
        """A percent-decoded newline, ESC, C1 control and line separator in
        the request path reach str(violation) and message escaped."""
        guard, app = self._leak()
        client = app.test_client()

        def run() -> None:
            client.get(FORGED + "set")
            client.get(FORGED)

        contextvars.Context().run(run)

        violation = guard.violations[0]
        text = str(violation)
        assert "CG106" == violation.code
        assert "/x\\nforged line\\x1b[31m\\u2028\\x85set" in text
        assert "/x\\nforged line\\x1b[31m\\u2028\\x85 " in violation.message
        for raw in ("\n", "\x1b", "\u2028", "\x85"):
            assert raw not in violation.message
        assert len(text.splitlines()) == text.count("\n") + 1

    def test_plain_text_is_unchanged(self):
        """Text without control characters is kept as it is (the
        positive control: the same leak on a plain path)."""
        guard, app = self._leak()
        client = app.test_client()

        def run() -> None:
            client.get("/plain/set")
            client.get("/plain")

        contextvars.Context().run(run)

        assert "GET /plain (request" in guard.violations[0].message
