"""
The run's closing ``ctxguard`` section and its exit status.

Findings come from every test report, in this process or from
pytest-xdist's workers, as plain strings; findings of several tests with
the same key (code, subject and the site that made the contamination
possible) are one finding, listed once with the tests it occurred in.
Warn mode shows each finding's full report; strict mode, whose failures
already showed them, one line each. A run that guarded nothing says why,
instead of a count that reads as clean.

Imports nothing heavy: the closing summary of a run whose plugin is off
loads it only when there is something to say.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

__all__ = ["RunResults", "SummaryEntry", "tests_named", "write_summary"]

#: How many tests a finding names before "and N more".
MAX_TESTS_NAMED = 5


@dataclasses.dataclass(slots=True)
class SummaryEntry:
    """
    One finding's entry in the run's closing section: its line, its full
    report and the tests it occurred in (findings themselves are
    `flask_ctxguard._logs.findings.Finding`).
    """

    line: str
    report: str
    tests: list[str]


@dataclasses.dataclass(slots=True)
class RunResults:
    """What the run's reports carried, from every process."""

    findings: dict[str, SummaryEntry] = dataclasses.field(default_factory=dict)
    problems: list[str] = dataclasses.field(default_factory=list)
    #: Whether any process guarded an app.
    guarded: bool = False

    def add(self, nodeid: str, payload: list[list[str]]) -> None:
        """The findings *payload* of the test *nodeid*."""
        for key, line, report in payload:
            finding = self.findings.get(key)
            if finding is None:
                self.findings[key] = SummaryEntry(line, report, [nodeid])
            elif nodeid not in finding.tests:
                finding.tests.append(nodeid)

    def add_problems(self, problems: list[str]) -> None:
        """Apps a process could not guard, each said once."""
        for problem in problems:
            if problem not in self.problems:
                self.problems.append(problem)

    def unguarded_reason(self, inactive: str | None) -> str | None:
        """Why the run guarded nothing, if it did not and cannot have."""
        if inactive is not None:
            return inactive
        if not self.guarded and self.problems:
            return self.problems[0]
        return None


def tests_named(tests: list[str]) -> str:
    """*tests* for a summary: all of a few, the first of many."""
    shown = ", ".join(tests[:MAX_TESTS_NAMED])
    more = len(tests) - MAX_TESTS_NAMED
    if more > 0:
        shown += f" and {more} more"
    return shown


def write_summary(
    write: Callable[[str], None],
    section: Callable[[str], None],
    *,
    mode: str,
    results: RunResults,
    inactive: str | None,
) -> None:
    """Write the ``ctxguard`` section, if the run has anything to say."""
    unguarded = results.unguarded_reason(inactive)
    findings = list(results.findings.values())
    if mode == "off" and not findings and not results.problems:
        return
    section("ctxguard")
    for finding in findings:
        count = len(finding.tests)
        if mode == "warn":
            write(finding.report)
            where = "test" if count == 1 else f"{count} tests"
            write(f"  in {where}: {tests_named(finding.tests)}")
            write("")
        else:
            write(f"{tests_named(finding.tests)}: {finding.line}")
    for problem in results.problems:
        write(f"problem: {problem}")
    if unguarded is not None:
        write(f"ctxguard: guarded nothing: {unguarded}")
        return
    if not results.guarded and not findings:
        write(
            "ctxguard: nothing checked: no Flask app pushed a context or"
            " handled a request"
        )
        return
    tests = len({test for finding in findings for test in finding.tests})
    total = len(findings)
    write(
        f"ctxguard: {total} finding{'' if total == 1 else 's'} in"
        f" {tests} test{'' if tests == 1 else 's'}"
    )
