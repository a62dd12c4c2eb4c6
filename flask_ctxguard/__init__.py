"""
flask_ctxguard: catch request-context contamination in Flask apps.

One request's data reaching another request or another thread is reported
with both code sites, as a structlog event in production and as a failing
test in CI.

The public names are imported on first use (PEP 562): the pytest plugin is
loaded in every pytest run of the environment through this package, and
must not import Flask or structlog until it is enabled (issue 12).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._extension import CtxGuard
    from ._signals import contamination_detected
    from ._tags import RequestTag
    from ._violations import RULES, Rule, Violation
    from .exceptions import (
        AlreadyRegisteredError,
        ConfigurationError,
        ContaminationError,
        CtxGuardError,
    )

__all__ = [
    "RULES",
    "AlreadyRegisteredError",
    "ConfigurationError",
    "ContaminationError",
    "CtxGuard",
    "CtxGuardError",
    "RequestTag",
    "Rule",
    "Violation",
    "contamination_detected",
]

# Where each public name lives.
_HOMES = {
    "RULES": "._violations",
    "AlreadyRegisteredError": ".exceptions",
    "ConfigurationError": ".exceptions",
    "ContaminationError": ".exceptions",
    "CtxGuard": "._extension",
    "CtxGuardError": ".exceptions",
    "RequestTag": "._tags",
    "Rule": "._violations",
    "Violation": "._violations",
    "contamination_detected": "._signals",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
