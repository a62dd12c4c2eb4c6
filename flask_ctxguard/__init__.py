"""
flask_ctxguard: catch request-context contamination in Flask apps.

One request's data reaching another request or another thread is reported
with both code sites, as a structlog event in production and as a failing
test in CI.
"""

from __future__ import annotations

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
