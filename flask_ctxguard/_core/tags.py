"""
Request tags: which request a piece of data belongs to.

A `RequestTag` is the immutable, loggable identity of one request, with a
token unique across threads, processes and hosts. Building one costs about
a microsecond, so the hot path only fills a cheap mutable record
(`flask_ctxguard._rules.records.RequestRecord`) and turns it into a tag
when a report needs it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
from threading import get_ident
from typing import Any

__all__ = ["RequestTag", "new_token", "next_number", "thread_name", "token_of"]


def _new_prefix() -> str:
    # 32 random bits per process: two processes (or hosts) pick the same
    # prefix with a chance of one in four billion; the counter makes the
    # tokens of one process unique.
    return os.urandom(4).hex()


_prefix = _new_prefix()
_counter = itertools.count(1)


#: The next request number of this process: requests are numbered when
#: they are armed, in arrival order, so a log that says request
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


def token_of(number: int) -> str:
    """The token of this process's request number *number*."""
    return f"{_prefix}-{number:x}"


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
        pushed_by: What pushed this request's context when a test harness
            did, not a client: ``"the fixture 'req_ctx'"`` or
            pytest-flask's automatic request context; `None` for a
            request the app handled.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *pushed_by*.
    """

    token: str
    thread_id: int
    thread_name: str
    method: str
    path: str
    endpoint: str | None
    started: float
    pushed_by: str | None = None

    def __str__(self) -> str:
        return (
            f"{self.name} (request {self.token}, thread {self.thread_name!r})"
        )

    @property
    def name(self) -> str:
        """
        The name reports give the request, such as ``"GET /orders"``; for
        one a test harness pushed, what pushed its context (*pushed_by*).
        """
        if self.pushed_by is not None:
            return self.pushed_by
        return f"{self.method} {self.path}"

    def to_dict(self) -> dict[str, Any]:
        """
        The tag as a JSON-safe dict: token, method, path, endpoint, thread,
        and ``pushed_by`` for a context a test harness pushed.
        """
        fields: dict[str, Any] = {
            "token": self.token,
            "method": self.method,
            "path": self.path,
            "endpoint": self.endpoint,
            "thread": self.thread_name,
            "thread_id": self.thread_id,
            "started": self.started,
        }
        if self.pushed_by is not None:
            fields["pushed_by"] = self.pushed_by
        return fields


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
