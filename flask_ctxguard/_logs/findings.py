"""
Findings: violations grouped by root cause, the one ``Finding`` type.

A `Finding` is every occurrence of one bug: one code, subject and the site
that made the contamination possible (`finding_key`: the origin site, else
the access site), with what it reached inside (endpoints, paths, threads,
access sites, request counts, first and last time) and the first
occurrences themselves. `Findings` builds them in one pass from log events
(``python -m flask_ctxguard report``) or from `Violation` objects (the
``hammer`` report, the pytest plugin), in memory bounded by the number of
distinct bugs, not by the number of lines.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable
from typing import IO, Any

from flask_ctxguard._core.violation import RULES, Violation
from flask_ctxguard._logs.event_report import (
    endpoint_of,
    event_of,
    iso,
    report_text,
)
from flask_ctxguard._logs.events import LineCounter, open_log, read_events
from flask_ctxguard._logs.tally import (
    MAX_NAMES,
    MAX_PATHS,
    OTHERS,
    Endpoint,
    bounded_add,
    process_of,
    ranked,
    tally,
)
from flask_ctxguard._logs.times import seen_at
from flask_ctxguard._reporting.grouping import (
    FindingKey,
    event_key,
    finding_key,
    key_site,
)

__all__ = [
    "MAX_LOCATIONS",
    "MAX_OCCURRENCES",
    "MAX_SAMPLES",
    "Finding",
    "Findings",
]

#: The raw events kept per finding (`Finding.occurrences`): the first ones.
MAX_OCCURRENCES = 20
#: The ``file:line`` locations of occurrences kept per finding.
MAX_LOCATIONS = 1000
#: The occurrences a timeline draws from (`Finding.samples`).
MAX_SAMPLES = 8


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


# A side that is no request: an origin of CG105, an accessor that is not an
# object.
_NO_SIDE: dict[str, Any] = {}


@dataclasses.dataclass(slots=True)
class Finding:
    """
    One bug: every occurrence of one code, subject and root-cause site.

    The site is *origin_site* (the line that set or kept the value, or the
    view of the request the data belonged to) when the occurrences have
    one, else *access_site* (see `finding_key`). `count` sums, over the
    processes that logged it, the highest running count (``repeats``)
    each reported: every process rate-limits its own repeats, and the
    prefix of a request token tells processes apart.

    Attributes:
        code, kind, subject: The rule and what was touched.
        origin_site: The root-cause site, or `None` when the finding is
            grouped by its access site.
        access_site: The first occurrence's access site (all of them, with
            counts, are in `access_sites`, a request's by its endpoint).
        example: The first occurrence, as an event dict.
        occurrences: The first `MAX_OCCURRENCES` occurrences, as event
            dicts (raw log events, or `Violation.to_dict` plus ``event``).
        locations: Where the first `MAX_LOCATIONS` occurrences were read,
            as ``"file:line"`` (``"-"`` for standard input); the first
            entries are those of `occurrences`. Empty for violations.
        requests: The requests that touched the data, by endpoint; those
            no route matched are one `NO_ROUTE` entry, accesses outside any
            request one `NO_REQUEST` entry.
        threads: The threads that touched it, with how many events each.

    .. versionchanged:: 0.1.0
       Grouped by root cause; *occurrences*, *locations*, *requests*,
       *threads* and *access_sites* added.
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
    access_sites: dict[str, int] = dataclasses.field(default_factory=dict)
    requests: dict[str, Endpoint] = dataclasses.field(default_factory=dict)
    threads: dict[str, int] = dataclasses.field(default_factory=dict)
    occurrences: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    locations: list[str] = dataclasses.field(default_factory=list)
    #: When each of `occurrences` was seen.
    occurrence_times: list[float | None] = dataclasses.field(
        default_factory=list
    )
    # (process, app) -> [highest repeats, events]
    _counts: dict[tuple[str | None, str | None], list[int]] = (
        dataclasses.field(default_factory=dict)
    )

    @classmethod
    def of_event(cls, event: dict[str, Any]) -> Finding:
        """An empty finding of the bug *event* is an occurrence of."""
        _, _, origin_site, access_site = event_key(event)
        code = event["code"]
        rule = RULES.get(code)
        return cls(
            code=code,
            kind=_text(event.get("kind"))
            or (rule.kind if rule else "unknown"),
            subject=event["subject"],
            origin_site=origin_site,
            access_site=access_site or _text(event.get("access_site")),
            example=event,
        )

    @classmethod
    def of_violations(cls, violations: Iterable[Violation]) -> list[Finding]:
        """*violations* grouped into findings, worst first."""
        findings = Findings()
        for violation in violations:
            findings.add_violation(violation)
        return findings.ordered()

    @property
    def key(self) -> FindingKey:
        """The `finding_key` of this finding."""
        return finding_key(
            self.code, self.subject, self.origin_site, self.access_site
        )

    @property
    def grouped_by(self) -> str:
        """``"origin_site"`` or ``"access_site"``: what `key` holds."""
        return "origin_site" if self.origin_site else "access_site"

    @property
    def samples(self) -> list[tuple[dict[str, Any], float | None]]:
        """The first `MAX_SAMPLES` occurrences with when each was seen."""
        pairs = zip(self.occurrences, self.occurrence_times, strict=True)
        return list(pairs)[:MAX_SAMPLES]

    @property
    def count(self) -> int:
        """
        How many times the bug happened, as far as the logs tell.

        Never less than the number of events: events whose process is
        unknown (no request token) count at least once each.
        """
        return sum(max(top, seen) for top, seen in self._counts.values())

    def add(
        self,
        event: dict[str, Any],
        when: float | None,
        app: str | None,
        location: str | None = None,
    ) -> None:
        """Count *event*, seen at *when* and read at *location*."""
        # The per-event path of a gigabyte of logs: kept flat on purpose.
        self.events += 1
        if len(self.occurrences) < MAX_OCCURRENCES:
            self.occurrences.append(event)
            self.occurrence_times.append(when)
        if location is not None and len(self.locations) < MAX_LOCATIONS:
            self.locations.append(location)
        repeats = event.get("repeats", 1)
        if repeats.__class__ is not int:
            repeats = 1
        origin = event.get("origin")
        accessor = event.get("accessor")
        if origin.__class__ is not dict:
            origin = _NO_SIDE
        if accessor.__class__ is not dict:
            accessor = _NO_SIDE
        bucket_key = (process_of(accessor) or process_of(origin), app)
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
            bounded_add(self.apps, app)
        name = endpoint_of(origin)
        if name not in self.origin_endpoints:
            bounded_add(self.origin_endpoints, name)
        name = endpoint_of(accessor)
        if name not in self.accessor_endpoints:
            bounded_add(self.accessor_endpoints, name)
        self._add_request(name, accessor)
        site = _text(event.get("access_site"))
        tally(self.access_sites, key_site(site) if site else "-")
        thread = accessor.get("thread")
        tally(self.threads, thread if isinstance(thread, str) else "?")

    def _add_request(self, name: str, accessor: dict[str, Any]) -> None:
        entry = self.requests.get(name)
        if entry is None:
            if len(self.requests) >= MAX_NAMES:
                name = OTHERS
            entry = self.requests.setdefault(name, Endpoint())
        entry.events += 1
        method = accessor.get("method")
        if isinstance(method, str) and len(entry.methods) < MAX_PATHS:
            entry.methods.add(method)
        path = accessor.get("path")
        if isinstance(path, str):
            if path in entry.paths:
                entry.paths[path] += 1
            elif len(entry.paths) < MAX_PATHS:
                entry.paths[path] = 1

    def report(self) -> str:
        """The full report of this finding's first occurrence."""
        return report_text(self.example)

    def to_dict(self) -> dict[str, Any]:
        """This finding as ``report --format json`` prints it."""
        return {
            "code": self.code,
            "kind": self.kind,
            "subject": self.subject,
            "grouped_by": self.grouped_by,
            "origin_site": self.origin_site,
            "access_site": self.access_site,
            "count": self.count,
            "events": self.events,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "apps": sorted(self.apps),
            "origin_endpoints": sorted(self.origin_endpoints),
            "accessor_endpoints": sorted(self.accessor_endpoints),
            "requests": [
                entry.to_dict(name)
                for name, entry in sorted(
                    self.requests.items(), key=lambda i: (-i[1].events, i[0])
                )
            ],
            "threads": ranked(self.threads, "thread"),
            "access_sites": ranked(self.access_sites, "site"),
            "occurrences": [
                {
                    "location": (
                        self.locations[index]
                        if index < len(self.locations)
                        else None
                    ),
                    "event": event,
                }
                for index, event in enumerate(self.occurrences)
            ],
            "more_locations": self.locations[len(self.occurrences) :],
            "omitted_occurrences": self.events
            - max(len(self.locations), len(self.occurrences)),
            "report": self.report(),
        }


