"""
The record of one guarded request: what the rules decide on.

A `RequestRecord` is the guard's cheap, mutable bookkeeping for a request:
who it is (method, path, thread, start), where it is in its life (`ARMED`,
then `RETIRED`), the ContextVars it started with, and the app state that
reports on it. Only its own methods change it: the guard creates it when
it arms a request and calls `RequestRecord.retire` when the request ends
(`flask_ctxguard._guard`); the rules read it, and note what they learn
through its methods. It becomes a loggable `RequestTag` only when a report
needs one.

The app state is typed by the `GuardState` protocol rather than the
guard's `AppState` class, so that this layer never imports the guard's.
"""

from __future__ import annotations

import contextvars
import threading
import types
from threading import get_ident
from time import time
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

    #: The per-app state of the guard that armed the request.
    app_state: GuardState
    ctx_id: int
    method: str
    path: str
    endpoint: str | None
    # From `next_number` at arming; the token is built from it when needed.
    number: int
    #: The ContextVars the request started with, until it ends (`None`
    #: when it was armed late, with nothing to compare).
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

    def __init__(
        self, app_state: GuardState, ctx_id: int, method: str, path: str
    ) -> None:
        """
        The record of a request armed now, in this thread, for
        *app_state*'s app, whose context has the id *ctx_id*. The endpoint
        is not matched yet when a request is armed: it is noted when the
        request retires, or when a report needs it.
        """
        self.app_state = app_state
        self.ctx_id = ctx_id
        self.method = method
        self.path = path
        self.endpoint = None
        self.snapshot = contextvars.copy_context()
        self.phase = ARMED
        self.thread_id = get_ident()
        self.started = time()
        self.number = next_number()  # tokens in arrival order
        self.unlinked = 0

    def retire(self, endpoint: str | None) -> contextvars.Context | None:
        """
        The request ended, having matched *endpoint* (`None`: no route):
        mark it `RETIRED` and hand over the ContextVars it started with,
        which the record no longer holds.
        """
        self.phase = RETIRED
        if endpoint is not None:
            self.endpoint = endpoint
        snapshot = self.snapshot
        self.snapshot = None
        return snapshot

    def unlink(self, refs: int) -> None:
        """
        A copy of the request's context was popped in another thread: the
        request goes on, and *refs* references to it are gone with the
        copy's environ.
        """
        self.unlinked = refs

    def forget_snapshot(self) -> None:
        """Armed late: there are no ContextVars to compare at its end."""
        self.snapshot = None

    def note_endpoint(self, endpoint: str) -> None:
        """The in-flight request matched *endpoint* (kept if known)."""
        if self.endpoint is None:
            self.endpoint = endpoint

    def note_bind(
        self, key: object, site: tuple[types.CodeType, int] | None
    ) -> None:
        """
        The request bound, unbound, reset or cleared structlog's context
        variable *key* (or the marker of a clear) at *site*; the last one
        wins: it set the value the request leaves.
        """
        try:
            bound = self.bound
        except AttributeError:
            bound = self.bound = {}
        bound[key] = site

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
        # tag (only reports get here).
        with _tag_lock:
            tag = self._tag = RequestTag(
                token=token_of(self.number),
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
