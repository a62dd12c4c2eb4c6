"""
Settings: the ``CTXGUARD_*`` configuration, validated at ``init_app``.

`CtxGuard.init_app` is the configuration moment for what the user set:
every explicit ``CTXGUARD_*`` key is validated there (misspelled keys
included) and a bad value fails at once. The two defaults that derive from
the app, the mode from ``app.testing`` and the stacks from ``app.debug or
app.testing``, are not frozen: Flask's documented testing pattern sets
``TESTING`` after ``create_app()``, so they are resolved when a violation is
reported, which costs nothing on requests that report nothing. A
``CTXGUARD_MODE`` switched between ``"raise"`` and ``"log"`` after
``init_app`` is followed the same way.

A pytest run may override the mode of every guard for the run (the command
line wins, see docs/configuration.md): `flask_ctxguard._core.override`.

The key table `KEYS` is the one list of keys: add a key there, give
`Settings` a field and read it in `read_settings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import threading
from collections.abc import Mapping
from typing import Any, Literal

from flask_ctxguard._core import override as _override
from flask_ctxguard._core.docs_site import DOCS_URL, normalized_docs_url
from flask_ctxguard._core.ignore import read_ignore
from flask_ctxguard.exceptions import ConfigurationError

Mode = Literal["raise", "log", "off"]
MODES: tuple[Mode, ...] = ("raise", "log", "off")


@dataclasses.dataclass(frozen=True, slots=True)
class Key:
    """
    One ``CTXGUARD_*`` configuration key: its name, default and meaning.

    *derived* defaults depend on ``app.testing`` / ``app.debug`` and are
    resolved when needed rather than written into ``app.config``.
    """

    name: str
    default: object
    meaning: str
    derived: bool = False


#: Every key, in the order of docs/configuration.md.
KEYS: dict[str, Key] = {
    key.name: key
    for key in (
        Key(
            "CTXGUARD_MODE",
            "raise if app.testing else log",
            "'raise', 'log' or 'off' (installs nothing)",
            derived=True,
        ),
        Key(
            "CTXGUARD_STACKS",
            "app.debug or app.testing",
            "keep full stacks of both sites",
            derived=True,
        ),
        Key("CTXGUARD_LOG_VALUES", False, "show a short repr of values"),
        Key("CTXGUARD_IGNORE", (), "codes and subjects to ignore"),
        Key("CTXGUARD_MAX_VIOLATIONS", 1000, "bound of guard.violations"),
        Key(
            "CTXGUARD_SAMPLE_RATE",
            1.0,
            "share of requests guarded, in (0, 1]",
        ),
        Key("CTXGUARD_OTEL", False, "also send violations to OpenTelemetry"),
        Key("CTXGUARD_DOCS_URL", DOCS_URL, "base URL of the rules' pages"),
    )
}


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """
    The validated ``CTXGUARD_*`` configuration of one app.

    `mode` and `stacks` follow ``app.testing``, ``app.debug`` and a later
    change of ``CTXGUARD_MODE`` / ``CTXGUARD_STACKS`` in *config*; the
    other fields are fixed at ``init_app``.
    """

    initial_mode: Mode
    initial_stacks: bool
    log_values: bool
    ignore: frozenset[str]
    max_violations: int
    #: The share of requests guarded, in (0, 1] (``CTXGUARD_SAMPLE_RATE``).
    sample_rate: float = 1.0
    # CTXGUARD_OTEL: also send violations to OpenTelemetry.
    otel: bool = False
    #: The base URL of the rules' pages (``CTXGUARD_DOCS_URL``).
    docs_url: str = DOCS_URL
    #: The keys the app set itself (not defaults).
    explicit: frozenset[str] = frozenset()
    #: The app's live config, or `None` for fixed settings.
    config: Mapping[str, Any] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )

    @property
    def mode(self) -> Mode:
        """The mode in effect now: see the module docstring."""
        mode = self.initial_mode
        if mode == "off":
            # Nothing was installed: a later change cannot be followed.
            return mode
        config = self.config
        if config is not None:
            mode = _live_mode(config, mode)
        override = _override.current().mode
        return mode if override is None or mode == "off" else override

    @property
    def stacks(self) -> bool:
        """Whether full stacks are kept, now."""
        config = self.config
        if config is None:
            return self.initial_stacks
        value = config.get("CTXGUARD_STACKS")
        if isinstance(value, bool):
            return value
        return bool(config.get("DEBUG") or config.get("TESTING"))

    @property
    def logs(self) -> bool:
        """
        Whether violations go to structlog: always, except in a quiet
        pytest run (see `flask_ctxguard._core.override.RunOverride`) for
        a guard whose app did not set ``CTXGUARD_MODE = "log"`` itself.
        """
        if not _override.current().quiet:
            return True
        return "CTXGUARD_MODE" in self.explicit and self.initial_mode == "log"

    def turned_off(self) -> Settings:
        """These settings in ``"off"`` mode, fixed."""
        return dataclasses.replace(self, initial_mode="off", config=None)

    def collecting(self) -> Settings:
        """These settings in ``"log"`` mode, fixed (hammer's run)."""
        return dataclasses.replace(self, initial_mode="log", config=None)

    def is_ignored(self, code: str, subject: str) -> bool:
        """
        Whether a violation of *code* on *subject* is to be dropped.
        """
        if not self.ignore:
            return False
        if code in self.ignore or subject in self.ignore:
            return True
        return any(
            fnmatch.fnmatchcase(subject, pattern) for pattern in self.ignore
        )


_said: set[tuple[int, str]] = set()
_said_lock = threading.Lock()


def _live_mode(config: Mapping[str, Any], initial: Mode) -> Mode:
    value = config.get("CTXGUARD_MODE")
    if value is None:
        return "raise" if config.get("TESTING") else "log"
    if value in ("raise", "log"):
        return value  # type: ignore[no-any-return]
    # 'off' or a bad value set after init_app: say so once, carry on.
    _say_once(
        config,
        f"CTXGUARD_MODE was changed to {value!r} after init_app; the guard"
        f" keeps running in {initial!r} mode. Set CTXGUARD_MODE before"
        " init_app (only a switch between 'raise' and 'log' is followed).",
    )
    return initial


def _say_once(config: Mapping[str, Any], message: str) -> None:
    key = (id(config), message)
    with _said_lock:
        if key in _said:
            return
        _said.add(key)
    from flask_ctxguard._core.logger import (
        get_logger,  # structlog only when needed
    )

    try:
        get_logger().warning("config-ignored", message=message)
    except Exception:  # noqa: BLE001 - the app's log pipeline
        return


def defaults(*, testing: bool, debug: bool) -> dict[str, Any]:
    """
    The default of every key, for an app with *testing* and *debug*, as in
    effect at this moment.
    """
    values = fixed_defaults()
    values["CTXGUARD_MODE"] = "raise" if testing else "log"
    values["CTXGUARD_STACKS"] = debug or testing
    return values


def fixed_defaults() -> dict[str, Any]:
    """
    The defaults that do not depend on the app, to write into
    ``app.config`` with ``setdefault``.
    """
    return {name: key.default for name, key in KEYS.items() if not key.derived}


def check_keys(config: Mapping[str, Any]) -> None:
    """
    Refuse a ``CTXGUARD_*`` key that does not exist, with a suggestion.

    Raises:
        ConfigurationError: naming the key and the closest known key.
    """
    for name in config:
        if str(name).upper().startswith("CTXGUARD_") and name not in KEYS:
            close = difflib.get_close_matches(name.upper(), KEYS, n=1)
            known = ", ".join(KEYS)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            msg = (
                f"Unknown configuration key {name!r}.{hint} The keys are"
                f" {known}."
            )
            raise ConfigurationError(msg)


def read_settings(
    config: Mapping[str, Any], *, live: bool = False
) -> Settings:
    """
    Validate the ``CTXGUARD_*`` keys of *config* into `Settings`.

    A derived key (mode, stacks) missing from *config* takes the default of
    ``TESTING`` / ``DEBUG``. With *live*, the settings keep *config* and
    follow it (see `Settings`).

    Raises:
        ConfigurationError: naming the key, the bad value and what is
            allowed.
    """
    check_keys(config)
    explicit = frozenset(name for name in KEYS if name in config)
    values = {
        **defaults(
            testing=bool(config.get("TESTING")),
            debug=bool(config.get("DEBUG")),
        ),
        **{name: config[name] for name in explicit},
    }
    mode = _read_mode(values["CTXGUARD_MODE"])
    stacks = _read_bool(values, "CTXGUARD_STACKS")
    log_values = _read_bool(values, "CTXGUARD_LOG_VALUES")
    ignore = read_ignore(values["CTXGUARD_IGNORE"])

    max_violations = values["CTXGUARD_MAX_VIOLATIONS"]
    if (
        isinstance(max_violations, bool)
        or not isinstance(max_violations, int)
        or max_violations < 1
    ):
        msg = (
            "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got"
            f" {max_violations!r}."
        )
        raise ConfigurationError(msg)

    # CTXGUARD_OTEL: the OpenTelemetry API is imported only when
    # it is on, and must then be installed.
    otel = _read_bool(values, "CTXGUARD_OTEL")
    if otel:
        _require_otel()

    return Settings(
        initial_mode=mode,
        initial_stacks=stacks,
        log_values=log_values,
        ignore=ignore,
        max_violations=max_violations,
        sample_rate=_read_sample_rate(values),
        explicit=explicit,
        config=config if live else None,
        otel=otel,
        docs_url=_read_docs_url(values.get("CTXGUARD_DOCS_URL", DOCS_URL)),
    )


def _read_docs_url(value: object) -> str:
    url = normalized_docs_url(value)
    if url is None:
        msg = (
            "CTXGUARD_DOCS_URL must be an absolute http:// or https:// URL,"
            " the base of the rules' pages (<base>rules/cg101.html), such as"
            f" {DOCS_URL!r}; got {value!r}."
        )
        raise ConfigurationError(msg)
    return url


def _read_sample_rate(config: Mapping[str, Any]) -> float:
    # .get: a config built before the key existed (the pytest plugin's
    # own defaults) guards every request.
    rate = config.get("CTXGUARD_SAMPLE_RATE", 1.0)
    if (
        isinstance(rate, bool)
        or not isinstance(rate, int | float)
        or not 0 < rate <= 1
    ):
        msg = (
            "CTXGUARD_SAMPLE_RATE must be a number greater than 0 and at"
            " most 1, the share of requests to guard (such as 0.01 for one"
            f" in a hundred); got {rate!r}."
        )
        raise ConfigurationError(msg)
    return float(rate)


def _require_otel() -> None:
    try:
        importlib.import_module("flask_ctxguard._reporting.otel")  # the API
    except ImportError as error:
        msg = (
            "CTXGUARD_OTEL is True but the OpenTelemetry API cannot be"
            f" imported ({error}); install it with"
            " 'pip install flask-ctxguard[otel]', or set CTXGUARD_OTEL to"
            " False."
        )
        raise ConfigurationError(msg) from None


def _read_mode(mode: object) -> Mode:
    for known in MODES:
        if mode == known:
            return known
    allowed = ", ".join(repr(m) for m in MODES)
    msg = f"CTXGUARD_MODE must be one of {allowed}; got {mode!r}."
    words = {"strict": "raise", "warn": "log"}
    if isinstance(mode, str) and mode.lower() in words:
        msg += (
            f" {mode!r} is a mode of the pytest option --ctxguard; in the"
            f" app's configuration, use {words[mode.lower()]!r}."
        )
    elif isinstance(mode, str) and mode.lower() in MODES:
        msg += f" Did you mean {mode.lower()!r}?"
    raise ConfigurationError(msg)


def _read_bool(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        msg = f"{key} must be True or False; got {value!r}."
        raise ConfigurationError(msg)
    return value
