"""
CG105: finding the request and app contexts left pushed.

One scan, used by `CtxGuard.check_contexts` and by the pytest plugin after
each test: the contexts pushed in the current `contextvars.Context`, less
the app contexts a request context among them pushed for itself (popping
the request context pops those), each reported once for its app.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from flask_ctxguard._core.flaskcompat import (
    is_request_context,
    leaked_roots,
    request_of,
)
from flask_ctxguard._core.violation import Violation
from flask_ctxguard._reporting.messages import context_leak_message
from flask_ctxguard._reporting.reporter import Reporter

__all__ = ["context_leak", "report_leaked_contexts"]


def report_leaked_contexts(
    contexts: list[Any],
    reporter_of: Callable[[Any], Reporter | None],
    site: str | None,
    pushed_at: Callable[[Any], str | None] | None = None,
) -> list[Violation]:
    """
    Report CG105 for each of *contexts* (pushed ones, innermost first, as
    `_flaskcompat.pushed_contexts` lists them) that is not popped with
    another among them, to the reporter ``reporter_of(app)`` gives
    (none, or one in "off" mode: skipped). *site* is where the contexts
    were found; ``pushed_at(ctx)``, where one was pushed, if known.

    Returns the violations reported; raises nothing, even in raise mode:
    the caller decides.
    """
    found: list[Violation] = []
    for ctx in leaked_roots(contexts):
        reporter = reporter_of(ctx.app)
        if reporter is None or reporter.settings.mode == "off":
            continue
        pushed = None if pushed_at is None else pushed_at(ctx)
        violation = context_leak(reporter, ctx, site, pushed)
        if violation is not None:
            reporter.report(violation, raise_now=False)
            found.append(violation)
    return found


def context_leak(
    reporter: Reporter,
    ctx: Any,
    site: str | None,
    pushed: str | None = None,
) -> Violation | None:
    """
    A CG105 violation for the pushed context *ctx* (pushed at *pushed*, if
    known), unless ignored.
    """
    request = request_of(ctx) if is_request_context(ctx) else None
    subject = "app context" if request is None else "request context"
    if reporter.is_ignored("CG105", subject):
        return None
    thread = threading.current_thread().name
    return reporter.build(
        "CG105",
        subject=subject,
        message=context_leak_message(
            reporter.app_name,
            thread,
            None if request is None else (request.method, request.path),
        ),
        origin=None,
        accessor=None,
        thread=thread,
        origin_site=pushed,
        access_site=site,
    )
