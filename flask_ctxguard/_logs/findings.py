"""
Findings: ``contamination`` log events from any number of workers, grouped.

`Findings` reads JSON log streams (through ``_log_events.py``) and groups
their events by code, subject and the two sites, in memory bounded by the
number of distinct bugs, not by the number of lines. Each `Finding` renders
its report from its first event, rebuilt as the `Violation` it was logged
from; `printable` escapes logged text for a terminal. This is what
``python -m flask_ctxguard report`` runs (see ``_cli.py``).
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import re
from typing import IO, Any

from flask_ctxguard._core.tags import RequestTag
from flask_ctxguard._logs.events import (
    LineCounter,
    epoch_of,
    open_log,
    read_events,
    seen_at,
)
from flask_ctxguard._reporting.violations import RULES, Violation

__all__ = [
    "MAX_NAMES",
    "Finding",
    "Findings",
    "endpoint_of",
    "iso",
    "printable",
    "report_text",
    "violation_from_event",
]

#: Bound of the apps and endpoints kept per finding: request data from a
#: gigabyte of logs must not grow memory.
MAX_NAMES = 64

# C0 and C1 controls, DEL, and the format characters that reorder or hide
# text (bidi overrides, zero-width), as in Trojan Source.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def printable(text: str) -> str:
    r"""
    *text* with every control or text-reordering character escaped
    (``\n`` as ``\\n``, others as ``\\xNN`` or ``\\uNNNN``).
    """
    return _UNPRINTABLE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _side(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def endpoint_of(side: dict[str, Any]) -> str:
    """
    How a finding names one side (origin or accessor) of an event.

    The endpoint of a request, ``(no endpoint)`` for a request that routing
    did not match, ``(no request)`` for an access outside any request.
    """
    if "token" not in side:
        return "(no request)"
    endpoint = side.get("endpoint")
    return endpoint if isinstance(endpoint, str) else "(no endpoint)"


def iso(when: float | None) -> str | None:
    """*when* as an ISO 8601 UTC time, or `None`."""
    if when is None:
        return None
    moment = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def violation_from_event(event: dict[str, Any]) -> Violation:
    """
    The `Violation` a ``contamination`` event was logged from, as far as
    the event tells.
    """
    accessor = _side(event.get("accessor"))
    code = event["code"]
    rule = RULES.get(code)
    return Violation(
        code=code,
        kind=_text(event.get("kind")) or (rule.kind if rule else "unknown"),
        message=_text(event.get("message")) or "",
        subject=event["subject"],
        origin=_tag(_side(event.get("origin"))),
        accessor=_tag(accessor),
        thread=str(accessor.get("thread", "?")),
        origin_site=_text(event.get("origin_site")),
        access_site=_text(event.get("access_site")),
        origin_stack=_text(event.get("origin_stack")),
        access_stack=_text(event.get("access_stack")),
        hint=_text(event.get("hint")) or (rule.hint if rule else ""),
        value_type=_text(event.get("value_type")),
        value_repr=_text(event.get("value")),
        app=_text(event.get("app")),
        timestamp=epoch_of(event.get("timestamp")) or 0.0,
    )


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
        lines.append(f"  docs: {docs}")
    return "\n".join(lines)


def _printable_event(event: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in event.items():
        if key in ("origin_stack", "access_stack") and isinstance(value, str):
            safe[key] = "\n".join(map(printable, value.split("\n")))
        elif isinstance(value, str):
            safe[key] = printable(value)
        elif isinstance(value, dict):
            safe[key] = {
                name: printable(item) if isinstance(item, str) else item
                for name, item in value.items()
            }
        else:
            safe[key] = value
    return safe


@dataclasses.dataclass(slots=True)
class Finding:
    """
    One bug: every event of one code, subject, origin site and access site
    (CG106: of one code, subject and origin site, the line that set the
    value where it is known).

    `count` sums, over the processes that logged it, the highest running
    count (``repeats``) each reported: every process rate-limits its own
    repeats, and the prefix of a request token tells processes apart.
    """

    code: str
    kind: str
    subject: str
    origin_site: str | None
    access_site: str | None
    example: dict[str, Any]
    events: int = 0
    first_seen: float | None = None
    last_seen: float | None = None
    apps: set[str] = dataclasses.field(default_factory=set)
    origin_endpoints: set[str] = dataclasses.field(default_factory=set)
    accessor_endpoints: set[str] = dataclasses.field(default_factory=set)
    # (process, app) -> [highest repeats, events]
    _counts: dict[tuple[str | None, str | None], list[int]] = (
        dataclasses.field(default_factory=dict)
    )

    @property
    def count(self) -> int:
        """
        How many times the bug happened, as far as the logs tell.

        Never less than the number of events: events whose process is
        unknown (no request token) count at least once each.
        """
        return sum(max(top, seen) for top, seen in self._counts.values())

    def add(
        self, event: dict[str, Any], when: float | None, app: str | None
    ) -> None:
        """Count *event*, seen at *when*, in this finding."""
        # The per-event path of a gigabyte of logs: kept flat on purpose.
        self.events += 1
        repeats = event.get("repeats", 1)
        if repeats.__class__ is not int:
            repeats = 1
        origin = event.get("origin")
        accessor = event.get("accessor")
        if origin.__class__ is not dict:
            origin = _NO_SIDE
        if accessor.__class__ is not dict:
            accessor = _NO_SIDE
        bucket_key = (_process(accessor) or _process(origin), app)
        bucket = self._counts.get(bucket_key)
        if bucket is None:
            bucket = self._counts[bucket_key] = [0, 0]
        bucket[0] = max(bucket[0], repeats)
        bucket[1] += 1
        if when is not None:
            if self.first_seen is None or when < self.first_seen:
                self.first_seen = when
            if self.last_seen is None or when > self.last_seen:
                self.last_seen = when
        if app is not None and app not in self.apps:
            _bounded_add(self.apps, app)
        name = endpoint_of(origin)
        if name not in self.origin_endpoints:
            _bounded_add(self.origin_endpoints, name)
        name = endpoint_of(accessor)
        if name not in self.accessor_endpoints:
            _bounded_add(self.accessor_endpoints, name)

    def report(self) -> str:
        """The full report of this finding's first event."""
        return report_text(self.example)

    def to_dict(self) -> dict[str, Any]:
        """This finding as ``report --format json`` prints it."""
        return {
            "code": self.code,
            "kind": self.kind,
            "subject": self.subject,
            "origin_site": self.origin_site,
            "access_site": self.access_site,
            "count": self.count,
            "events": self.events,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "apps": sorted(self.apps),
            "origin_endpoints": sorted(self.origin_endpoints),
            "accessor_endpoints": sorted(self.accessor_endpoints),
            "report": self.report(),
        }


