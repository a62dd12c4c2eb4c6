"""
Helpers for testing an app with flask_ctxguard, with any test runner.

- `capture_violations` collects every violation reported while it is
  active, from every guarded app.
- `assert_no_contamination` fails with the full reports if there was any.
- `hammer` serves an app like production (pooled worker threads,
  keep-alive) on 127.0.0.1 and fires concurrent clients at it; it finds
  violations and crossovers, one client's canary in another's response.

The pytest plugin (``pytest --ctxguard``) shares their machinery
(`flask_ctxguard._reporting.capture`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence

from flask_ctxguard._core.violation import Violation
from flask_ctxguard._guard.extension import CtxGuard
from flask_ctxguard._hammer.hammer import (
    Crossover,
    HammerError,
    HammerResponse,
    HammerResult,
    RequestSpec,
    hammer,
)
from flask_ctxguard._reporting import capture as _capture

__all__ = [
    "Crossover",
    "HammerError",
    "HammerResponse",
    "HammerResult",
    "RequestSpec",
    "assert_no_contamination",
    "capture_violations",
    "format_violations",
    "group_violations",
    "hammer",
]


def capture_violations() -> contextlib.AbstractContextManager[list[Violation]]:
    """
    Collect every violation any guarded app reports inside the block.

    Yields the list the violations are appended to, oldest first; it is
    filled from any thread.

    .. versionadded:: 0.1.0
    """
    return _capture.capture_violations()


def group_violations(
    violations: Iterable[Violation],
) -> list[list[Violation]]:
    """
    *violations* grouped into findings, in the order of their first
    violation.

    A finding is a root cause: one code, one subject, and the site that
    made the contamination possible (the line that set or kept the value,
    else the access site). The accesses of one crossing, and the
    crossings of one bug hit by many requests, are one finding.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       Grouped by root cause, as ``report`` groups.
    """
    return _capture.group_violations(violations)


def format_violations(violations: Iterable[Violation]) -> str:
    """
    The full reports of *violations*, one per finding, separated by blank
    lines.

    Violations of one crossing (the same subject, from the same request to
    the same request or thread) are one finding, shown once with the
    count: Flask-Login's ``'_login_user' in g`` and ``g._login_user`` in
    one request, or a ContextVar held by several requests.

    .. versionchanged:: 0.1.0
       Grouped by crossing rather than by code, subject and sites.
    """
    return _capture.format_violations(violations)


def _fail_if_any(violations: Sequence[Violation]) -> None:
    __tracebackhide__ = True
    if violations:
        raise AssertionError(_capture.failure_text(violations))


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
