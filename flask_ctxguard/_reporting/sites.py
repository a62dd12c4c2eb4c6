"""
Code sites: where in the user's code something happened.

A site is the first frame of the app's own project: not Flask, Werkzeug,
Jinja, Flask-Login, Flask-WTF, Flask-Babel, structlog, flask_ctxguard or
the plumbing that calls into them (threads, executors, signals), nor any
installed package (site-packages, dist-packages) or the standard library.
A frame of a template is the template's own line, as Jinja's tracebacks
show it: ``"templates/index.html:3 in top-level template code"``. A site
renders as ``"path.py:12 in func"``. Finding it walks a few frames and
costs a few microseconds, so it is only done when a violation is reported
(or, for a shared ``g``, when a value is written).

Full stacks are only taken when ``CTXGUARD_STACKS`` is on, and they are
trimmed the way pytest trims a traceback: frames of pytest, pluggy,
pytest-xdist, execnet, runpy, threading, concurrent.futures, Flask,
Werkzeug, blinker, structlog and flask_ctxguard are folded into one line
each run, so the user's frames and those of the libraries that matter
(Flask-Login, Flask-SQLAlchemy) stand out.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from collections.abc import Iterator
from types import CodeType, FrameType

from flask_ctxguard._core import override as _override
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
    "flask_babel",
    "flask_login",
    "flask_wtf",
    "functools",
    "gevent",
    "importlib",
    "jinja2",
    "markupsafe",
    "runpy",
    "structlog",
    "threading",
    "wtforms",
)


# Frames folded out of full stacks: the test runner, threads and
# executors, and the web stack between them and the user's code.
_FOLDED = (
    *_INTERNAL,
    "_pytest",
    "blinker",
    "concurrent",
    "execnet",
    "pluggy",
    "pytest",
    "runpy",
    "structlog",
    "threading",
    "xdist",
)

# How a folded package is named, where its module name is not its name.
_FOLDED_NAMES = {"_pytest": "pytest", "concurrent": "concurrent.futures"}

# Code that pytest-xdist runs through execnet has no module of its own
# (``__name__`` is ``"__channelexec__"``): told by its file's directory.
_FOLDED_DIRECTORIES = {"execnet": "execnet", "xdist": "xdist"}

# Where Flask hands a request to the app's code: a reader found before it
# is inside the request, and the frames beyond it are the test's or the
# server's, never the place of the access. Other frames of flask.app
# (update_template_context calling a context processor) are on the way
# from the user's code to a library, not the request's boundary.
_DISPATCH = "flask.app"
_DISPATCH_FUNCTIONS = frozenset(
    (
        "dispatch_request",
        "full_dispatch_request",
        "preprocess_request",
        "process_response",
        "do_teardown_request",
        "do_teardown_appcontext",
        "handle_user_exception",
        "handle_exception",
        "wsgi_app",
    )
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
    long as a frame of the user's own code follows them within the same
    request. A template of the user's project is the user's code (see
    `describe` for its line). A library that reads during a request with
    no user frame between it and Flask's dispatch (Flask-Login's
    ``login_required``) is the reader itself: its frame is returned, not
    the test's that sent the request. Only Flask's dispatch functions are
    that boundary: a context processor that ``render_template`` calls
    from a view (through ``flask.app``) is on the way to the view.
    """
    try:
        frame: FrameType | None = sys._getframe(depth + 1)
    except ValueError:  # pragma: no cover - no such frame
        return None
    fallback = None
    reader = None
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if (
            name == _DISPATCH
            and reader is not None
            and frame.f_code.co_name in _DISPATCH_FUNCTIONS
        ):
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
    """Whether *filename* belongs to the standard library or an installed
    package (site-packages, dist-packages), not to the user's project."""
    return (
        filename.startswith(_INSTALLED)
        or "site-packages" in filename
        or "dist-packages" in filename
    )


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
    Render *frame* as ``"path.py:12 in func"``; a template's frame as the
    template's line: ``"templates/index.html:3 in block 'body'"``.
    """
    filename, line, name = _location(frame)
    return f"{relative(filename)}:{line} in {name}"


def _location(frame: FrameType) -> tuple[str, int, str]:
    """
    *frame*'s file, line and function; for a template's compiled code,
    the template's file and line and the place in it, as Jinja's
    tracebacks show them (jinja2.debug).
    """
    code = frame.f_code
    template = frame.f_globals.get("__jinja_template__")
    if template is not None:
        try:
            line = template.get_corresponding_lineno(frame.f_lineno)
            filename = template.filename or code.co_filename
        except Exception:  # noqa: BLE001 - a template of another shape
            line, filename = frame.f_lineno, code.co_filename
        function = code.co_name
        if function == "root":
            place = "top-level template code"
        elif function.startswith("block_"):
            place = f"block {function[6:]!r}"
        else:
            place = "template"
        return filename, line, place
    return code.co_filename, frame.f_lineno, code.co_name


def during(tag: RequestTag) -> str:
    """
    The place a request is, for what happened somewhere during it:
    ``"GET /orders (endpoint 'orders')"``.
    """
    endpoint = f" (endpoint {tag.endpoint!r})" if tag.endpoint else ""
    return f"{tag.name}{endpoint}"


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
    if _override.current().full_stacks:
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
        filename, line, name = _location(each)
        yield from traceback.StackSummary.from_list(
            [traceback.FrameSummary(filename, line, name)]
        ).format()
    if folded:  # pragma: no cover - the site frame itself is never folded
        yield _fold_line(folded)


def _top_module(frame: FrameType) -> str | None:
    """The folded package *frame* belongs to, or `None` to show it."""
    name = frame.f_globals.get("__name__", "") or ""
    top = name.partition(".")[0]
    if top in _FOLDED:
        return _FOLDED_NAMES.get(top, top)
    if name in ("__main__", "__channelexec__"):
        # pytest run as 'python -m pytest', or code execnet sent to a
        # pytest-xdist worker (its bootstrap is read from stdin: no file).
        filename = frame.f_code.co_filename
        if filename == "<string>" and "execnet" in sys.modules:
            return "execnet"
        directory = os.path.basename(os.path.dirname(filename))
        if directory in ("pytest", "_pytest"):
            return "pytest"
        return _FOLDED_DIRECTORIES.get(directory)
    return None


def _fold_line(tops: list[str]) -> str:
    names = ", ".join(dict.fromkeys(tops))
    count = len(tops)
    return f"  [{count} frame{'' if count == 1 else 's'} of {names}]\n"
