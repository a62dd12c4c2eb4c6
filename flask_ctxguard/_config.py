"""
Settings: the ``CTXGUARD_*`` configuration, read and validated once.

`CtxGuard.init_app` is the single configuration moment: defaults are written
into ``app.config`` with ``setdefault`` and the result is frozen here. The
configuration is never read again afterwards.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from .exceptions import ConfigurationError

Mode = Literal["raise", "log", "off"]
MODES: tuple[Mode, ...] = ("raise", "log", "off")

_CODE_RE = re.compile(r"^CG\d{3}$")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """
    The validated ``CTXGUARD_*`` configuration of one app.
    """

    mode: Mode
    stacks: bool
    log_values: bool
    ignore: frozenset[str]
    max_violations: int
    #: The share of requests guarded, in (0, 1] (``CTXGUARD_SAMPLE_RATE``).
    sample_rate: float = 1.0
    # CTXGUARD_OTEL (issue 16): also send violations to OpenTelemetry.
    otel: bool = False

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


def defaults(*, testing: bool, debug: bool) -> dict[str, Any]:
    """
    The default of every key, for an app with *testing* and *debug*.
    """
    return {
        "CTXGUARD_MODE": "raise" if testing else "log",
        "CTXGUARD_STACKS": debug or testing,
        "CTXGUARD_LOG_VALUES": False,
        "CTXGUARD_IGNORE": (),
        "CTXGUARD_MAX_VIOLATIONS": 1000,
        "CTXGUARD_SAMPLE_RATE": 1.0,
        "CTXGUARD_OTEL": False,
    }


def read_settings(config: Mapping[str, Any]) -> Settings:
    """
    Validate the ``CTXGUARD_*`` keys of *config* into `Settings`.

    Raises:
        ConfigurationError: naming the key, the bad value and what is
            allowed.
    """
    from ._violations import RULES

    mode = config["CTXGUARD_MODE"]
    if mode not in MODES:
        allowed = ", ".join(repr(m) for m in MODES)
        msg = f"CTXGUARD_MODE must be one of {allowed}; got {mode!r}."
        raise ConfigurationError(msg)

    stacks = _read_bool(config, "CTXGUARD_STACKS")
    log_values = _read_bool(config, "CTXGUARD_LOG_VALUES")

    raw_ignore = config["CTXGUARD_IGNORE"]
    if isinstance(raw_ignore, str | bytes) or not isinstance(
        raw_ignore, Iterable
    ):
        msg = (
            "CTXGUARD_IGNORE must be a list or tuple of codes and subjects,"
            f" such as ('CG106', 'g._sa_session'); got {raw_ignore!r}."
        )
        if isinstance(raw_ignore, str):
            msg += f" Did you mean ({raw_ignore!r},)?"
        raise ConfigurationError(msg)
    ignore: set[str] = set()
    for item in raw_ignore:
        if not isinstance(item, str) or not item.strip():
            msg = (
                "CTXGUARD_IGNORE entries must be non-empty strings (a code"
                f" such as 'CG101' or a subject such as 'g.user'); got"
                f" {item!r}."
            )
            raise ConfigurationError(msg)
        if _CODE_RE.match(item) and item not in RULES:
            known = ", ".join(sorted(RULES))
            msg = (
                f"CTXGUARD_IGNORE names the unknown code {item!r}; the codes"
                f" are {known}."
            )
            raise ConfigurationError(msg)
        ignore.add(item)

    max_violations = config["CTXGUARD_MAX_VIOLATIONS"]
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

    # CTXGUARD_OTEL (issue 16): the OpenTelemetry API is imported only when
    # it is on, and must then be installed.
    otel = _read_bool(config, "CTXGUARD_OTEL")
    if otel:
        _require_otel()

    return Settings(
        mode=mode,
        stacks=stacks,
        log_values=log_values,
        ignore=frozenset(ignore),
        max_violations=max_violations,
        sample_rate=_read_sample_rate(config),
        otel=otel,
    )


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
        importlib.import_module("._otel", __package__)  # the API
    except ImportError as error:
        msg = (
            "CTXGUARD_OTEL is True but the OpenTelemetry API cannot be"
            f" imported ({error}); install it with"
            " 'pip install flask-ctxguard[otel]', or set CTXGUARD_OTEL to"
            " False."
        )
        raise ConfigurationError(msg) from None


def _read_bool(config: Mapping[str, Any], key: str) -> bool:
    value = config[key]
    if not isinstance(value, bool):
        msg = f"{key} must be True or False; got {value!r}."
        raise ConfigurationError(msg)
    return value
