"""
The message of each violation code, one function per code.

Each detector passes the data it has (the subject, the requests as
`RequestTag`s, the thread) and gets one sentence that says what happened
and where; `flask_ctxguard._core.violation.new_violation` makes it a
violation.
"""

from __future__ import annotations

from flask_ctxguard._core.tags import RequestTag
from flask_ctxguard._core.violation import RULES

__all__ = [
    "PYTEST_FLASK_CONTEXT",
    "context_leak_message",
    "contextvar_hint",
    "contextvar_leak_message",
    "contextvar_left_by_test_message",
    "cross_request_message",
    "cross_thread_message",
    "g_leak_hint",
    "g_leak_message",
    "stale_access_message",
]


def _of(subject: str, attribute: str, origin: RequestTag) -> str:
    what = f"'{subject}.{attribute}'" if attribute else f"'{subject}'"
    return (
        f"{what} of {origin.name} (request"
        f" {origin.token}, thread {origin.thread_name!r})"
    )


def _request_named(origin: RequestTag) -> str:
    """*origin* as the messages name it: ``GET /path (request TOKEN)``."""
    return f"{origin.name} (request {origin.token})"


def _request_with_endpoint(origin: RequestTag) -> str:
    """``GET /path (request TOKEN, endpoint 'view')``: where its view is."""
    view = "" if origin.endpoint is None else f", endpoint {origin.endpoint!r}"
    return f"{origin.name} (request {origin.token}{view})"


def g_leak_message(
    name: str, how: str, origin: RequestTag, accessor: RequestTag
) -> str:
    """CG101: ``g.<name>`` set during *origin*, *how* during *accessor*."""
    return (
        f"'g.{name}' was {how} during {accessor}"
        f" but was set during {_request_named(origin)}."
    )


#: How reports name the request context pytest-flask pushes around every
#: test that uses its ``app`` fixture (its autouse ``_push_request_context``).
PYTEST_FLASK_CONTEXT = "pytest-flask's automatic request context"


def g_leak_hint(pushed_by: str | None) -> str:
    """
    CG101's fix, naming what pushed the application context the two
    requests shared when a test harness did (*pushed_by*).
    """
    if pushed_by is None:
        return RULES["CG101"].hint
    if pushed_by == PYTEST_FLASK_CONTEXT:
        return (
            "the two requests shared the application context of the request"
            " context pytest-flask pushes around every test that uses its"
            " 'app' fixture; turn it off with an autouse fixture of the same"
            " name in conftest.py ('@pytest.fixture(autouse=True)' on"
            " 'def _push_request_context(): pass'), and push a context only"
            " in the tests that need one."
        )
    return (
        f"the two requests shared the application context of {pushed_by};"
        " don't keep per-request values on 'g' between test-client"
        " requests: push that context only in the tests that need it, and"
        " set per-request values on 'g' in every request (before_request)."
    )


def stale_access_message(
    subject: str, attribute: str, origin: RequestTag, thread: str
) -> str:
    """CG102: *subject* of the ended request *origin* used in *thread*."""
    return (
        f"{_of(subject, attribute, origin)} was used after that request"
        f" ended, outside any request, in thread {thread!r}."
    )


def cross_request_message(
    subject: str,
    attribute: str,
    origin: RequestTag,
    accessor: RequestTag | None,
    *,
    ended: bool,
) -> str:
    """
    CG103: *subject* of *origin* used during *accessor* (`None`: a request
    that was not sampled).
    """
    when = (
        "after that request ended"
        if ended
        else "while that request was still in flight"
    )
    what = _of(subject, attribute, origin)
    during = (
        "another request (one that was not sampled, so it is not named)"
        if accessor is None
        else str(accessor)
    )
    return f"{what} was used during {during}, {when}."


def cross_thread_message(
    subject: str, attribute: str, origin: RequestTag, thread: str
) -> str:
    """CG104: *subject* of the in-flight *origin* used from *thread*."""
    return (
        f"{_of(subject, attribute, origin)} was used from thread"
        f" {thread!r}, which has no context of that request, while it was"
        " in flight."
    )


def context_leak_message(
    app_name: str, thread: str, request: tuple[str, str] | None
) -> str:
    """
    CG105: a context of the app *app_name* is still pushed in *thread*;
    *request* is ``(method, path)`` for a request context.
    """
    if request is None:
        what, shared = "an app context", ""
    else:
        what = f"the request context of {request[0]} {request[1]}"
        shared = "request, session and "
    return (
        f"{what} of the app {app_name!r} is still pushed in thread"
        f" {thread!r}; everything that runs after it shares its"
        f" {shared}'g'."
    )


def contextvar_leak_message(
    var_name: str,
    origin: RequestTag | None,
    accessor: RequestTag,
    *,
    sample_rate: float = 1.0,
) -> str:
    """
    CG106: *var_name* held *origin*'s value for the whole of *accessor*
    (*origin* `None`: a request that was not sampled).
    """
    if origin is None:
        return (
            f"ContextVar {var_name!r} held, for the whole of {accessor}, a"
            " value that an earlier request set and never reset; which"
            " request is unknown, as only a sample of requests is guarded"
            f" (CTXGUARD_SAMPLE_RATE = {sample_rate:g})."
        )
    return (
        f"ContextVar {var_name!r} held, for the whole of {accessor}, the"
        f" value that {_request_with_endpoint(origin)} set and never reset."
    )


def contextvar_left_by_test_message(var_name: str, origin: RequestTag) -> str:
    """CG106 at a test's teardown: *var_name* still holds *origin*'s value."""
    return (
        f"ContextVar {var_name!r} still held, when the test ended, the"
        f" value that {_request_with_endpoint(origin)} set and never reset;"
        " the next test's requests would inherit it."
    )


def contextvar_hint(name: str) -> str:
    """
    The fix for the ContextVar *name* left set: structlog's own variables
    are cleared by ``clear_contextvars()``, any other only by its token.
    """
    if name.startswith("structlog_"):
        return (
            "call 'structlog.contextvars.clear_contextvars()' at the start"
            " of every request, or bind with"
            " 'structlog.contextvars.bound_contextvars()'."
        )
    return (
        f"reset {name!r} with the token its set() returned, in a"
        " teardown_request function or a try/finally around the work;"
        " 'structlog.contextvars.clear_contextvars()' does not clear it."
    )
