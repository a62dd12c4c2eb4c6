"""
CG106 stays silent for ContextVars a request sets itself on every request,
whatever the identity of the value: entries of registries, module
constants, enum members, interned strings, small ints, ``None``, cached
and weakly-held objects. ``ContextVar.set`` with the very object a var
already holds is invisible in the context, so each of these looks, to a
naive comparison, like a value the previous request left.

Positive control: every program also has a 'trace' ContextVar that only
the first request sets, from its own data, and nobody resets. The guard
must report exactly that one (CG106 on 'ContextVar trace'), which shows it
compared these very requests' ContextVars and stayed silent on the rest.
"""

from __future__ import annotations

import contextvars
import dataclasses
import decimal
import enum
import functools
import sys
import types
import weakref
from typing import Any

import structlog
from flask import Blueprint, Flask, current_app, g, request, request_started

from tests.helpers import (
    http_get,
    pooled,
    run_bare_and_guarded,
    serve_waitress,
)


@dataclasses.dataclass(frozen=True)
class Plan:
    """A plan of a registry: one object per plan, shared by requests."""

    name: str


PLANS = {"acme": Plan("gold"), "initech": Plan("free")}
DEFAULT_REGION = "eu-west-1"


class Role(enum.Enum):
    """Roles, as enum members: singletons."""

    ADMIN = "admin"
    MEMBER = "member"


SETTINGS = types.SimpleNamespace(
    locales={"en": "English", "fr": "Français"}, default_locale="en"
)

trace: contextvars.ContextVar[str] = contextvars.ContextVar("trace")


def _trace_first_request() -> None:
    # The positive control: only the first request of a run (it says so
    # with a header) sets it, to its own data, and nobody resets it.
    marker = request.headers.get("X-Trace")
    if marker is not None:
        trace.set(f"trace {marker} {request.path}")


def _orgs(*orgs: str) -> list[tuple[str, dict[str, str]]]:
    first = [("/whoami", {"X-Org": orgs[0], "X-Trace": "1"})]
    return first + [("/whoami", {"X-Org": org}) for org in orgs[1:]]


class IssueExample:
    """
    An app whose before_request binds a registry's plan, the
    region header or a module constant, an enum member and an actor that
    is None for anonymous callers, on every request.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        plan: contextvars.ContextVar[Plan] = contextvars.ContextVar("plan")
        region: contextvars.ContextVar[str] = contextvars.ContextVar("region")
        role: contextvars.ContextVar[Role] = contextvars.ContextVar("role")
        actor: contextvars.ContextVar[Any] = contextvars.ContextVar("actor")

        def lookup_actor(headers: Any) -> Any:
            return headers.get("X-Actor")

        @app.before_request
        def bind_request_state() -> None:
            _trace_first_request()
            plan.set(PLANS[request.headers.get("X-Org", "acme")])
            region.set(request.headers.get("X-Region") or DEFAULT_REGION)
            role.set(Role.MEMBER)
            actor.set(lookup_actor(request.headers))

        @app.get("/whoami")
        def whoami() -> str:
            return f"{plan.get().name} {region.get()} {role.get().value}"

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("acme", "acme", "initech", "acme"))


class RegistryInConfig:
    """A tier looked up in a registry kept in 'app.config', through
    'current_app', on every request."""

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.config["TIERS"] = {"acme": ("gold", 10), "initech": ("free", 1)}
        tier: contextvars.ContextVar[tuple[str, int]] = contextvars.ContextVar(
            "tier"
        )

        @app.before_request
        def bind_tier() -> None:
            _trace_first_request()
            tier.set(current_app.config["TIERS"][request.headers["X-Org"]])

        @app.get("/whoami")
        def whoami() -> str:
            return f"tier {tier.get()[0]}"

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("acme", "acme", "initech", "initech"))


@functools.lru_cache(maxsize=64)
def load_plan(org: str) -> Plan:
    """A plan 'loaded' once per org, then served from the cache."""
    return Plan(f"plan of {org}")


class CachedLookup:
    """A plan from an 'lru_cache'd loader, bound on every request: the
    same cached object each time."""

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        plan: contextvars.ContextVar[Plan] = contextvars.ContextVar("plan")

        @app.before_request
        def bind_plan() -> None:
            _trace_first_request()
            plan.set(load_plan(request.headers["X-Org"]))

        @app.get("/whoami")
        def whoami() -> str:
            return plan.get().name

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("acme", "acme", "initech", "acme"))


class Tenant:
    """A tenant object; the registry below keeps them weakly."""

    def __init__(self, name: str) -> None:
        self.name = name


class TenantRegistry:
    """A registry object reached through the program's own state, with a
    weak cache of tenants and a settings namespace."""

    def __init__(self) -> None:
        self._tenants = {"acme": Tenant("acme"), "initech": Tenant("initech")}
        self._weak: weakref.WeakValueDictionary[str, Tenant] = (
            weakref.WeakValueDictionary(self._tenants)
        )

    def lookup(self, org: str) -> Tenant:
        return self._tenants[org]

    def cached(self, org: str) -> Tenant:
        return self._weak[org]


class RegistryObjectAndSettings:
    """Tenants from a registry object's method and its weak cache, and a
    locale from a settings namespace, on every request."""

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.registry = TenantRegistry()
        self.tenant: contextvars.ContextVar[Tenant] = contextvars.ContextVar(
            "tenant"
        )
        self.cached: contextvars.ContextVar[Tenant] = contextvars.ContextVar(
            "cached_tenant"
        )
        self.locale: contextvars.ContextVar[str] = contextvars.ContextVar(
            "locale"
        )

        @app.before_request
        def bind() -> None:
            _trace_first_request()
            org = request.headers["X-Org"]
            self.tenant.set(self.registry.lookup(org))
            self.cached.set(self.registry.cached(org))
            self.locale.set(SETTINGS.locales[SETTINGS.default_locale])

        @app.get("/whoami")
        def whoami() -> str:
            return f"{self.tenant.get().name} {self.locale.get()}"

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("acme", "acme", "initech", "initech"))


class InternedStringsAndSmallIntsUnderWaitress:
    """
    Under waitress (header and query values parsed from the socket, so
    fresh objects), a language interned with 'sys.intern' and a page size
    that is a small int, set on every request from the request's data.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        lang: contextvars.ContextVar[str] = contextvars.ContextVar("lang")
        size: contextvars.ContextVar[int] = contextvars.ContextVar("size")
        debug: contextvars.ContextVar[bool] = contextvars.ContextVar("debug")

        @app.before_request
        def bind() -> None:
            _trace_first_request()
            lang.set(sys.intern(request.args.get("lang", "en")))
            size.set(int(request.args.get("n", "20")))
            debug.set("debug" in request.args)

        @app.get("/page")
        def page() -> str:
            return f"{lang.get()} {size.get()} {debug.get()}"

    def drive(self) -> list[Any]:
        with serve_waitress(self.app, threads=1) as port:
            return [
                http_get(port, "/page?lang=fr&n=50", {"X-Trace": "1"}),
                http_get(port, "/page?lang=fr&n=50"),
                http_get(port, "/page?lang=fr&n=50&debug=1"),
            ]


