"""
The per-app state: what the guard keeps for one app.
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
import weakref
from typing import Any

from flask import Flask

from flask_ctxguard._core.config import Settings
from flask_ctxguard._core.violation import Violation
from flask_ctxguard._reporting import sites as _sites
from flask_ctxguard._reporting.messages import (
    contextvar_hint,
    contextvar_leak_message,
)
from flask_ctxguard._reporting.reporter import Reporter
from flask_ctxguard._rules.cg106_roots import request_functions
from flask_ctxguard._rules.cg106_walk import reachable_ids
from flask_ctxguard._rules.contextvar_leaks import Leak
from flask_ctxguard._rules.contextvar_names import stable_name
from flask_ctxguard._rules.records import RequestRecord
from flask_ctxguard._rules.structlog_binds import bound_site
from flask_ctxguard.exceptions import ContaminationError

__all__ = [
    "EXTENSION_KEY",
    "MAX_GONE_APPS",
    "AppState",
    "prune_states",
    "state_of",
]

#: Where an app keeps its state: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "ctxguard"


class AppState:
    """
    What the guard keeps for one app, in ``app.extensions["ctxguard"]``.
    """

    def __init__(
        self,
        guard: object,
        app: Flask,
        settings: Settings,
        *,
        auto: bool = False,
    ) -> None:
        #: The `CtxGuard` that installed this state (compared by identity
        #: only: this module sits below the extension's).
        self.guard = guard
        self.settings = settings
        self.app_name = app.name
        self._app_ref = weakref.ref(app)
        self.reporter = Reporter(settings, app.name, app)
        #: Installed by the pytest plugin, not by the app: its requests
        #: are armed when they start (request_started), not by the
        #: ``before_request`` fallback.
        self.auto = auto
        #: Held while the app's ``before_request`` list is read and
        #: rebound by the arming fallback, which adds and removes itself
        #: from any request's thread.
        self.hooks_lock = threading.Lock()
        #: The guarded g class installed on the app, and the guarded
        #: session class its session interface makes (`None`: not
        #: installed): arming tells them by identity.
        self.g_class: type | None = None
        self.session_class: type | None = None
        #: Whether only a sample of requests is guarded.
        self.sampling = settings.sample_rate < 1
        #: The classes sampled requests are switched to, made once: the
        #: class registry holds its classes weakly, and nothing else
        #: would keep these between two sampled requests.
        self.sampled_classes: list[type] = []
        self.sites: dict[str | None, str | None] = {}
        self._constants: dict[
            tuple[str | None, tuple[str, ...]], frozenset[int]
        ] = {}

    def installed(
        self, *, g_class: type | None, session_class: type | None
    ) -> None:
        """Note the guarded ``g`` and session classes installed on the app."""
        self.g_class = g_class
        self.session_class = session_class

    def keep_sampled_classes(self, classes: list[type]) -> None:
        """Keep the classes sampled requests are switched to."""
        self.sampled_classes = classes

    @property
    def app(self) -> Flask | None:
        """The app, while it is alive."""
        return self._app_ref()

    def view_site(self, endpoint: str | None) -> str | None:
        """
        ``"path.py:12 in func"`` of the view serving *endpoint*, or `None`
        if it cannot be told (never raises: views can be any callable).
        """
        try:
            return self.sites[endpoint]
        except KeyError:
            pass
        try:
            site = self._find_view_site(endpoint)
        except Exception:  # noqa: BLE001 - a view the guard cannot read
            site = None
        if len(self.sites) < 4096:
            self.sites[endpoint] = site
        return site

    def _find_view_site(self, endpoint: str | None) -> str | None:
        app = self.app
        view = app.view_functions.get(endpoint) if app and endpoint else None
        if view is None:
            return None
        view = getattr(view, "view_class", view)
        # A __wrapped__ chain that loops makes inspect.unwrap raise: then
        # the outermost layer is the view's site.
        try:
            func = inspect.unwrap(view)
        except ValueError:
            func = view
        if isinstance(func, functools.partial):
            func = func.func
        code = getattr(func, "__code__", None)
        if isinstance(code, types.CodeType):
            return (
                f"{_sites.relative(code.co_filename)}:"
                f"{code.co_firstlineno} in {code.co_name}"
            )
        if not isinstance(func, type) and not inspect.isroutine(func):
            func = type(func)  # a callable instance: its class
        try:
            filename = inspect.getsourcefile(func) or "?"
            line = inspect.getsourcelines(func)[1]
        except (OSError, TypeError):
            return None
        return f"{_sites.relative(filename)}:{line} in {func.__name__}"

    def request_code_ids(
        self,
        endpoint: str | None,
        blueprints: tuple[str, ...],
        *,
        fresh: bool = False,
    ) -> frozenset[int]:
        """
        The ids of the objects that the code running for *endpoint* can
        name (see `reachable_ids`), and the app's state (its config): its
        view and the app's and blueprints'
        URL value preprocessors, ``before_request``, ``after_request`` and
        ``teardown_request`` functions, and the callbacks of its extensions
        (see `request_functions`). Cached; *fresh* walks again (a
        registry may have grown since).

        A ContextVar a request sets to such an object (``PLANS[org]``,
        ``Role.MEMBER``, structlog's ``bind_contextvars(user="-")``) is the
        very object the previous request left: the request may have set
        it itself, and CG106 stays silent.
        """
        key = (endpoint, blueprints)
        if not fresh:
            cached = self._constants.get(key)
            if cached is not None:
                return cached
        app = self.app
        functions: list[Any] = []
        if app is not None:
            functions = request_functions(app, endpoint, blueprints)
        found = reachable_ids(functions, () if app is None else (app,))
        if len(self._constants) < 1024 or key in self._constants:
            self._constants[key] = found
        return found

    def report_contextvar_leaks(
        self, record: RequestRecord, leaks: list[Leak]
    ) -> None:
        """
        Report CG106 for ContextVars *record*'s request held from start to
        end with values that earlier requests left behind.
        """
        reporter = self.reporter
        first: Violation | None = None
        for var, value, origin in leaks:
            subject = f"ContextVar {stable_name(var)}"
            if reporter.is_ignored("CG106", subject):
                continue
            try:
                violation = self._contextvar_leak(record, var, value, origin)
            except Exception as exc:  # noqa: BLE001 - never break a request
                reporter.internal_error("reporting a ContextVar leak", exc)
                continue
            reporter.report(violation, raise_now=False)
            first = first or violation
        if first is not None and reporter.raising:
            raise ContaminationError(first)

    def _contextvar_leak(
        self,
        record: RequestRecord,
        var: Any,
        value: object,
        origin: RequestRecord | None,
    ) -> Violation:
        """
        The CG106 violation of *var* holding *value*, left by *origin*
        (`None`: a request that was not sampled) for *record*'s request.
        """
        accessor_tag = record.tag()
        name = stable_name(var)
        origin_tag = origin_site = None
        if origin is not None:
            origin_tag = origin.tag()
            # The line that bound it, where the guard saw it (structlog);
            # otherwise the request during which it was set.
            origin_site = bound_site(origin, var) or _sites.during(origin_tag)
        message = contextvar_leak_message(
            name,
            origin_tag,
            accessor_tag,
            sample_rate=self.settings.sample_rate,
        )
        return self.reporter.build(
            "CG106",
            subject=f"ContextVar {name}",
            message=message,
            origin=origin_tag,
            accessor=accessor_tag,
            thread=accessor_tag.thread_name,
            origin_site=origin_site,
            access_site=_sites.during(accessor_tag),
            value=value,
            has_value=True,
            value_name=name,
            hint=contextvar_hint(name),
        )


def state_of(record: RequestRecord) -> AppState:
    """
    *record*'s app state, as the guard's own class.

    The rules see it through the `GuardState` protocol; only `AppState`
    implements it. For the slow paths: the hot path reads the attribute.
    """
    state = record.app_state
    assert isinstance(state, AppState)  # the one implementation
    return state


#: How many states of apps that are gone a guard keeps for their
#: violations.
MAX_GONE_APPS = 256


def prune_states(states: list[AppState]) -> list[AppState]:
    """
    *states* without those of apps that are gone and left no violation,
    and with at most `MAX_GONE_APPS` of the others (the newest).
    """
    gone = [s for s in states if s.app is None and s.reporter.violations]
    dropped = {id(s) for s in gone[: max(0, len(gone) - MAX_GONE_APPS)]}
    return [
        s
        for s in states
        if (s.app is not None or s.reporter.violations)
        and id(s) not in dropped
    ]
