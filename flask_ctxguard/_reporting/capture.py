"""
Violations collected by a test harness, and the texts a test shows.

- `capture_violations` collects every violation any guarded app reports
  inside a block (`flask_ctxguard.testing`, `hammer` and the pytest plugin
  build on it).
- `group_violations` turns them into findings: the accesses of one
  crossing, and crossings of one bug, are one finding.
- `finding_report` and `finding_line` are a finding's full report and its
  one line; `failure_text` is what a failing test shows, `summary_line`
  its one line in pytest's short test summary (`assertion` carries it).
- `finding_key` is what makes findings of several tests one finding in a
  run's closing summary.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from flask_ctxguard._core.violation import Violation
from flask_ctxguard._reporting.grouping import violation_key
from flask_ctxguard._reporting.signals import contamination_detected

__all__ = [
    "assertion",
    "capture_violations",
    "failure_text",
    "finding_key",
    "finding_line",
    "finding_report",
    "format_violations",
    "group_violations",
    "summary_line",
]


@contextlib.contextmanager
def capture_violations() -> Iterator[list[Violation]]:
    """
    Collect every violation any guarded app reports inside the block.

    Yields the list the violations are appended to, oldest first; it is
    filled from any thread.

    .. versionadded:: 0.1.0
    """
    found: list[Violation] = []
    lock = threading.Lock()

    def receiver(sender: Any, violation: Violation, **_: Any) -> None:
        with lock:
            found.append(violation)

    contamination_detected.connect(receiver, weak=False)
    try:
        yield found
    finally:
        contamination_detected.disconnect(receiver)


def _crossing(violation: Violation) -> tuple[object, ...]:
    """
    One crossing: the same data from the same request to the same request
    (or thread), counted in a finding's text. A ContextVar leak is one
    crossing however many requests held it.
    """
    origin = violation.origin.token if violation.origin else None
    if violation.code == "CG106":
        return (violation.app, violation.code, violation.subject, origin)
    accessor = (
        violation.accessor.token if violation.accessor else violation.thread
    )
    return (
        violation.app,
        violation.code,
        violation.subject,
        origin,
        accessor,
        None if violation.origin else violation.access_site,
    )


def group_violations(
    violations: Iterable[Violation],
) -> list[list[Violation]]:
    """
    *violations* grouped into findings, in the order of their first
    violation.

    A finding is a root cause: one app, code and subject, and the site
    that made the contamination possible (`grouping.finding_key`: the line
    that set or kept the value, else the access site). The accesses of
    one crossing, and the crossings of one bug hit by many requests, are
    one finding.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       Grouped by root cause, as ``report`` groups.
    """
    findings: dict[tuple[object, ...], list[Violation]] = {}
    for violation in violations:
        key = (violation.app, *violation_key(violation))
        findings.setdefault(key, []).append(violation)
    return list(findings.values())


def finding_key(violation: Violation) -> str:
    """
    `grouping.finding_key` of *violation* as one string, so that findings
    of several tests, also from pytest-xdist's workers, are one finding of
    the run.
    """
    return "\0".join(part or "" for part in violation_key(violation))


def finding_report(group: Sequence[Violation]) -> str:
    """The full report of one finding: its first violation and counts."""
    report = str(group[0])
    count = len(group)
    if count == 1:
        return report
    first = group[0]
    crossings = len({_crossing(v) for v in group})
    if first.code == "CG106":
        return f"{report}\n  (held by {count} requests)"
    sites = {v.access_site for v in group} - {first.access_site, None}
    extra = f"  ({count} accesses"
    if crossings > 1:
        extra += f" in {crossings} crossings"
    if sites:
        extra += "; also at " + ", ".join(sorted(s for s in sites if s))
    return f"{report}\n{extra})"


def finding_line(group: Sequence[Violation]) -> str:
    """One line for *group*: code, slug, subject, requests and count."""
    first = group[0]
    origin = f" from {first.origin.name}" if first.origin else ""
    if first.accessor is not None:
        into = f" into {first.accessor.name}"
    elif first.code == "CG106":
        into = ""
    else:
        into = f" in thread {first.thread!r}"
    count = f" (x{len(group)})" if len(group) > 1 else ""
    return f"{first.code} {first.kind}: {first.subject}{origin}{into}{count}"


def format_violations(violations: Iterable[Violation]) -> str:
    """
    The full reports of *violations*, one per finding (see
    `group_violations`), each with its counts, separated by blank lines.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       Grouped by root cause, as ``report`` groups.
    """
    return "\n\n".join(
        finding_report(group) for group in group_violations(violations)
    )


def failure_text(violations: Sequence[Violation]) -> str:
    """
    The text a test fails with: a headline, then each finding once.
    """
    groups = group_violations(violations)
    reports = "\n\n".join(finding_report(group) for group in groups)
    return f"{_headline(groups)}:\n\n{reports}"


def summary_line(violations: Sequence[Violation]) -> str:
    """
    `failure_text` in one line: the count and the first finding's line.
    """
    groups = group_violations(violations)
    more = f" (and {len(groups) - 1} more)" if len(groups) > 1 else ""
    return f"{_headline(groups)}: {finding_line(groups[0])}{more}"


def _headline(groups: Sequence[Sequence[Violation]]) -> str:
    count = len(groups)
    noun = "finding" if count == 1 else "findings"
    return f"{count} request-context contamination {noun}"


def assertion(text: str, summary: str) -> AssertionError:
    """
    An `AssertionError` saying *text*, with *summary* as its
    ``ctxguard_summary``: the one line the pytest plugin gives it in the
    short test summary, where pytest on CI would repeat all of *text*.
    """
    error = AssertionError(text)
    error.ctxguard_summary = summary  # type: ignore[attr-defined]
    return error