# Distinct sample rates a report keeps: a fleet has a handful.
_MAX_RATES = 16


class Findings:
    """
    The findings of a stream of events or violations, built in one pass.
    """

    def __init__(self) -> None:
        self.counter = LineCounter()
        self._findings: dict[FindingKey, Finding] = {}
        #: The CTXGUARD_SAMPLE_RATE values below 1 that events carried.
        self.sample_rates: set[float] = set()

    def read(self, stream: IO[bytes], name: str = "-") -> None:
        """
        Add every event of the log lines in *stream* (gzipped or not),
        read from the file *name*.

        Raises:
            OSError: when it cannot be read (including a corrupt gzip).
            EOFError: when a gzip stream ends early.
            UnreadableEventError: for a line that claims to be an event
                but cannot be read.
        """
        # Text, so that JSON parsing need not detect the encoding of every
        # line; bytes that are not UTF-8 become U+FFFD, and only '\n' ends
        # a line, as for 'wc -l'.
        text = io.TextIOWrapper(
            open_log(stream), encoding="utf-8", errors="replace", newline="\n"
        )
        add = self.add
        # Line numbers count per file; the counter counts every file.
        counter = LineCounter()
        try:
            for event, wrapper, line in read_events(text, counter):
                add(event, wrapper, f"{name}:{line}")
        finally:
            self.counter.lines += counter.lines
            self.counter.events += counter.events
            self.counter.shared += counter.shared
            # Leave the stream open: it is the caller's (standard input).
            text.detach()

    def add(
        self,
        event: dict[str, Any],
        wrapper: dict[str, Any] | None = None,
        location: str | None = None,
    ) -> None:
        """Add one ``contamination`` event, read at *location*."""
        rate = event.get("sample_rate")
        if (
            isinstance(rate, int | float)
            and not isinstance(rate, bool)
            and 0 < rate < 1
            and rate not in self.sample_rates
            and len(self.sample_rates) < _MAX_RATES
        ):
            self.sample_rates.add(float(rate))
        key = event_key(event)
        finding = self._findings.get(key)
        if finding is None:
            finding = self._findings[key] = Finding.of_event(event)
        finding.add(
            event, seen_at(event, wrapper), _text(event.get("app")), location
        )

    def add_violation(self, violation: Violation) -> None:
        """Add one `Violation`, as the event it would be logged as."""
        self.add(event_of(violation))

    def in_order(self) -> list[Finding]:
        """The findings in the order of their first occurrence."""
        return list(self._findings.values())

    def ordered(self) -> list[Finding]:
        """The findings, worst (most frequent) first."""
        return sorted(
            self._findings.values(),
            key=lambda f: (
                -f.count,
                -f.events,
                f.code,
                f.subject,
                f.origin_site or "",
                f.access_site or "",
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
