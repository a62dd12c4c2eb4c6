"""
The slow path: something used an object of a request outside that
request's own context.

The checked attributes and methods of the guarded classes call
`report_access` only when the current context is not the object's own.
It tells which rule the access breaks (CG102, CG103 or CG104) and reports
it, unless Flask itself is reading a request it is tearing down.
"""

from __future__ import annotations

import threading
from typing import Any

from flask_ctxguard._core.classes import RECORD
from flask_ctxguard._core.flaskcompat import request_ctx_var, request_of
from flask_ctxguard._core.tags import RequestTag
from flask_ctxguard._reporting import sites as _sites
from flask_ctxguard._reporting.messages import (
    cross_request_message,
    cross_thread_message,
    stale_access_message,
)
from flask_ctxguard._rules.records import ARMED, RequestRecord
from flask_ctxguard.exceptions import ContaminationError

__all__ = [
    "NO_CONTEXT",
    "current_record",
    "note_endpoint",
    "report_access",
]

_request_get = request_ctx_var.get


class _NoContext:
    """
    What the context getters return outside any context in checks, so
    that "is this object's own context current?" is one comparison.
    """

    __slots__ = ()
    request = _request = g = session = _session = None
    _cv_tokens = ()
    _cv_token = None


NO_CONTEXT: Any = _NoContext()


def current_record() -> RequestRecord | None:
    """The record of the guarded request in flight here, if any."""
    ctx = _request_get(None)
    if ctx is None:
        return None
    request = request_of(ctx)
    record = getattr(request, RECORD, None)
    if record is None or record.phase != ARMED:
        return None
    _note_endpoint(record, request)
    return record  # type: ignore[no-any-return]


def note_endpoint(record: RequestRecord, request: Any) -> None:
    """
    Fill in *record*'s endpoint from its in-flight *request*: it is armed
    when its session opens, before Flask matches the URL.
    """
    if record.endpoint is None:
        rule = getattr(request, "url_rule", None)
        if rule is not None:
            record.note_endpoint(rule.endpoint)


_note_endpoint = note_endpoint


def _in_unsampled_request() -> bool:
    """
    Whether a request runs here that its app's guard left unsampled
    (``CTXGUARD_SAMPLE_RATE`` below 1).
    """
    ctx = _request_get(None)
    if ctx is None or getattr(request_of(ctx), RECORD, None) is not None:
        return False
    state = ctx.app.extensions.get("ctxguard")
    return bool(getattr(state, "sampling", False))


def report_access(
    record: RequestRecord, subject: str, attribute: str, depth: int
) -> None:
    """
    Report that *subject* of *record*'s request was used here.

    *depth* counts the frames between this function and the code that made
    the access.
    """
    __tracebackhide__ = True  # pytest shows the user's frames only
    state = record.app_state
    if record.phase != ARMED and _sites.is_internal_caller(depth + 1):
        # Flask and Werkzeug reading a request while tearing it down. While
        # a request is in flight they only touch it in its own context, so
        # any other access counts, also through a Werkzeug property.
        return
    try:
        reporter = state.reporter
        accessor = current_record()
        if accessor is record:
            return
        unsampled = accessor is None and _in_unsampled_request()
        if accessor is not None or unsampled:
            code = "CG103"
        elif record.phase != ARMED:
            code = "CG102"
        else:
            code = "CG104"
        if reporter.is_ignored(code, subject):
            return
        origin_tag = record.tag()
        thread = threading.current_thread().name
        accessor_tag: RequestTag | None = None
        if code == "CG103":
            accessor_tag = None if accessor is None else accessor.tag()
            message = cross_request_message(
                subject,
                attribute,
                origin_tag,
                accessor_tag,
                ended=record.phase != ARMED,
            )
        elif code == "CG102":
            message = stale_access_message(
                subject, attribute, origin_tag, thread
            )
        else:
            message = cross_thread_message(
                subject, attribute, origin_tag, thread
            )
        violation = reporter.build(
            code,
            subject=subject,
            message=message,
            origin=origin_tag,
            accessor=accessor_tag,
            thread=thread,
            origin_site=state.view_site(record.endpoint),
            access_site=_sites.capture_site(depth + 1),
            access_stack=(
                _sites.capture_stack(depth + 1)
                if reporter.settings.stacks
                else None
            ),
        )
        reporter.report(violation)
    except ContaminationError:
        raise
    except Exception as exc:  # noqa: BLE001 - never break a request
        state.reporter.internal_error("checking an access", exc)
