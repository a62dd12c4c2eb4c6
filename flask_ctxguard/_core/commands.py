"""
What the package's commands share: exit statuses, the one-line usage
error, an argument parser that raises it, and the installed version.

``report``, ``explain`` (`flask_ctxguard._cli`) and ``lint``
(`flask_ctxguard._lint`) exit like linters: 0 nothing found, 1 findings,
2 a usage error or unreadable input, each error on one line of standard
error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from typing import NoReturn

__all__ = [
    "EXIT_CLEAN",
    "EXIT_FOUND",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "installed_version",
]

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake on the command line or an unreadable input."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one-line `UsageError`s."""

    def error(self, message: str) -> NoReturn:
        """Raise *message*, with where to find the command's help."""
        msg = f"{message}; see '{self.prog} --help'"
        raise UsageError(msg)


def installed_version(distribution: str = "flask-ctxguard") -> str | None:
    """
    The installed version of *distribution* (flask-ctxguard), read from its
    metadata without importing it; `None` if it is not installed.
    """
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
