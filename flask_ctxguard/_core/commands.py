"""
What the package's commands share: exit statuses, the one-line usage
error, an argument parser that raises it, the installed version, and a
quiet end when the reader of standard output went away.

``report``, ``explain`` (`flask_ctxguard._cli`) and ``lint``
(`flask_ctxguard._lint`) exit like linters: 0 nothing found, 1 findings,
2 a usage error or unreadable input, each error on one line of standard
error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import sys
from typing import NoReturn

__all__ = [
    "EXIT_CLEAN",
    "EXIT_FOUND",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "installed_version",
    "reader_gone",
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


def reader_gone() -> None:
    """
    The reader of standard output went away (``| head``): not an error of
    the command's. Point standard output at the null device, so that the
    interpreter's last flush is quiet too.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    with contextlib.suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
