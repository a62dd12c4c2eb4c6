"""
Request tags: which request a piece of data belongs to.

A `RequestTag` is the immutable, loggable identity of one request. Building
one costs about a microsecond, so the hot path only fills a cheap mutable
`RequestRecord` and turns it into a tag when a report needs it.
"""

from __future__ import annotations

import contextvars
import dataclasses
import itertools
import os
import threading
import types
from threading import get_ident
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask_ctxguard._guard.state import AppState

__all__ = ["RequestRecord", "RequestTag", "new_token"]

#: Lifecycle of a guarded request, kept on its `RequestRecord`.
ARMED = 1
RETIRED = 2

_tag_lock = threading.Lock()


def _new_prefix() -> str:
    # 32 random bits per process: two processes (or hosts) pick the same
    # prefix with a chance of one in four billion; the counter makes the
    # tokens of one process unique.
    return os.urandom(4).hex()


_prefix = _new_prefix()
_counter = itertools.count(1)


#: The next request number of this process: requests are numbered when
#: they are armed, in arrival order (issue 16), so a log that says request
#: '-2' held what '-3' set means '-2' started first.
next_number = _counter.__next__


def _reseed() -> None:
    # A forked worker (gunicorn, multiprocessing) inherits the parent's
    # prefix; give it its own so tokens stay unique. The counter goes on
    # from the parent's: a request armed before the fork and reported in
    # the child gets the child's prefix with a number the child never hands
    # out again. (A gunicorn master serves no requests: workers start at 1.)
    global _prefix
    _prefix = _new_prefix()


os.register_at_fork(after_in_child=_reseed)


def new_token() -> str:
    """
    A short token unique across threads, processes and hosts.

    It is random per process plus a counter, and carries no request data.
    """
    return f"{_prefix}-{next(_counter):x}"


@dataclasses.dataclass(frozen=True, slots=True)
class RequestTag:
    """
    The identity of one request: who it was, where and when it ran.

    Attributes:
        token: Short and unique across threads, processes and hosts.
        thread_id: ``threading.get_ident()`` of the thread (or greenlet)
            that handled the request.
        thread_name: That thread's name.
        method: The HTTP method.
        path: The request path, without the query string.
        endpoint: The matched endpoint, or `None` if routing failed.
        started: When the request started, as ``time.time()``.

    .. versionadded:: 0.1.0
    """

    token: str
    thread_id: int
    thread_name: str
    method: str
    path: str
    endpoint: str | None
    started: float

    def __str__(self) -> str:
        return (
            f"{self.method} {self.path} (request {self.token},"
            f" thread {self.thread_name!r})"
        )

    def to_dict(self) -> dict[str, Any]:
        """
        The tag as a JSON-safe dict: token, method, path, endpoint, thread.
        """
        return {
            "token": self.token,
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint,
            "thread": self.thread_name,
            "thread_id": self.thread_id,
            "started": self.started,
        }


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
    app_state: AppState
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
                token=f"{_prefix}-{number:x}",
                thread_id=self.thread_id,
                thread_name=thread_name(self.thread_id),
                method=self.method,
                path=self.path,
                endpoint=self.endpoint,
                started=self.started,
            )
        return tag

    def __repr__(self) -> str:
        phase = "in flight" if self.phase == ARMED else "ended"
        return f"<RequestRecord {self.method} {self.path} {phase}>"


def thread_name(ident: int) -> str:
    """
    The name of the thread (or greenlet) *ident*, if it is still alive.
    """
    if ident == get_ident():
        return threading.current_thread().name
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.name
    return f"thread {ident}"
