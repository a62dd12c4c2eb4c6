"""
The Flask glue: `CtxGuard`, ``init_app`` and the per-app state.

This is the only module that touches the Flask app: it installs the
guarded classes through ``app.request_class`` and
``app.app_ctx_globals_class``, registers one ``before_request`` function,
and keeps each app's state in ``app.extensions["ctxguard"]``.
"""

from __future__ import annotations

import functools
import importlib.metadata
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from . import _sites
from ._access import note_endpoint
from ._config import Settings, defaults, read_settings
from ._flaskcompat import (
    check_support,
    is_request_context,
    leaked_roots,
    pushed_contexts,
    request_ctx_var,
)
from ._g import guarded_g_class
from ._lifecycle import (
    arm_request,
    guarded_session_interface,
    is_guarded_session_interface,
    prepare_sampling,
)
from ._logging import get_logger
from ._request import guarded_request_class
from ._state import AppState
from ._tags import RequestTag
from ._violations import Violation
from .exceptions import (
    AlreadyRegisteredError,
    ConfigurationError,
    ContaminationError,
)

__all__ = ["CtxGuard"]

EXTENSION_KEY = "ctxguard"


class CtxGuard:
    """
    Catch request-context contamination in a Flask app.

    Use it like any Flask extension::

        guard = CtxGuard(app)

        # or, with an application factory:
        guard = CtxGuard()
        guard.init_app(app)

    Args:
        app: The app to guard now; or call `init_app` later.

    .. versionadded:: 0.1.0
    """

    def __init__(self, app: Flask | None = None) -> None:
        # Strong references: violations outlive the app that reported them
        # (an app built inline, a test's app). A state holds its app weakly.
        self._states: list[AppState] = []
        self._lock = threading.Lock()
        if app is not None:
            self.init_app(app)

    def __repr__(self) -> str:
        names = ", ".join(repr(state.app_name) for state in self._alive())
        return f"<CtxGuard apps=[{names}]>"

    def init_app(self, app: Flask) -> None:
        """
        Install the guard on *app*.

        Reads, once, the configuration keys ``CTXGUARD_MODE``,
        ``CTXGUARD_STACKS``, ``CTXGUARD_LOG_VALUES``, ``CTXGUARD_IGNORE``,
        ``CTXGUARD_MAX_VIOLATIONS``, ``CTXGUARD_SAMPLE_RATE`` and
        ``CTXGUARD_OTEL`` (see
        ``docs/configuration.md``).
        With ``CTXGUARD_MODE = "off"`` nothing is installed.

        Raises:
            ConfigurationError: for a bad ``CTXGUARD_*`` value.
            AlreadyRegisteredError: if *app* already has a `CtxGuard`.
        """
        self._install(app, auto=False)

    def _install(self, app: Flask, *, auto: bool) -> AppState:
        # auto: installed by the pytest plugin on an app it discovered. Such
        # a guard arms requests from the request_started signal (so that
        # tests inspecting before_request_funcs see nothing extra), defaults
        # to log mode, writes nothing into app.config, and gives way to the
        # app's own CtxGuard if the app installs one later.
        existing: AppState | None = app.extensions.get(EXTENSION_KEY)
        if existing is not None and not (existing.auto and not auto):
            if existing.auto and auto:
                return existing
            msg = (
                f"A 'CtxGuard' is already registered on the app {app.name!r}."
                " Use that instance (app.extensions['ctxguard'].guard)"
                " instead of creating another one."
            )
            raise AlreadyRegisteredError(msg)
        config_defaults = defaults(testing=app.testing, debug=app.debug)
        if auto:
            config_defaults["CTXGUARD_MODE"] = "log"
            config = {
                **config_defaults,
                **{
                    k: v for k, v in app.config.items() if k in config_defaults
                },
            }
        else:
            for key, value in config_defaults.items():
                app.config.setdefault(key, value)
            config = app.config
        settings = read_settings(config)

        problem = check_support()
        if problem is not None and settings.mode != "off":
            msg = (
                f"flask_ctxguard cannot guard this Flask: {problem}."
                " Supported are Flask 2.3, 3.0 and 3.1."
            )
            if settings.mode == "raise":
                raise ConfigurationError(msg)
            get_logger().error(
                "unsupported-flask",
                message=msg,
                flask_version=_flask_version(),
                app=app.name,
            )
            settings = Settings(
                mode="off",
                stacks=settings.stacks,
                log_values=settings.log_values,
                ignore=settings.ignore,
                max_violations=settings.max_violations,
            )

        state = AppState(self, app, settings)
        state.auto = auto
        state.arms_on_before_request = not auto
        app.extensions[EXTENSION_KEY] = state
        with self._lock:
            self._states = [
                s
                for s in self._states
                if s.app is not None or s.reporter.violations
            ]
            self._states.append(state)
        if settings.mode == "off":
            return state

        installs = _installs(settings)
        if settings.sample_rate < 1:
            prepare_sampling(app, state)
        for attribute, make in installs:
            base = getattr(app, attribute)
            try:
                setattr(app, attribute, make(base))
            except Exception as exc:  # noqa: BLE001 - decline, don't break
                kind = base if isinstance(base, type) else type(base)
                state.reporter.declined(
                    f"{attribute} {kind.__module__}.{kind.__qualname__}",
                    f"the guard cannot subclass it ({exc!r}); objects of this"
                    " class are not checked.",
                )
        if state.arms_on_before_request:
            app.before_request_funcs.setdefault(None, []).insert(
                0, _make_fallback(app, state)
            )
        return state

    # -- public helpers -----------------------------------------------------

    def _alive(self) -> list[AppState]:
        with self._lock:
            return list(self._states)

    @property
    def violations(self) -> list[Violation]:
        """
        The violations found so far, oldest first.

        Bounded by ``CTXGUARD_MAX_VIOLATIONS`` per app.
        """
        states = self._alive()
        if len(states) == 1:
            return list(states[0].reporter.violations)
        found = [v for state in states for v in state.reporter.violations]
        found.sort(key=lambda v: v.timestamp)
        return found

    def clear(self) -> None:
        """Forget every violation found so far."""
        for state in self._alive():
            state.reporter.clear()

    def current(self) -> RequestTag | None:
        """
        The `RequestTag` of the request being handled, or `None` outside a
        request (or in a request of an app this guard does not guard, or
        one that ``CTXGUARD_SAMPLE_RATE`` left unsampled).
        """
        ctx = request_ctx_var.get(None)
        if ctx is None:
            return None
        record = getattr(ctx.request, "_ctxguard_record", None)
        if record is None or record.guard.guard is not self:
            return None
        note_endpoint(record, ctx.request)
        return record.tag()  # type: ignore[no-any-return]

    def check_contexts(self) -> list[Violation]:
        """
        Report (CG105) every request or app context of a guarded app that is
        still pushed in the current context, and return those violations.

        Meant for the end of a test or a script; the contexts stay pushed.

        Raises:
            ContaminationError: in raise mode, once all are reported.
        """
        states = {
            id(state.app): state
            for state in self._alive()
            if state.app is not None
        }
        found: list[Violation] = []
        for ctx in leaked_roots(pushed_contexts()):
            state = states.get(id(ctx.app))
            if state is None or state.settings.mode == "off":
                continue
            violation = context_leak(state, ctx, _sites.capture_site(1))
            if violation is not None:
                state.reporter.report(violation, raise_now=False)
                found.append(violation)
        if found and self._raising():
            raise ContaminationError(found[0])
        return found

    def _raising(self) -> bool:
        return any(state.reporter.raising for state in self._alive())


