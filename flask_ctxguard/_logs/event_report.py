"""
One logged ``contamination`` event, read back: its `Violation` and report.

`violation_from_event` rebuilds the `Violation` an event was logged from;
`report_text` renders it as ``str(violation)`` does, with the logged text
escaped (`flask_ctxguard._core.escape.escape`); `endpoint_of` names a side
of an event (a request's endpoint, ``(no route)``, ``(no request)``) and
`iso` writes a time.
"""

from __future__ import annotations

import datetime
from typing import Any

from flask_ctxguard._core.docs_site import DOCS_URL
from flask_ctxguard._core.escape import escape
from flask_ctxguard._core.tags import RequestTag
from flask_ctxguard._core.violation import RULES, Violation, new_violation
from flask_ctxguard._logs.times import epoch_of

__all__ = [
    "NO_REQUEST",
    "NO_ROUTE",
    "endpoint_of",
    "event_of",
    "iso",
    "report_text",
    "violation_from_event",
]

#: How a finding names a request that routing did not match (endpoint
#: null): all such requests are one entry, whatever their paths.
NO_ROUTE = "(no route)"
#: How a finding names an access from outside any request.
NO_REQUEST = "(no request)"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _side(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def endpoint_of(side: dict[str, Any]) -> str:
    """
    How a finding names one side (origin or accessor) of an event.

    The endpoint of a request, `NO_ROUTE` for a request that routing did
    not match, `NO_REQUEST` for an access outside any request.
    """
    if "token" not in side:
        return NO_REQUEST
    endpoint = side.get("endpoint")
    return endpoint if isinstance(endpoint, str) else NO_ROUTE


def iso(when: float | None) -> str | None:
    """*when* as an ISO 8601 UTC time, or `None`."""
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def event_of(violation: Violation) -> dict[str, Any]:
    """*violation* as the ``contamination`` event it would be logged as."""
    return {"event": "contamination", **violation.to_dict()}


def violation_from_event(event: dict[str, Any]) -> Violation:
    """
    The `Violation` a ``contamination`` event was logged from, as far as
    the event tells.

    The rule's page is under the docs site the event's ``docs`` URL names
    (an app's ``CTXGUARD_DOCS_URL``), else the project's.
    """
    accessor = _side(event.get("accessor"))
    code = event["code"]
    return new_violation(
        code,
        kind=_text(event.get("kind")),
        message=_text(event.get("message")) or "",
        subject=event["subject"],
        origin=_tag(_side(event.get("origin"))),
        accessor=_tag(accessor),
        thread=str(accessor.get("thread", "?")),
        origin_site=_text(event.get("origin_site")),
        access_site=_text(event.get("access_site")),
        origin_stack=_text(event.get("origin_stack")),
        access_stack=_text(event.get("access_stack")),
        hint=_text(event.get("hint")),
        value_type=_text(event.get("value_type")),
        value_repr=_text(event.get("value")),
        app=_text(event.get("app")),
        timestamp=epoch_of(event.get("timestamp")) or 0.0,
        docs_url=_docs_base(event.get("docs"), code),
    )


def _docs_base(docs: object, code: str) -> str:
    suffix = f"rules/{code.lower()}.html"
    if (
        isinstance(docs, str)
        and docs.startswith(("http://", "https://"))
        and docs.endswith(suffix)
    ):
        return docs[: -len(suffix)]
    return DOCS_URL


def _tag(side: dict[str, Any]) -> RequestTag | None:
    if "token" not in side:
        return None
    thread_id = side.get("thread_id")
    started = side.get("started")
    return RequestTag(
        token=str(side["token"]),
        thread_id=thread_id if isinstance(thread_id, int) else 0,
        thread_name=str(side.get("thread", "?")),
        method=str(side.get("method", "?")),
        path=str(side.get("path", "?")),
        endpoint=_text(side.get("endpoint")),
        started=started if isinstance(started, int | float) else 0.0,
    )


def report_text(event: dict[str, Any]) -> str:
    """
    The full report of *event*, as ``str(violation)`` renders it.

    Rules the installed package does not know (a newer version logged
    them) still render, without the rule's labels. Control characters of
    the logged text (request paths, endpoints, thread names) are escaped,
    so the report is safe to print; stacks keep their line breaks.
    """
    violation = violation_from_event(_printable_event(event))
    if violation.code in RULES:
        return str(violation)
    lines = [f"{violation.code} {violation.kind}: {violation.message}"]
    if violation.access_site:
        lines.append(f"  at:   {violation.access_site}")
    if violation.origin_site:
        lines.append(f"  from: {violation.origin_site}")
    if violation.hint:
        lines.append(f"  fix: {violation.hint}")
    docs = _text(event.get("docs"))
    if docs:
        lines.append(f"  docs: {escape(docs)}")
    return "\n".join(lines)


def _printable_event(event: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in event.items():
        if key in ("origin_stack", "access_stack") and isinstance(value, str):
            safe[key] = escape(value, keep_newlines=True)
        elif isinstance(value, str):
            safe[key] = escape(value)
        elif isinstance(value, dict):
            safe[key] = {
                name: escape(item) if isinstance(item, str) else item
                for name, item in value.items()
            }
        else:
            safe[key] = value
    return safe