# A side that is no request: an origin of CG105, an accessor that is not an
# object.
_NO_SIDE: dict[str, Any] = {}


def _process(side: dict[str, Any]) -> str | None:
    token = side.get("token")
    if token.__class__ is str:
        prefix, dash, _ = token.rpartition("-")
        if dash:
            return prefix
    return None


def _bounded_add(names: set[str], name: str) -> None:
    if len(names) < MAX_NAMES or name in names:
        names.add(name)


# Distinct sample rates a report keeps: a fleet has a handful.
_MAX_RATES = 16


class Findings:
    """
    The findings of a stream of events, built in one pass.
    """

    def __init__(self) -> None:
        self.counter = LineCounter()
        self._findings: dict[tuple[Any, ...], Finding] = {}
        #: The CTXGUARD_SAMPLE_RATE values below 1 that events carried.
        self.sample_rates: set[float] = set()

    def read(self, stream: IO[bytes]) -> None:
        """
        Add every event of the JSON lines in *stream* (gzipped or not).

        Raises:
            OSError: when it cannot be read (including a corrupt gzip).
            EOFError: when a gzip stream ends early.
        """
        # Text, so that JSON parsing need not detect the encoding of every
        # line; bytes that are not UTF-8 become U+FFFD, and only '\n' ends
        # a line, as for 'wc -l'.
        text = io.TextIOWrapper(
            open_log(stream), encoding="utf-8", errors="replace", newline="\n"
        )
        add = self.add
        try:
            for event, wrapper in read_events(text, self.counter):
                add(event, wrapper)
        finally:
            # Leave the stream open: it is the caller's (standard input).
            text.detach()

    def add(
        self, event: dict[str, Any], wrapper: dict[str, Any] | None = None
    ) -> None:
        """Add one ``contamination`` event."""
        rate = event.get("sample_rate")
        if (
            isinstance(rate, int | float)
            and not isinstance(rate, bool)
            and 0 < rate < 1
            and rate not in self.sample_rates
            and len(self.sample_rates) < _MAX_RATES
        ):
            self.sample_rates.add(float(rate))
        origin_site = _text(event.get("origin_site"))
        access_site = _text(event.get("access_site"))
        if event["code"] == "CG106":
            # The root cause is where the value was set: one finding for
            # every request that held it (their views are in
            # accessor_endpoints), not one per endpoint.
            access_site = None
        key = (event["code"], event["subject"], origin_site, access_site)
        finding = self._findings.get(key)
        if finding is None:
            code = event["code"]
            rule = RULES.get(code)
            finding = self._findings[key] = Finding(
                code=code,
                kind=_text(event.get("kind"))
                or (rule.kind if rule else "unknown"),
                subject=event["subject"],
                origin_site=origin_site,
                access_site=access_site,
                example=event,
            )
        finding.add(event, seen_at(event, wrapper), _text(event.get("app")))

    def ordered(self) -> list[Finding]:
        """The findings, worst (most frequent) first."""
        return sorted(
            self._findings.values(),
            key=lambda f: (
                -f.count,
                -f.events,
                f.code,
                f.subject,
                f.access_site or "",
                f.origin_site or "",
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The whole result, as ``report --format json`` prints it."""
        found: dict[str, Any] = {
            "events": self.counter.events,
            "skipped_lines": self.counter.skipped,
            "findings": [finding.to_dict() for finding in self.ordered()],
        }
        if self.sample_rates:
            found["sample_rates"] = sorted(self.sample_rates)
        return found