def context_leak(
    state: AppState, ctx: Any, site: str | None
) -> Violation | None:
    """A CG105 violation for the pushed context *ctx*, unless ignored."""
    if is_request_context(ctx):
        request = ctx.request
        subject = "request context"
        what = f"the request context of {request.method} {request.path}"
    else:
        subject = "app context"
        what = "an app context"
    if state.reporter.is_ignored("CG105", subject):
        return None
    thread = threading.current_thread().name
    message = (
        f"{what} of the app {state.app_name!r} is still pushed in thread"
        f" {thread!r}; everything that runs after it shares its"
        f" {'request, session and ' if subject == 'request context' else ''}"
        "'g'."
    )
    return state.reporter.build(
        "CG105",
        subject=subject,
        message=message,
        origin=None,
        accessor=None,
        thread=thread,
        access_site=site,
    )


def _installs(settings: Settings) -> list[tuple[str, Callable[[Any], Any]]]:
    """
    The app attributes the guard replaces, and how, under *settings*.
    """
    if settings.sample_rate < 1:
        # Sampling: requests, sessions and g stay Flask's own, unchecked;
        # the session interface picks the requests to guard and switches
        # their classes (issue 15).
        return [
            (
                "session_interface",
                functools.partial(
                    guarded_session_interface,
                    sample_rate=settings.sample_rate,
                ),
            )
        ]
    return [
        ("request_class", guarded_request_class),
        ("app_ctx_globals_class", guarded_g_class),
        ("session_interface", guarded_session_interface),
    ]


def _make_fallback(app: Flask, state: AppState) -> Callable[[], None]:
    """
    A before_request function for requests the session interface did not
    arm: an app whose session_interface or request_class was replaced after
    init_app. Once a request shows arming at work, it removes itself, and
    later requests pay nothing for it.
    """

    def ctxguard_arm_request() -> None:
        ctx = request_ctx_var.get(None)
        armed = getattr(ctx.request, "_ctxguard_record", None) if ctx else None
        if armed is not None or is_guarded_session_interface(
            app.session_interface
        ):
            # Armed when its session opened (or left unsampled by the
            # interface that decides): not needed. Rebind the
            # list rather than mutate it: Flask is iterating over it.
            # An empty list left behind would still cost every request.
            funcs = app.before_request_funcs.get(None, [])
            kept = [f for f in funcs if f is not ctxguard_arm_request]
            if kept:
                app.before_request_funcs[None] = kept
            else:
                app.before_request_funcs.pop(None, None)
            return
        arm_request(state)

    return ctxguard_arm_request


def _flask_version() -> str | None:
    try:
        return importlib.metadata.version("flask")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return None
