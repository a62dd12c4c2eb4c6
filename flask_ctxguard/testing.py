"""
Helpers for testing an app with flask_ctxguard, with any test runner.

- `capture_violations` collects every violation reported while it is
  active, from every guarded app.
- `assert_no_contamination` fails with the full reports if there was any.
- `hammer` serves an app like production (pooled worker threads,
  keep-alive) on 127.0.0.1 and fires concurrent clients at it; it finds
  violations and crossovers, one client's canary in another's response.

The pytest plugin (``pytest --ctxguard``) is a thin layer over these.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ._extension import CtxGuard
from ._hammer import (  # the hammer lives in _hammer.py (issue 13)
    Crossover,
    HammerError,
    HammerResponse,
    HammerResult,
    RequestSpec,
    hammer,
)
from ._signals import contamination_detected
from ._violations import Violation

__all__ = [
    "Crossover",
    "HammerError",
    "HammerResponse",
    "HammerResult",
    "RequestSpec",
    "assert_no_contamination",
    "capture_violations",
    "format_violations",
    "hammer",
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


def format_violations(violations: Iterable[Violation]) -> str:
    """
    The full reports of *violations*, separated by blank lines.

    Repeats (same app, code, subject and sites) are shown once, with their
    count.
    """
    groups: dict[tuple[object, ...], list[Violation]] = {}
    for violation in violations:
        groups.setdefault((violation.app, *violation.key), []).append(
            violation
        )
    reports = []
    for group in groups.values():
        report = str(group[0])
        if len(group) > 1:
            report += f"\n  (seen {len(group)} times)"
        reports.append(report)
    return "\n\n".join(reports)


def _fail_if_any(violations: Sequence[Violation]) -> None:
    __tracebackhide__ = True
    if violations:
        count = len(violations)
        noun = "violation" if count == 1 else "violations"
        msg = (
            f"{count} request-context contamination {noun}:\n\n"
            f"{format_violations(violations)}"
        )
        raise AssertionError(msg)


@contextlib.contextmanager
def _no_contamination() -> Iterator[list[Violation]]:
    __tracebackhide__ = True
    with capture_violations() as found:
        yield found
    _fail_if_any(found)


def assert_no_contamination(
    *sources: CtxGuard | Iterable[Violation],
) -> contextlib.AbstractContextManager[list[Violation]]:
    """
    Fail with the full reports if there was any contamination.

    Called with guards or lists of violations, it checks them at once::

        assert_no_contamination(guard)

    Used as a context manager, it checks what happens inside the block::

        with assert_no_contamination():
            client.get("/")

    Raises:
        AssertionError: listing every violation.

    .. versionadded:: 0.1.0
    """
    __tracebackhide__ = True
    violations: list[Violation] = []
    for source in sources:
        if isinstance(source, CtxGuard):
            violations.extend(source.violations)
        else:
            violations.extend(source)
    _fail_if_any(violations)
    return _no_contamination()
