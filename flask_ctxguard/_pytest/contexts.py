"""
The contexts a test harness pushed, and how reports name them.

pytest-flask pushes a request context around every test that uses its
``app`` fixture, and suites' own fixtures push ``app.app_context()`` or
``app.test_request_context()``: these are not requests a client sent. The
plugin notes what each fixture pushed during its setup (`HarnessContexts`),
so that reports say "pytest-flask's automatic request context" or "the
fixture 'req_ctx'" rather than ``GET /``, and CG101's fix names what
pushed the application context two requests shared. The plugin hands
`HarnessContexts.describe` to the guard through
`flask_ctxguard._core.override.RunOverride.harness`.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import weakref
from typing import Any

from flask_ctxguard._core.flaskcompat import pushed_contexts, request_of
from flask_ctxguard._reporting.messages import PYTEST_FLASK_CONTEXT

__all__ = ["HarnessContexts", "fixture_label"]

#: How many requests of harness contexts are named: the newest.
MAX_REQUESTS = 256


def fixture_label(argname: str, module: str) -> str:
    """How reports name a context the fixture *argname* of *module* pushed."""
    if argname == "_push_request_context" and module.startswith(
        "pytest_flask"
    ):
        return PYTEST_FLASK_CONTEXT
    return f"the fixture {argname!r}"


class HarnessContexts:
    """
    What fixtures pushed: contexts (held weakly) and the guard's records
    of their requests, each with its label.

    A record cannot be held weakly; holding the newest `MAX_REQUESTS`
    strongly keeps their ids from being reused by another record while
    they are named.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._contexts: weakref.WeakKeyDictionary[Any, str] = (
            weakref.WeakKeyDictionary()
        )
        self._records: collections.OrderedDict[int, tuple[object, str]] = (
            collections.OrderedDict()
        )

    def note(self, before: set[int], label: str) -> None:
        """
        The contexts pushed now whose ids are not in *before* were pushed
        by what *label* names.
        """
        for ctx in pushed_contexts():
            if id(ctx) in before:
                continue
            record = _record_of(ctx)
            with self._lock:
                # A custom context class may not be weakly referable.
                with contextlib.suppress(TypeError):
                    self._contexts[ctx] = label
                if record is not None:
                    self._records[id(record)] = (record, label)
                    while len(self._records) > MAX_REQUESTS:
                        self._records.popitem(last=False)

    def describe(self, obj: object) -> str | None:
        """
        What pushed *obj*, a context or a request's record, if a fixture
        did; `None` otherwise. Called from any thread, never raises.
        """
        with self._lock:
            entry = self._records.get(id(obj))
            if entry is not None and entry[0] is obj:
                return entry[1]
            try:
                return self._contexts.get(obj)
            except TypeError:  # not weakly referable: not a context
                return None


def _record_of(ctx: Any) -> object | None:
    """The guard's record of the request *ctx* carries, if any."""
    try:
        request = request_of(ctx)
    except AttributeError:  # an app context up to Flask 3.1
        return None
    return getattr(request, "_ctxguard_record", None)
