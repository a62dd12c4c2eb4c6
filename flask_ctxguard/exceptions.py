"""
The exceptions flask_ctxguard raises.

Every one of them derives from `CtxGuardError`, so ``except CtxGuardError``
catches all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - only for the annotation
    from flask_ctxguard._core.violation import Violation

__all__ = [
    "AlreadyRegisteredError",
    "ConfigurationError",
    "ContaminationError",
    "CtxGuardError",
]


class CtxGuardError(Exception):
    """
    Base class of every error flask_ctxguard raises.

    .. versionadded:: 0.1.0
    """


class ContaminationError(CtxGuardError, RuntimeError):
    """
    Raised at the offending access in ``raise`` mode.

    The message is the violation's full report; the violation itself is
    kept on *violation*.

    .. versionadded:: 0.1.0
    """

    def __init__(self, violation: Violation) -> None:
        super().__init__(str(violation))
        self.violation = violation


class ConfigurationError(CtxGuardError, ValueError):
    """
    Raised by `CtxGuard.init_app` for a bad ``CTXGUARD_*`` value.

    The message names the key, the value and what is allowed.

    .. versionadded:: 0.1.0
    """


class AlreadyRegisteredError(ConfigurationError, RuntimeError):
    """
    Raised when a second `CtxGuard` is registered on the same app.

    It is a `ConfigurationError` and, like Flask-SQLAlchemy's equivalent, a
    `RuntimeError`.

    .. versionadded:: 0.1.0
    """
