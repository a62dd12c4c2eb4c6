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
from flask_ctxguard._reporting.capture import (
    assertion,
    capture_violations,
    failure_text,
    format_violations,
    group_violations,
    summary_line,
)

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


def _fail_if_any(violations: Sequence[Violation]) -> None:
    __tracebackhide__ = True
    if violations:
        raise assertion(failure_text(violations), summary_line(violations))


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
