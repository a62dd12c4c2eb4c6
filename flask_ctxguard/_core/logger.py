"""
The library's one structlog logger.

flask_ctxguard never calls ``structlog.configure()``: configuration is the
application's global state, and the app's processors and renderer apply to
our events as to its own.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["LOGGER_NAME", "get_logger", "stdlib_logger"]

LOGGER_NAME = "flask_ctxguard"


def get_logger() -> Any:
    """
    The ``"flask_ctxguard"`` structlog logger.

    Fetched on every use rather than cached at import, so an application
    (or a test) that configures structlog later still gets its settings.
    """
    return structlog.get_logger(LOGGER_NAME)


def stdlib_logger() -> logging.Logger:
    """
    The fallback for when the structlog pipeline itself is what failed.
    """
    return logging.getLogger(LOGGER_NAME)
