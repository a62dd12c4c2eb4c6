"""
The record of one guarded request: what the rules decide on.

A `RequestRecord` is the guard's cheap, mutable bookkeeping for a request:
who it is (method, path, thread, start), where it is in its life (`ARMED`,
then `RETIRED`), the ContextVars it started with, and the app state that
reports on it. The guard arms and retires it (`flask_ctxguard._guard`);
the rules read it. It becomes a loggable `RequestTag` only when a report
needs one.

The app state is typed by the `GuardState` protocol rather than the
guard's `AppState` class, so that this layer never imports the guard's.
"""

from __future__ import annotations

import contextvars
import threading
import types
from typing import Protocol

from flask_ctxguard._core import override as _override
from flask_ctxguard._core.tags import (
    RequestTag,
    next_number,
    thread_name,
    token_of,
)
from flask_ctxguard._reporting.reporter import Reporter

__all__ = ["ARMED", "RETIRED", "GuardState", "RequestRecord"]

#: Lifecycle of a guarded request, kept on its `RequestRecord`.
ARMED = 1
RETIRED = 2

# Two threads reporting on one request at once must agree on its token.
_tag_lock = threading.Lock()


class GuardState(Protocol):
    """
    What the rules need of an app's guard state.

    `flask_ctxguard._guard.state.AppState` is the one implementation.
    """

    @property
    def reporter(self) -> Reporter:
        """Builds, keeps, logs and raises the app's violations."""

    @property
    def sampling(self) -> bool:
        """Whether only a sample of the app's requests is guarded."""

    @property
    def sites(self) -> dict[str | None, str | None]:
        """The view sites found so far, by endpoint."""

    def view_site(self, endpoint: str | None) -> str | None:
        """``"path.py:12 in func"`` of the view serving *endpoint*."""


class RequestRecord:
    """
    The guard's mutable bookkeeping for one dispatched request.

    Shared by the request, its session and (when the request owns its app
    context) its ``g``: retiring the record retires all three at once. It
    refers to none of the three; while the request is in flight it holds
    the `contextvars.Context` it started with (``snapshot``), which holds
    whatever the ContextVars held then, and drops it when the request
    ends. Built on every request, so it stores only what is cheap to get;
    the rest is derived in `tag`.
    """

    __slots__ = (
        "_tag",
        "app_state",
        "bound",
        "ctx_id",
        "endpoint",
        "method",
        "number",
        "path",
        "phase",
        "snapshot",
        "started",
        "thread_id",
        "unlinked",
    )

    # Filled in by the guard when it arms a request (no __init__: this is
    # built on every request, and the call would cost more than the rest).
    #: The per-app state of the guard that armed the request.
    app_state: GuardState
    ctx_id: int
    method: str
    path: str
    endpoint: str | None
    # From `next_number` at arming; the token is built from it when needed.
    number: int
    snapshot: contextvars.Context | None
    #: `ARMED` while the request is in flight, then `RETIRED`.
    phase: int
    thread_id: int
    started: float
    # 1 once a copy of the request's context was popped: its environ no
    # longer refers to the request.
    unlinked: int
    # Set only when the request binds, unbinds, resets or clears structlog
    # context variables (`_rules.structlog_binds`): each such variable
    # (or the marker of a clear), with the user's line that did it.
    bound: dict[object, tuple[types.CodeType, int] | None]
    _tag: RequestTag

    def tag(self) -> RequestTag:
        """
        This request's `RequestTag`, built on first use (again if the
        endpoint became known since; the token stays).
        """
        try:
            tag = self._tag
        except AttributeError:
            pass
        else:
            if tag.endpoint == self.endpoint:
                return tag
        # Two threads reporting on one request at once must agree on its
        # token: a record never armed is numbered under a lock (only
        # reports get here).
        with _tag_lock:
            try:
                number = self.number
            except AttributeError:  # a record that was never armed
                number = self.number = next_number()
            tag = self._tag = RequestTag(
                token=token_of(number),
                thread_id=self.thread_id,
                thread_name=thread_name(self.thread_id),
                method=self.method,
                path=self.path,
                endpoint=self.endpoint,
                started=self.started,
                pushed_by=_override.current().harness(self),
            )
        return tag

    def __repr__(self) -> str:
        phase = "in flight" if self.phase == ARMED else "ended"
        return f"<RequestRecord {self.method} {self.path} {phase}>"
