"""
flask_ctxguard: catch request-context contamination in Flask apps.

One request's data reaching another request or another thread is reported
with both code sites, as a structlog event in production and as a failing
test in CI.

The public names are imported on first use (PEP 562): the pytest plugin is
loaded in every pytest run of the environment through this package, and
must not import Flask or structlog until it is enabled.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask_ctxguard._core.tags import RequestTag
    from flask_ctxguard._core.violation import RULES, Rule, Violation
    from flask_ctxguard._guard.extension import CtxGuard
    from flask_ctxguard._reporting.signals import contamination_detected
    from flask_ctxguard.exceptions import (
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
    "RULES": "flask_ctxguard._core.violation",
    "AlreadyRegisteredError": "flask_ctxguard.exceptions",
    "ConfigurationError": "flask_ctxguard.exceptions",
    "ContaminationError": "flask_ctxguard.exceptions",
    "CtxGuard": "flask_ctxguard._guard.extension",
    "CtxGuardError": "flask_ctxguard.exceptions",
    "RequestTag": "flask_ctxguard._core.tags",
    "Rule": "flask_ctxguard._core.violation",
    "Violation": "flask_ctxguard._core.violation",
    "contamination_detected": "flask_ctxguard._reporting.signals",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        msg = f"module {__name__!r} has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once imported, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