class StructlogClearAndBind:
    """
    structlog's documented pattern: clear at request start, then bind
    module constants and registry entries, on every request.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.before_request
        def bind() -> None:
            structlog.contextvars.clear_contextvars()
            _trace_first_request()
            structlog.contextvars.bind_contextvars(
                region=DEFAULT_REGION,
                plan=PLANS[request.headers["X-Org"]],
                role=Role.ADMIN,
            )

        @app.get("/whoami")
        def whoami() -> str:
            context = structlog.contextvars.get_contextvars()
            return f"{context['region']} {context['plan'].name}"

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("acme", "acme", "initech", "acme"))


DONE = "request handled"
STAGES = ("received", "handled")


class SetInTeardownAndAfterRequestEveryTime:
    """
    A blueprint's after_request and teardown_request functions set
    ContextVars to constants on every request: the next request holds them
    until its own handlers set them again.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        bp = Blueprint("api", __name__)
        phase: contextvars.ContextVar[str] = contextvars.ContextVar("phase")
        stage: contextvars.ContextVar[str] = contextvars.ContextVar("stage")

        @app.before_request
        def control() -> None:
            _trace_first_request()

        @bp.after_request
        def mark_handled(response: Any) -> Any:
            stage.set(STAGES[1])
            return response

        @bp.teardown_request
        def mark_done(exc: BaseException | None) -> None:
            phase.set(DONE)

        @bp.get("/whoami")
        def whoami() -> str:
            return f"{phase.get('first')} {stage.get('first')}"

        app.register_blueprint(bp)

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("a", "a", "a"))


class ObjectsOnG:
    """A value set from a registry every request, and also kept on 'g':
    the request's own holders of it do not matter."""

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        plan: contextvars.ContextVar[Plan] = contextvars.ContextVar("plan")

        @app.before_request
        def bind() -> None:
            _trace_first_request()
            g.plan = PLANS[request.headers["X-Org"]]
            plan.set(g.plan)

        @app.get("/whoami")
        def whoami() -> str:
            return plan.get().name

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("acme", "acme", "acme"))


class SetBySignalReceiver:
    """A request_started receiver binds a registry's plan on every
    request, as extensions that listen to Flask's signals do."""

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        plan: contextvars.ContextVar[Plan] = contextvars.ContextVar("plan")

        def bind_plan(sender: Flask, **extra: Any) -> None:
            _trace_first_request()
            plan.set(PLANS[request.headers["X-Org"]])

        request_started.connect(bind_plan, app)
        # The receiver is held weakly by the signal: keep it.
        self.receiver = bind_plan

        @app.get("/whoami")
        def whoami() -> str:
            return plan.get().name

    def drive(self) -> list[Any]:
        return pooled(self.app, _orgs("acme", "acme", "initech", "acme"))


