"""
The extension: `CtxGuard` and ``init_app``.

``init_app`` reads the configuration, keeps the app's `AppState` in
``app.extensions["ctxguard"]``, and installs the guarded classes through
Flask's own extension points: ``app.request_class``,
``app.app_ctx_globals_class`` and a copy of ``app.session_interface``
whose ``open_session`` arms each request (`_lifecycle`). Until a request
shows that arming at work, a ``before_request`` function arms requests
too (`_lifecycle.install_fallback`). The pytest plugin (`pytest_plugin`)
and `testing` also install guards, through `CtxGuard._install`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import threading
from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_ctxguard._core import override as _override
from flask_ctxguard._core.classes import SESSION, G, registry
from flask_ctxguard._core.config import (
    KEYS,
    Settings,
    check_keys,
    fixed_defaults,
    read_settings,
)
from flask_ctxguard._core.flaskcompat import (
    pushed_contexts,
    request_ctx_var,
    request_of,
    unsupported_reason,
)
from flask_ctxguard._core.logger import get_logger
from flask_ctxguard._core.tags import RequestTag
from flask_ctxguard._core.violation import Violation
from flask_ctxguard._guard.g import guarded_g_class
from flask_ctxguard._guard.lifecycle import install_fallback, retiring_close
from flask_ctxguard._guard.request import guarded_request_class
from flask_ctxguard._guard.session_interface import (
    guarded_session_interface,
    prepare_sampling,
)
from flask_ctxguard._guard.state import EXTENSION_KEY, AppState, prune_states
from flask_ctxguard._reporting import sites as _sites
from flask_ctxguard._rules.access import note_endpoint
from flask_ctxguard._rules.pushed_contexts import report_leaked_contexts
from flask_ctxguard._rules.structlog_binds import observe_structlog
from flask_ctxguard.exceptions import (
    AlreadyRegisteredError,
    ConfigurationError,
    ContaminationError,
)

__all__ = ["EXTENSION_KEY", "CtxGuard"]

# Installing on an app looks for its state and then sets it: two threads
# that push an unguarded app's first contexts at once (the pytest plugin
# installs on discovery) must not both find none and split the app's
# violations over two states. One lock for every guard: the plugin's and
# the app's own may race for one app. Installing is rare; requests never
# take it.
_install_lock = threading.RLock()


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
        # Why no app is guarded, when this Flask cannot be.
        self._unsupported: str | None = None
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
        with _install_lock:
            return self._install_locked(app, auto=auto)

    def _install_locked(self, app: Flask, *, auto: bool) -> AppState:
        # auto: installed by the pytest plugin on an app it discovered. Its
        # requests are armed by the session interface like any other's; a
        # request that started before it was installed is armed by the
        # plugin's request_started receiver, not by a before_request
        # fallback (tests inspecting before_request_funcs see nothing
        # extra). It defaults to log mode, writes nothing into app.config,
        # and gives way to the app's own CtxGuard if the app installs one.
        existing: AppState | None = app.extensions.get(EXTENSION_KEY)
        if existing is not None and not (existing.auto and not auto):
            if existing.auto and auto:
                return existing
            if existing.guard is self:
                msg = (
                    f"This CtxGuard is already installed on the app"
                    f" {app.name!r}; call init_app once per app (or pass"
                    " the app to CtxGuard(app) or to init_app, not both)."
                )
                raise AlreadyRegisteredError(msg)
            msg = (
                f"A 'CtxGuard' is already registered on the app {app.name!r}."
                " Use that instance (app.extensions['ctxguard'].guard)"
                " instead of creating another one."
            )
            raise AlreadyRegisteredError(msg)
        settings = _read_app_settings(app, auto=auto)

        reason = unsupported_reason()
        if reason is not None and settings.mode != "off":
            if settings.mode == "raise":
                raise ConfigurationError(reason)
            if not auto and self._unsupported is None:
                _warn_unsupported(reason, app.name)  # once per guard
            self._unsupported = reason
            settings = settings.turned_off()

        state = AppState(self, app, settings, auto=auto)
        app.extensions[EXTENSION_KEY] = state
        with self._lock:
            self._states = prune_states([*self._states, state])
        if settings.mode == "off":
            return state

        if settings.sample_rate < 1:
            prepare_sampling(app, state)
        observe_structlog()  # once per process: CG106 sees binds and clears
        _install_classes(app, state)
        if not auto:
            install_fallback(app, state)
        return state

    # -- public helpers -----------------------------------------------------

    @property
    def active(self) -> bool:
        """
        Whether this guard checks the requests of at least one app.

        `False` until `init_app`, with ``CTXGUARD_MODE = "off"``, and on a
        Flask the guard cannot run on (see `inactive_reason`).

        .. versionadded:: 0.1.0
        """
        return any(
            state.settings.initial_mode != "off"
            for state in self._alive()
            if state.app is not None
        )

    @property
    def inactive_reason(self) -> str | None:
        """
        Why this guard checks nothing, in one sentence, or `None` while it
        is `active`: an unsupported Flask (named with its version),
        ``CTXGUARD_MODE = "off"``, or no app yet.

        .. versionadded:: 0.1.0
        """
        if self.active:
            return None
        if self._unsupported is not None:
            return self._unsupported
        if any(state.app is not None for state in self._alive()):
            return "CTXGUARD_MODE is 'off'."
        return "it is installed on no app; call init_app(app)."

    def _alive(self) -> list[AppState]:
        with self._lock:
            return list(self._states)

    @property
    def violations(self) -> list[Violation]:
        """
        The violations found so far, oldest first.

        Bounded by ``CTXGUARD_MAX_VIOLATIONS`` per app, and kept for at
        most 256 apps that are gone (the pytest plugin's guard sees every
        app of a suite).
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
        with self._lock:
            self._states = prune_states(self._states)

    def current(self) -> RequestTag | None:
        """
        The `RequestTag` of the request being handled, or `None` outside a
        request (or in a request of an app this guard does not guard, or
        one that ``CTXGUARD_SAMPLE_RATE`` left unsampled).
        """
        ctx = request_ctx_var.get(None)
        request = request_of(ctx) if ctx is not None else None
        record = getattr(request, "_ctxguard_record", None)
        if record is None or record.app_state.guard is not self:
            return None
        note_endpoint(record, request)
        return record.tag()  # type: ignore[no-any-return]

    def check_contexts(self) -> list[Violation]:
        """
        Report (CG105) every request or app context of a guarded app that is
        still pushed in the current context, and return those violations.

        Meant for the end of a test or a script; the contexts stay pushed.

        Raises:
            ContaminationError: in raise mode, once all are reported.
        """
        reporters = {
            state.app: state.reporter
            for state in self._alive()
            if state.app is not None
        }
        found = report_leaked_contexts(
            pushed_contexts(), reporters.get, _sites.capture_site(1)
        )
        if found and self._raising():
            raise ContaminationError(found[0])
        return found

    def _raising(self) -> bool:
        return any(state.reporter.raising for state in self._alive())


