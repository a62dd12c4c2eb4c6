"""
What a test's report carries and how its outcome changes.

Each report of a guarded test carries its findings as plain strings
(`findings_payload`), so that they travel from pytest-xdist's workers to
the run's closing summary. In strict mode a test during which
contamination happened fails with its findings, once, where it failed: a
test that passed or skipped itself fails; one that failed anyway keeps
its error and gets a ``ctxguard`` section. A failure the guard makes is
`ContaminationFailure`'s, as if the test had raised it: its full text
above, one line in pytest's short test summary.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from flask_ctxguard._core.violation import Violation
from flask_ctxguard._pytest.crash import ContaminationFailure, shorten_crash
from flask_ctxguard._reporting.capture import (
    failure_text,
    finding_key,
    finding_line,
    finding_report,
    group_violations,
    summary_line,
)

__all__ = ["apply_strict", "failure", "findings_payload"]


def findings_payload(found: Sequence[Violation]) -> list[list[str]]:
    """
    *found* as findings: ``[key, one line, full report]`` each, the key
    being what makes findings of several tests one (`finding_key`).
    """
    return [
        [finding_key(group[0]), finding_line(group), finding_report(group)]
        for group in group_violations(found)
    ]


def apply_strict(
    report: pytest.TestReport, found: Sequence[Violation]
) -> None:
    """Fail *report*'s test with *found*, or add them to its failure."""
    text = failure_text(found)
    if report.skipped and not hasattr(report, "wasxfail"):
        # A test that skipped itself after the contamination may have
        # skipped because of it (a leaked login that looks like another
        # test's): it fails, with its findings and its skip reason.
        text += (
            "\n\nThe test skipped itself after this contamination"
            f" ({_skip_reason(report)}); it fails, since the skip may come"
            " from it."
        )
    elif not report.passed:
        report.sections.append(("ctxguard", text))
        return
    _fail(report, ContaminationFailure(text, summary_line(found)))


def failure(found: Sequence[Violation]) -> ContaminationFailure:
    """What a test fails with when it saw *found*."""
    return ContaminationFailure(failure_text(found), summary_line(found))


def _fail(report: pytest.TestReport, error: ContaminationFailure) -> None:
    """Fail *report*'s test as if it had raised *error*."""
    try:
        raise error
    except ContaminationFailure:
        excinfo = pytest.ExceptionInfo.from_current()
    report.outcome = "failed"
    report.longrepr = excinfo.getrepr(style="value", tbfilter=False)
    shorten_crash(report, excinfo)


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)