class DecimalArithmetic:
    """Prices computed with 'decimal' in some requests: the decimal module
    sets its own context variable on first use in a thread, which every
    later request of that thread holds."""

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        @app.before_request
        def control() -> None:
            _trace_first_request()

        @app.get("/price")
        def price() -> str:
            return str(decimal.Decimal("1.10") * 3)

        @app.get("/whoami")
        def whoami() -> str:
            return "nobody"

    def drive(self) -> list[Any]:
        return pooled(
            self.app,
            [
                ("/price", {"X-Trace": "1"}),
                ("/whoami", {}),
                ("/price", {}),
            ],
        )


def _assert_only_the_control(run: Any) -> None:
    # The control is held by every request after the first.
    later = len(run.bare) - 1

    assert run.bare == run.guarded
    assert [("CG106", "ContextVar trace")] * later == [
        (v.code, v.subject) for v in run.violations
    ]


class TestNoRaceCG106Resets:
    def test_norace_issue_example(self):
        """Registry entries, a module constant, an enum member and None set
        on every request are not CG106; only the control is."""
        run = run_bare_and_guarded(IssueExample)

        assert [
            (200, b"gold eu-west-1 member"),
            (200, b"gold eu-west-1 member"),
            (200, b"free eu-west-1 member"),
            (200, b"gold eu-west-1 member"),
        ] == run.bare
        _assert_only_the_control(run)

    def test_norace_registry_in_config(self):
        """A registry kept in app.config, read through current_app on every
        request, is not CG106; only the control is."""
        run = run_bare_and_guarded(RegistryInConfig)

        assert [(200, b"tier gold")] * 2 + [(200, b"tier free")] * 2 == (
            run.bare
        )
        _assert_only_the_control(run)

    def test_norace_lru_cached_lookup(self):
        """An lru_cache'd object set on every request is not CG106; only
        the control is."""
        run = run_bare_and_guarded(CachedLookup)

        assert (200, b"plan of acme") == run.bare[1]
        _assert_only_the_control(run)

    def test_norace_registry_object_weak_cache_and_settings(self):
        """A registry object's entries, its weak cache's and a settings
        namespace's values set on every request are not CG106; only the
        control is."""
        run = run_bare_and_guarded(RegistryObjectAndSettings)

        assert [(200, b"acme English")] * 2 + [
            (200, b"initech English")
        ] * 2 == run.bare
        _assert_only_the_control(run)

    def test_norace_interned_strings_and_small_ints_under_waitress(self):
        """Interned strings, small ints and booleans set from the request
        on every request under waitress are not CG106; only the control
        is."""
        run = run_bare_and_guarded(InternedStringsAndSmallIntsUnderWaitress)

        assert [(200, b"fr 50 False")] * 2 + [(200, b"fr 50 True")] == (
            run.bare
        )
        _assert_only_the_control(run)

    def test_norace_structlog_clear_then_bind_constants(self):
        """structlog's clear-then-bind of constants and registry entries on
        every request is not CG106; only the control is."""
        run = run_bare_and_guarded(StructlogClearAndBind)

        assert (200, b"eu-west-1 free") == run.bare[2]
        _assert_only_the_control(run)

    def test_norace_set_in_after_request_and_teardown_every_time(self):
        """Constants a blueprint's after_request and teardown_request set
        on every request are not CG106; only the control is."""
        run = run_bare_and_guarded(SetInTeardownAndAfterRequestEveryTime)

        assert [
            (200, b"first first"),
            (200, b"request handled handled"),
            (200, b"request handled handled"),
        ] == run.bare
        _assert_only_the_control(run)

    def test_norace_value_also_kept_on_g(self):
        """A registry entry set on every request and also kept on g is not
        CG106; only the control is."""
        run = run_bare_and_guarded(ObjectsOnG)

        assert [(200, b"gold")] * 3 == run.bare
        _assert_only_the_control(run)

    def test_norace_set_by_a_request_started_receiver(self):
        """A registry entry a request_started receiver binds on every
        request is not CG106; only the control is."""
        run = run_bare_and_guarded(SetBySignalReceiver)

        assert [(200, b"gold")] * 2 + [(200, b"free"), (200, b"gold")] == (
            run.bare
        )
        _assert_only_the_control(run)

    def test_norace_decimal_context(self):
        """The context the decimal module sets for itself is not CG106;
        only the control is."""
        run = run_bare_and_guarded(DecimalArithmetic)

        assert [(200, b"3.30"), (200, b"nobody"), (200, b"3.30")] == run.bare
        _assert_only_the_control(run)
