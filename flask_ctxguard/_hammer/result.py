"""
What a `hammer` run returns: the responses, the crossovers found in them,
the app's own errors, and their report for a person to act on.

`find_crossovers` searches every private response for the marks of the
other clients (see `_hammer_plan.find_marks`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from flask_ctxguard._core.docs_site import DOCS_URL
from flask_ctxguard._core.escape import escape
from flask_ctxguard._core.violation import Violation
from flask_ctxguard._hammer.plan import RequestSpec, Server, find_marks
from flask_ctxguard._logs.findings import Finding
from flask_ctxguard._logs.text_report import format_findings
from flask_ctxguard._reporting.capture import assertion, summary_line

_EXCERPT = 40
_SHOWN_PER_GROUP = 3
_DOCS = f"{DOCS_URL}hammer.html"


@dataclasses.dataclass(frozen=True, slots=True)
class HammerResponse:
    """
    One response `hammer` received, with the client and round it belongs to.

    *request* is the request as sent (canary in place); *step* is its
    position in the client's plan, from 0.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *step* added.
    """

    client: int
    round: int
    request: RequestSpec
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    step: int = 0

    @property
    def text(self) -> str:
        """The body decoded as UTF-8."""
        return self.body.decode("utf-8", "replace")


@dataclasses.dataclass(frozen=True, slots=True)
class Crossover:
    """
    A response that carried another client's canary.

    Args:
        client: The client that received it.
        round: The round, from 0.
        step: The request's position in the client's plan, from 0.
        request: The request as planned (``{client}`` not yet replaced).
        source: The client whose canary it was.
        canary: That canary, or the word of the source's plan that only
            the source sends (such as ``user3``), when that was found.
        where: ``"body"`` or ``"header 'Name'"``.
        excerpt: The text around the canary, control characters escaped.
        sent_in: The requests of *source*'s plan that carried the canary.

    .. versionadded:: 0.1.0
    """

    client: int
    round: int
    step: int
    request: RequestSpec
    source: int
    canary: str
    where: str
    excerpt: str
    sent_in: tuple[str, ...] = ()

    def __str__(self) -> str:
        origin = (
            f" (sent in {', '.join(self.sent_in)})" if self.sent_in else ""
        )
        return (
            f"client {self.client}, round {self.round}:"
            f" {self.request.describe()} returned client {self.source}'s"
            f" canary {self.canary!r}{origin} in the {self.where}:\n"
            f"    {self.excerpt}"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class HammerError:
    """
    An error of the app during a run that is not contamination, grouped:
    one per exception type and site, with how often it happened.

    .. versionadded:: 0.1.0
    """

    type: str
    message: str
    site: str | None
    count: int
    request: str
    traceback: str

    def __str__(self) -> str:
        at = f" at {self.site}" if self.site else ""
        return (
            f"{self.type}: {self.message}{at}, {self.count}"
            f" time{'' if self.count == 1 else 's'} (first on {self.request})"
        )


@dataclasses.dataclass(frozen=True, slots=True)
class HammerResult:
    """
    What `hammer` saw: every response, every violation, every crossover.

    Attributes:
        responses: By client, then round, then step.
        violations: Reported by the guard during the run.
        crossovers: Responses that carried another client's canary.
        errors: The app's own errors (exceptions that became 500s),
            grouped by type and site; they are not contamination.
        canaries: Each client's canary.
        server: ``"pooled"`` or ``"thread-per-connection"``.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *crossovers*, *errors*, *canaries* and *server* added.
    """

    responses: list[HammerResponse]
    violations: list[Violation]
    crossovers: list[Crossover] = dataclasses.field(default_factory=list)
    errors: list[HammerError] = dataclasses.field(default_factory=list)
    canaries: dict[int, str] = dataclasses.field(default_factory=dict)
    server: Server = "pooled"

    def for_client(self, client: int) -> list[HammerResponse]:
        """The responses of one client, in the order it sent them."""
        return [r for r in self.responses if r.client == client]

    @property
    def is_clean(self) -> bool:
        """Whether there was neither a violation nor a crossover."""
        return not (self.violations or self.crossovers)

    def report(self) -> str:
        """
        Every crossover, violation and error, for a person to act on.
        """
        parts = []
        if self.crossovers:
            parts.append(format_crossovers(self.crossovers))
        if self.violations:
            # Grouped by root cause (finding_key), as the report command
            # groups logs: one bind line hit by eight endpoints is one.
            findings = Finding.of_violations(self.violations)
            count = len(self.violations)
            noun = "violation" if count == 1 else "violations"
            groups = len(findings)
            parts.append(
                f"{count} request-context contamination {noun} in"
                f" {groups} finding{'' if groups == 1 else 's'}:\n\n"
                f"{format_findings(findings)}"
            )
        if self.errors:
            parts.append(format_errors(self.errors))
        return "\n\n".join(parts) or "hammer: clean."

    def assert_clean(self) -> None:
        """
        Fail with the full report if there was any violation or crossover.

        Raises:
            AssertionError: listing every crossover and violation (and,
                for context, the app's own errors).
        """
        __tracebackhide__ = True
        if not self.is_clean:
            raise assertion(self.report(), self.summary())

    def summary(self) -> str:
        """The report in one line: what was found, the first finding."""
        parts = []
        if self.crossovers:
            count = len(self.crossovers)
            parts.append(f"{count} crossover{'' if count == 1 else 's'}")
        if self.violations:
            parts.append(summary_line(self.violations))
        if self.errors:
            total = sum(error.count for error in self.errors)
            parts.append(f"{total} app error{'' if total == 1 else 's'}")
        return "hammer: " + ("; ".join(parts) or "clean")


# -- crossovers and their report --------------------------------------------


def find_crossovers(
    responses: Iterable[HammerResponse],
    canaries: Mapping[int, str],
    plans: Mapping[int, Sequence[RequestSpec]],
) -> list[Crossover]:
    """
    Every place a response carries what identifies another client: its
    canary, or a word only that client's plan has (see `find_marks`).

    The search ignores case (an app may upper-case a name) and skips the
    responses of requests that are not *private*. One crossover is
    reported per response, place and source client.
    """
    marks = find_marks(canaries, plans)
    found = []
    for response in responses:
        planned = plans[response.client][response.step]
        if not planned.private:
            continue
        places = [("body", response.text)] + [
            (f"header {escape(name)!r}", value)
            for name, value in response.headers
        ]
        for where, text in places:
            for source, source_marks in marks.items():
                if source == response.client:
                    continue
                for mark in source_marks:
                    match = mark.pattern.search(text)
                    if match is None:
                        continue
                    found.append(
                        Crossover(
                            client=response.client,
                            round=response.round,
                            step=response.step,
                            request=planned,
                            source=source,
                            canary=mark.text,
                            where=where,
                            excerpt=_excerpt(
                                text, match.start(), len(mark.text)
                            ),
                            sent_in=mark.sent_in,
                        )
                    )
                    break
    return found


def _excerpt(text: str, start: int, length: int) -> str:
    left = max(start - _EXCERPT, 0)
    right = min(start + length + _EXCERPT, len(text))
    return (
        ("..." if left else "")
        + escape(text[left:right])
        + ("..." if right < len(text) else "")
    )


def format_crossovers(crossovers: Sequence[Crossover]) -> str:
    """
    The report of *crossovers*, grouped by request and place, a few
    examples each.
    """
    groups: dict[tuple[int, str, str], list[Crossover]] = {}
    for crossover in crossovers:
        key = (crossover.step, crossover.request.describe(), crossover.where)
        groups.setdefault(key, []).append(crossover)
    count = len(crossovers)
    lines = [
        f"hammer: {count} crossover{'' if count == 1 else 's'}: responses"
        " that carried another client's canary, so one client's data"
        " reached another client."
    ]
    for (step, request, where), group in groups.items():
        rounds = len({c.round for c in group})
        lines.append("")
        lines.append(
            f"{request} (step {step + 1} of the plan), in the {where}:"
            f" {len(group)} time{'' if len(group) == 1 else 's'} in"
            f" {rounds} round{'' if rounds == 1 else 's'}"
        )
        lines.extend(f"  {c}" for c in group[:_SHOWN_PER_GROUP])
        if len(group) > _SHOWN_PER_GROUP:
            lines.append(f"  ... and {len(group) - _SHOWN_PER_GROUP} more")
        lines.append(
            f"  fix: find what '{request}' reads that an earlier request"
            " left outside its own context: a module global, a class"
            " attribute, a threading.local, a cache (functools.lru_cache)"
            " not keyed by the user, or a ContextVar set and never reset."
        )
    lines.append(f"  docs: {_DOCS}#crossovers")
    return "\n".join(lines)


def format_errors(errors: Sequence[HammerError]) -> str:
    """One line per kind of error the app raised."""
    total = sum(error.count for error in errors)
    lines = [
        f"hammer: the app raised {total} error{'' if total == 1 else 's'}"
        " that are not contamination (answered 500):"
    ]
    lines.extend(f"  {error}" for error in errors)
    return "\n".join(lines)
