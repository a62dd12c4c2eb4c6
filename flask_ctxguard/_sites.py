"""
Code sites: where in the user's code something happened.

A site is the first frame outside Flask, Werkzeug, flask_ctxguard and the
plumbing that calls into them (threads, executors, signals), rendered as
``"path.py:12 in func"``. Finding it walks a few frames and costs a few
microseconds, so it is only done when a violation is reported (or, for a
shared ``g``, when a value is written). Full stacks are only taken when
``CTXGUARD_STACKS`` is on.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from types import FrameType

__all__ = [
    "capture_site",
    "capture_stack",
    "describe",
    "is_internal_caller",
    "relative",
    "user_frame",
]

# Modules whose own access to a request is never a violation: Flask and
# Werkzeug tearing a request down, and ourselves.
_INTERNAL = ("flask", "werkzeug", "flask_ctxguard")

# Modules that are never the user's site: the internal ones plus the
# plumbing between them and user code.
_PLUMBING = (
    *_INTERNAL,
    "asgiref",
    "blinker",
    "concurrent",
    "contextlib",
    "contextvars",
    "flask_login",
    "functools",
    "gevent",
    "importlib",
    "jinja2",
    "markupsafe",
    "runpy",
    "threading",
)


def _is_module_of(name: str, packages: tuple[str, ...]) -> bool:
    top = name.partition(".")[0]
    return top in packages


def is_internal_caller(depth: int) -> bool:
    """
    Whether the frame *depth* levels above the caller belongs to Flask,
    Werkzeug or flask_ctxguard.
    """
    try:
        frame = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return False
    return _is_module_of(frame.f_globals.get("__name__", ""), _INTERNAL)


def user_frame(depth: int) -> FrameType | None:
    """
    The first frame at or above *depth* (relative to the caller) that is
    the user's own code.

    Flask, Werkzeug, flask_ctxguard and their plumbing are skipped; so are
    installed third-party packages (a Flask extension reading ``g``) as
    long as a frame of the user's own code follows them.
    """
    try:
        frame: FrameType | None = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return None
    fallback = None
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not _is_module_of(name, _PLUMBING):
            if not _is_installed(frame.f_code.co_filename):
                return frame
            fallback = fallback or frame
        frame = frame.f_back
    return fallback


_INSTALLED = tuple(
    {
        path
        for key in ("purelib", "platlib", "stdlib", "platstdlib")
        if (path := sysconfig.get_paths().get(key))
    }
)


def _is_installed(filename: str) -> bool:
    """Whether *filename* belongs to the standard library or a package
    installed in site-packages, rather than to the user's project."""
    return filename.startswith(_INSTALLED) or "site-packages" in filename


def relative(filename: str) -> str:
    """
    *filename* relative to the working directory when it is below it.
    """
    try:
        shorter = os.path.relpath(filename)
    except ValueError:  # pragma: no cover - another drive on Windows
        return filename
    return filename if shorter.startswith("..") else shorter


def describe(frame: FrameType) -> str:
    """
    Render *frame* as ``"path.py:12 in func"``.
    """
    code = frame.f_code
    return f"{relative(code.co_filename)}:{frame.f_lineno} in {code.co_name}"


def capture_site(depth: int = 0) -> str | None:
    """
    The user's site above the caller, or `None` if there is none.
    """
    frame = user_frame(depth + 1)
    return None if frame is None else describe(frame)


def capture_stack(depth: int = 0) -> str | None:
    """
    The full stack from the user's site outwards, formatted like a
    traceback, or `None` if there is no user frame.
    """
    frame = user_frame(depth + 1)
    if frame is None:
        return None
    return "".join(traceback.format_stack(frame))