def _read_app_settings(app: Flask, *, auto: bool) -> Settings:
    """
    *app*'s settings. Defaults that derive from TESTING / DEBUG are not
    written into app.config: the settings follow them (see _config).
    """
    if auto:
        # The app's own keys (validated), and log mode unless it set one;
        # the app's config is left as it is.
        own = {k: v for k, v in app.config.items() if k in KEYS}
        settings = read_settings(
            {**own, "TESTING": app.testing, "DEBUG": app.debug}
        )
        if "CTXGUARD_MODE" not in own and settings.mode != "off":
            settings = dataclasses.replace(settings, initial_mode="log")
        return settings
    check_keys(app.config)
    for key, value in fixed_defaults().items():
        app.config.setdefault(key, value)
    return read_settings(app.config, live=True)


def _installs(settings: Settings) -> list[tuple[str, Callable[[Any], Any]]]:
    """
    The app attributes the guard replaces, and how, under *settings*.
    """
    if settings.sample_rate < 1:
        # Sampling: requests, sessions and g stay Flask's own, unchecked;
        # the session interface picks the requests to guard and switches
        # their classes.
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
        ("request_class", request_class_for),
        ("app_ctx_globals_class", guarded_g_class),
        ("session_interface", guarded_session_interface),
    ]


def request_class_for(base: type) -> type:
    """
    The guarded subclass of the request class *base*, whose ``close()``
    retires its requests: what `CtxGuard.init_app` installs.
    """
    return guarded_request_class(base, retire=retiring_close)


def _install_classes(app: Flask, state: AppState) -> None:
    """
    Install the guarded request, ``g`` and session classes on *app*; one
    the guard cannot subclass is declined, by name, and left as it is.
    """
    for attribute, make in _installs(state.settings):
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
    # The classes arming tells by an identity check.
    g_class = app.app_ctx_globals_class
    session_class = getattr(app.session_interface, "session_class", None)
    state.installed(
        g_class=g_class if registry.role(g_class) == G else None,
        session_class=(
            session_class
            if isinstance(session_class, type)
            and registry.role(session_class) == SESSION
            else None
        ),
    )


def _warn_unsupported(reason: str, app_name: str) -> None:
    """
    Say at warning level that this Flask cannot be guarded; not in a
    pytest run, whose report says it instead.
    """
    if _override.current().quiet:
        return
    try:
        get_logger().warning(
            "unsupported-flask",
            message=reason,
            flask_version=_flask_version(),
            app=app_name,
        )
    except Exception:  # noqa: BLE001 - the app's log pipeline
        return


def _flask_version() -> str | None:
    try:
        return importlib.metadata.version("flask")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return None
