"""
The per-app state: what the guard keeps for one app.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import weakref
from typing import TYPE_CHECKING, Any

from flask import Flask

from . import _sites
from ._config import Settings
from ._contextvars import Leak
from ._report import Reporter
from ._tags import RequestRecord
from ._violations import (
    Violation,
    contextvar_hint,
    contextvar_leak_message,
)
from .exceptions import ContaminationError

if TYPE_CHECKING:
    from ._extension import CtxGuard

__all__ = ["EXTENSION_KEY", "AppState"]

#: Where an app keeps its state: ``app.extensions[EXTENSION_KEY]``.
EXTENSION_KEY = "ctxguard"


class AppState:
    """
    What the guard keeps for one app, in ``app.extensions["ctxguard"]``.
    """

    def __init__(
        self, guard: CtxGuard, app: Flask, settings: Settings
    ) -> None:
        self.guard = guard
        self.settings = settings
        self.app_name = app.name
        self._app_ref = weakref.ref(app)
        self.reporter = Reporter(settings, app.name, app)
        #: Installed by the pytest plugin, not by the app: its requests
        #: are armed when they start (request_started), not by the
        #: ``before_request`` fallback.
        self.auto = False
        #: The guarded g class installed on the app, and the guarded
        #: session class its session interface makes (`None`: not
        #: installed): arming tells them by identity.
        self.g_class: type | None = None
        self.session_class: type | None = None
        #: Whether only a sample of requests is guarded.
        self.sampling = settings.sample_rate < 1
        self.sites: dict[str | None, str | None] = {}
        self._constants: dict[
            tuple[str | None, tuple[str, ...]], frozenset[int]
        ] = {}

    @property
    def app(self) -> Flask | None:
        """The app, while it is alive."""
        return self._app_ref()

    def view_site(self, endpoint: str | None) -> str | None:
        """``"path.py:12 in func"`` of the view serving *endpoint*."""
        try:
            return self.sites[endpoint]
        except KeyError:
            pass
        site = None
        app = self.app
        view = app.view_functions.get(endpoint) if app and endpoint else None
        if view is not None:
            view = getattr(view, "view_class", view)
            func = inspect.unwrap(view)
            code = getattr(func, "__code__", None)
            if code is not None:
                site = (
                    f"{_sites.relative(code.co_filename)}:"
                    f"{code.co_firstlineno} in {code.co_name}"
                )
            else:
                try:
                    filename = inspect.getsourcefile(func) or "?"
                    line = inspect.getsourcelines(func)[1]
                    site = (
                        f"{_sites.relative(filename)}:{line} in"
                        f" {func.__name__}"
                    )
                except (OSError, TypeError):
                    site = None
        if len(self.sites) < 4096:
            self.sites[endpoint] = site
        return site

    def code_constants(
        self, endpoint: str | None, blueprints: tuple[str, ...]
    ) -> frozenset[int]:
        """
        The ids of the constants in the code that runs for *endpoint*: its
        view and the app's and blueprints' ``before_request`` and URL value
        preprocessors (cached).

        A ContextVar a request sets to such a constant (structlog's
        ``bind_contextvars(user="-")`` after ``clear_contextvars()``) is the
        very object the previous request left: the request set it itself.
        """
        key = (endpoint, blueprints)
        cached = self._constants.get(key)
        if cached is not None:
            return cached
        app = self.app
        functions: list[Any] = []
        if app is not None:
            view = app.view_functions.get(endpoint) if endpoint else None
            if view is not None:
                functions.append(view)
            for name in (None, *blueprints):
                functions.extend(app.before_request_funcs.get(name, ()))
                functions.extend(app.url_value_preprocessors.get(name, ()))
        found = frozenset(
            id(constant) for constant in _constants_of(functions)
        )
        if len(self._constants) < 1024:
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
            subject = f"ContextVar {var.name}"
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
        origin_tag = origin_site = None
        if origin is not None:
            origin_tag = origin.tag()
            # Where a ContextVar was set cannot be known: the requests
            # are the places, not a line (issue 14).
            origin_site = _sites.during(origin_tag)
        message = contextvar_leak_message(
            var.name,
            origin_tag,
            accessor_tag,
            sample_rate=self.settings.sample_rate,
        )
        violation = self.reporter.build(
            "CG106",
            subject=f"ContextVar {var.name}",
            message=message,
            origin=origin_tag,
            accessor=accessor_tag,
            thread=accessor_tag.thread_name,
            origin_site=origin_site,
            access_site=_sites.during(accessor_tag),
            value=value,
            has_value=True,
            value_name=var.name,
        )
        return dataclasses.replace(violation, hint=contextvar_hint(var.name))


def _constants_of(functions: list[Any]) -> list[object]:
    """Every constant of *functions*, their wrappers and nested code."""
    codes = []
    for function in functions:
        layer, depth = function, 0
        while layer is not None and depth < 16:
            code = getattr(layer, "__code__", None)
            if code is not None:
                codes.append(code)
            layer = getattr(layer, "__wrapped__", None)
            depth += 1
    constants: list[object] = []
    while codes:
        code = codes.pop()
        for constant in code.co_consts:
            if isinstance(constant, types.CodeType):
                codes.append(constant)
            else:
                constants.append(constant)
    return constants
