"""
Code sites: where in the user's code something happened.

A site is the first frame outside Flask, Werkzeug, flask_ctxguard and the
plumbing that calls into them (threads, executors, signals), rendered as
``"path.py:12 in func"``. Finding it walks a few frames and costs a few
microseconds, so it is only done when a violation is reported (or, for a
shared ``g``, when a value is written). Full stacks are only taken when
``CTXGUARD_STACKS`` is on, and they are trimmed the way pytest trims a
traceback: frames of pytest, pluggy, runpy, Flask, Werkzeug, blinker,
structlog and flask_ctxguard are folded into one line each run, so the
user's frames and those of the libraries that matter (Flask-Login,
Flask-SQLAlchemy) stand out (issue 14).
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from types import CodeType, FrameType

from flask_ctxguard._core import config as _config
from flask_ctxguard._core.tags import RequestTag

__all__ = [
    "calling_line",
    "capture_site",
    "capture_stack",
    "describe",
    "during",
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
    "structlog",
    "threading",
)


# Frames folded out of full stacks: the test runner and the web stack
# between it and the user's code.
_FOLDED = (
    *_INTERNAL,
    "_pytest",
    "blinker",
    "execnet",
    "pluggy",
    "pytest",
    "runpy",
    "structlog",
    "xdist",
)

# Where Flask hands a request to the app's code: a reader found before it
# is inside the request, and the frames beyond it are the test's or the
# server's, never the place of the access.
_DISPATCH = "flask.app"


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
    long as a frame of the user's own code follows them within the same
    request. A library that reads during a request with no user frame
    between it and Flask's dispatch (Flask-Login's ``login_required``) is
    the reader itself: its frame is returned, not the test's that sent the
    request.
    """
    try:
        frame: FrameType | None = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return None
    fallback = None
    reader = None
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name == _DISPATCH and reader is not None:
            return reader
        if not _is_module_of(name, _PLUMBING):
            if not _is_installed(frame.f_code.co_filename):
                return frame
            fallback = fallback or frame
        if reader is None and not _is_module_of(name, _INTERNAL):
            reader = frame
        frame = frame.f_back
    return fallback


def calling_line(
    depth: int, skipped: frozenset[str]
) -> tuple[CodeType, int] | None:
    """
    The code and line of the first frame at or above *depth* (relative to
    the caller) whose top-level module is not in *skipped*: cheaper than
    `user_frame`, for a site taken on every call (a structlog bind), and
    rendered only if a report needs it (`describe_line`).
    """
    try:
        frame: FrameType | None = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return None
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name.partition(".")[0] not in skipped:
            return frame.f_code, frame.f_lineno
        frame = frame.f_back
    return None


def describe_line(line: tuple[CodeType, int]) -> str:
    """Render a `calling_line` as ``"path.py:12 in func"``."""
    code, number = line
    return f"{relative(code.co_filename)}:{number} in {code.co_name}"


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


def during(tag: RequestTag) -> str:
    """
    The place a request is, for what happened somewhere during it:
    ``"GET /orders (endpoint 'orders')"``.
    """
    endpoint = f" (endpoint {tag.endpoint!r})" if tag.endpoint else ""
    return f"{tag.method} {tag.path}{endpoint}"


def capture_site(depth: int = 0) -> str | None:
    """
    The user's site above the caller, or `None` if there is none.
    """
    frame = user_frame(depth + 1)
    return None if frame is None else describe(frame)


def capture_stack(depth: int = 0) -> str | None:
    """
    The stack from the user's site outwards, formatted like a traceback,
    or `None` if there is no user frame.

    Runs of frames of the test runner and the web stack are folded into
    one line each, unless the run asked for full stacks
    (``--ctxguard-full-stacks``).
    """
    frame = user_frame(depth + 1)
    if frame is None:
        return None
    if _config.RUN.full_stacks:
        return "".join(traceback.format_stack(frame))
    return "".join(_trimmed(frame))


def _trimmed(frame: FrameType) -> Iterator[str]:
    """Outermost frame first, folded runs as ``[N frames of ...]``."""
    frames: list[FrameType] = []
    here: FrameType | None = frame
    while here is not None:
        frames.append(here)
        here = here.f_back
    frames.reverse()
    folded: list[str] = []
    for index, each in enumerate(frames):
        top = _top_module(each)
        if top is not None and index < len(frames) - 1:
            folded.append(top)
            continue
        if folded:
            yield _fold_line(folded)
            folded = []
        yield from traceback.StackSummary.extract(
            [(each, each.f_lineno)], lookup_lines=True
        ).format()
    if folded:  # pragma: no cover - the site frame itself is never folded
        yield _fold_line(folded)


def _top_module(frame: FrameType) -> str | None:
    """The folded package *frame* belongs to, or `None` to show it."""
    name = frame.f_globals.get("__name__", "") or ""
    top = name.partition(".")[0]
    if top in _FOLDED:
        return "pytest" if top == "_pytest" else top
    if name == "__main__" and os.path.basename(
        os.path.dirname(frame.f_code.co_filename)
    ) in ("pytest", "_pytest"):
        return "pytest"
    return None


def _fold_line(tops: list[str]) -> str:
    names = ", ".join(dict.fromkeys(tops))
    count = len(tops)
    return f"  [{count} frame{'' if count == 1 else 's'} of {names}]\n"
