"""
ContextVar snapshots and the CG106 comparison.

A request's context is snapshotted with `contextvars.copy_context` when it
starts and when it ends: O(1) copies of an immutable mapping. Comparing two
snapshots with ``==`` runs in C, so a request that changed no ContextVar
costs two copies and one comparison. Only when something changed are the
snapshots diffed in Python.

What a request sets and leaves behind is remembered, with the request, in
one ContextVar of our own: it lives in the same context as the leaked values
(the pooled worker thread's, or the test client's) and dies with it, so the
guard keeps nothing alive on its own.

``ContextVar.set`` with the very object a variable already holds leaves
the context's mapping untouched at the C level (the HAMT returns itself),
on every supported Python: a request that sets a registry entry, a module
constant or an enum member again on every request cannot be told from one
that inherited it by looking at the context. structlog's variables are
decided from what the request was observed doing to them
(`structlog_binds`): bound, unbound, reset or cleared, the value is its
own; untouched, it was inherited. Any other value is only reported when
the request could not have set it itself: it is not an ambient object any
code can name (`is_ambient`), not part of the request's own data, and not
reachable from the names the request's own code uses (`reachable_ids`).
Both live in `cg106_walk`, the rule's static walk. The limits of that
rule are in ``docs/rules.md#cg106``.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable, Container, Iterator
from contextvars import Context, ContextVar
from typing import Any

from flask_ctxguard._core.flaskcompat import FLASK_CONTEXT_VARS
from flask_ctxguard._rules.cg106_ambient import (
    INTERNS,
    is_ambient,
    is_interned,
)
from flask_ctxguard._rules.records import RequestRecord
from flask_ctxguard._rules.structlog_binds import (
    BOUND_OUTSIDE,
    is_observed,
    touched,
)

__all__ = [
    "LEFT_BEHIND",
    "Leak",
    "LeftBehind",
    "detect_leaks",
    "detect_unsampled_leaks",
]

#: What each ContextVar was left holding, and by which request.
LeftBehind = dict[ContextVar[Any], tuple[object, RequestRecord]]

_left_behind: ContextVar[LeftBehind | None] = ContextVar(
    "flask_ctxguard.left_behind", default=None
)

# Values that carry no request data and that libraries set and reset as
# flags (asgiref's deadlock guard, structlog's cleared marker `...`). They
# are singletons, so a request that sets the same one again is
# indistinguishable from a request that inherited it.
_FLAG_VALUES: tuple[object, ...] = (None, True, False, Ellipsis)

#: Public name of the guard's own ContextVar, for the fast path.
LEFT_BEHIND = _left_behind

# Sampling (CTXGUARD_SAMPLE_RATE < 1): every ContextVar's value when the
# last sampled request in this context ended. A value a later sampled
# request finds that is not among these was set in between, by requests
# that were not guarded.
_last_seen: ContextVar[dict[ContextVar[Any], object] | None] = ContextVar(
    "flask_ctxguard.last_seen", default=None
)

_IGNORED_VARS: frozenset[ContextVar[Any]] = FLASK_CONTEXT_VARS | {
    _left_behind,
    _last_seen,
    BOUND_OUTSIDE,
}

# Modules whose own ContextVars are bookkeeping, never request data:
# asgiref's thread and event-loop tracking (set when Flask runs an async
# view), structlog's async call tracking (not the vars bind_contextvars
# makes), Werkzeug's debug console. They are found by identity, so a user's
# own asgiref Local or structlog key is still checked.
_LIBRARY_MODULES = (
    "asgiref.sync",
    "decimal",
    "structlog.contextvars",
    "werkzeug.debug",
)
_library: tuple[tuple[str, ...], frozenset[ContextVar[Any]]] = (
    (),
    frozenset(),
)


def _library_vars() -> frozenset[ContextVar[Any]]:
    global _library
    loaded = tuple(name for name in _LIBRARY_MODULES if name in sys.modules)
    if loaded == _library[0]:
        return _library[1]
    found: set[ContextVar[Any]] = set()
    if "decimal" in loaded:
        found.update(_decimal_vars())
    for name in loaded:
        for value in list(vars(sys.modules[name]).values()):
            members = [value]
            if isinstance(value, type):
                members.extend(vars(value).values())
            for member in members:
                if isinstance(member, ContextVar):
                    found.add(member)
                elif type(member).__module__ == "asgiref.local":
                    # The ContextVar behind an asgiref Local: on the Local
                    # itself (asgiref < 3.9) or on its storage.
                    storage = _object_attribute(member, "_storage")
                    for holder in (member, storage):
                        data = _object_attribute(holder, "_data")
                        if isinstance(data, ContextVar):
                            found.add(data)
    _library = (loaded, frozenset(found))
    return _library[1]


def _decimal_vars() -> set[ContextVar[Any]]:
    """
    The ContextVar behind ``decimal.getcontext()``: the C module keeps it
    out of sight and sets it, lazily, on the first decimal operation of a
    context, to a context it creates (bookkeeping, not request data).
    """
    import decimal  # loaded already, by the app

    def probe() -> tuple[object, Context]:
        current = decimal.getcontext()  # sets the variable: then copy
        return current, contextvars.copy_context()

    current, copied = Context().run(probe)
    return {var for var, value in copied.items() if value is current}


def _object_attribute(obj: object, name: str) -> object:
    try:
        return object.__getattribute__(obj, name)
    except AttributeError:
        return None


# (var, value, the request that left it: None if it was not sampled)
Leak = tuple[ContextVar[Any], object, RequestRecord | None]


def _is_flag(value: object) -> bool:
    return any(value is flag for flag in _FLAG_VALUES)


def _changed(start: Context, end: Context) -> Iterator[tuple[Any, object]]:
    missing = object()
    library = _library_vars()
    for var, value in end.items():
        if var in _IGNORED_VARS or var in library or _is_flag(value):
            continue
        if start.get(var, missing) is not value:
            yield var, value


def detect_leaks(
    start: Context,
    record: RequestRecord,
    own_values: Callable[[bool], Container[int]],
    end: Context | None = None,
) -> list[Leak]:
    """
    Compare the context at the end of *record*'s request with *start*.

    Must be called in the request's own context, at its end. Returns the
    ContextVars that held, for the whole request, a value an earlier
    request set and never reset, with that value and that request; and
    remembers what this request leaves behind for the next one.

    A request that sets a var to the very object it already held cannot be
    told from one that inherited it. So a value counts as set by the
    request itself when it is ambient (`is_ambient`), or when its id is in
    *own_values(fresh)*: the request's own data (its WSGI environ, its URL
    arguments) and the objects its code can name (`reachable_ids`; cached
    unless *fresh*).
    """
    if end is None:
        end = contextvars.copy_context()
    left = end.get(_left_behind)
    if left is None and start == end:
        return []

    leaks: list[Leak] = []
    kept: LeftBehind = {}
    missing = object()
    walk = _OwnValues(own_values)
    for var, (value, origin) in (left or {}).items():
        if end.get(var, missing) is not value:
            continue  # cleared or overwritten since
        if origin is not record and start.get(var, missing) is value:
            if is_observed(var):
                # structlog's: what the request did to it was observed.
                inherited = not touched(record, var)
            else:
                inherited = not (_ambient(value) or walk.has(value))
            if not inherited:
                kept[var] = (value, record)
                continue
            leaks.append((var, value, origin))
        kept[var] = (value, origin)
    for var, value in _changed(start, end):
        kept[var] = (value, record)
    if not _same(kept, left):
        _left_behind.set(kept or None)
    return leaks


class _OwnValues:
    """
    The values a request could have set itself, by id: worked out only
    if a comparison needs them, and walked again, fresh, before a value
    is said not to be among them (a registry may have grown since).
    """

    __slots__ = ("_fresh", "_get", "_own")

    def __init__(self, get: Callable[[bool], Container[int]]) -> None:
        self._get = get
        self._own: Container[int] | None = None
        self._fresh = False

    def has(self, value: object) -> bool:
        own = self._own
        if own is None:
            own = self._own = self._get(False)
        if id(value) not in own and not self._fresh:
            own, self._fresh = self._get(True), True
            self._own = own
        return id(value) in own or (id(INTERNS) in own and is_interned(value))


def _same(kept: LeftBehind, left: LeftBehind | None) -> bool:
    # By identity: a leaked value's own __eq__ may be costly or raise.
    if not left:
        return not kept
    if kept.keys() != left.keys():
        return False
    return all(
        kept[var][0] is value and kept[var][1] is origin
        for var, (value, origin) in left.items()
    )


# -- could the request have set it itself? --------------------------------


def _ambient(value: object) -> bool:
    # An object whose __class__ property raises fails isinstance(): what
    # the guard cannot examine, it does not report.
    try:
        return is_ambient(value)
    except Exception:  # noqa: BLE001 - an app's object
        return True


def detect_unsampled_leaks(
    start: Context,
    end: Context,
    record: RequestRecord,
    own_values: Callable[..., Container[int]],
    known: Container[ContextVar[Any]],
) -> list[Leak]:
    """
    Sampling: compare the context a sampled request started with against
    the one the last sampled request in this context ended with.

    Must be called in the request's own context, at its end. Returns the
    ContextVars (other than *known*, reported with their origin) that held,
    for the whole of *record*'s request, a value set since that last
    sampled request ended, by requests that were not guarded: their origin
    is `None`. The
    first sampled request in a context only remembers what it ends with.
    """
    seen = end.get(_last_seen)
    leaks: list[Leak] = []
    if seen is not None:
        missing = object()
        library = _library_vars()
        own: Container[int] | None = None
        for var, value in start.items():
            if (
                var in _IGNORED_VARS
                or var in library
                or var in known
                or _is_flag(value)
                or seen.get(var, missing) is value
                or end.get(var, missing) is not value
            ):
                continue
            if is_observed(var):
                if not touched(record, var):
                    leaks.append((var, value, None))
                continue
            if _ambient(value):
                continue
            if own is None:
                own = own_values()
            if id(value) not in own:
                # Walk the request's code again before saying so.
                own = own_values(True)
                if id(value) not in own and not (
                    id(INTERNS) in own and is_interned(value)
                ):
                    leaks.append((var, value, None))
    _last_seen.set(
        {var: value for var, value in end.items() if var not in _IGNORED_VARS}
    )
    return leaks
