"""
The checks every guarded ``g`` class shares, and where a ``g``'s record is.

A ``g``'s record (its request's `RequestRecord`, or the ``SharedG`` of a
``g`` shared by requests) is in a slot of the classes ``init_app``
installs, or in a weak dictionary for a ``g`` switched to a guarded class
later. A use of a ``g`` outside its own context is reported through its
record (`g_used`: CG102-CG104, like the request). The dict-like methods
(`checked_g_methods`) and the ``__getattr__`` for names a ``g`` lacks
(`checked_getattr`) check the context on every call, in the request's own
``g`` class and its escaped one alike.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from flask_ctxguard._core.classes import RECORD, SLOTTED_G_ROLES, registry
from flask_ctxguard._core.flaskcompat import (
    FLASK_G_CLASS,
    G_REFS_AT_METHOD,
    app_ctx_var,
)
from flask_ctxguard._rules.access import NO_CONTEXT, report_access
from flask_ctxguard._rules.records import RequestRecord

__all__ = [
    "base_dict",
    "checked_g_methods",
    "checked_getattr",
    "g_record",
    "g_used",
    "reported_missing",
    "set_g_record",
]

_app_get = app_ctx_var.get
_refcount = sys.getrefcount


# g's record cannot live in g's __dict__: users iterate it. The g class
# installed by init_app has a slot for it. A g created before the guard was
# installed (the pytest plugin discovers apps late) cannot take a slot, as
# that would change the object's layout: its class is switched to one
# without a slot, and its record is kept in a weak dictionary instead.
_g_records: weakref.WeakKeyDictionary[Any, object] = (
    weakref.WeakKeyDictionary()
)


def g_record(g: Any) -> object:
    """
    *g*'s record: its request's `RequestRecord`, or the ``SharedG`` of a
    ``g`` shared by requests, or `None`.
    """
    try:
        # In the slot of the g classes init_app installs (set or not).
        return object.__getattribute__(g, RECORD)
    except AttributeError:
        pass
    try:
        return _g_records.get(g)
    except TypeError:  # a g class without __weakref__
        return None


def set_g_record(g: Any, record: object) -> None:
    """Make *record* (a `RequestRecord` or a ``SharedG``) *g*'s."""
    if registry.role(type(g)) in SLOTTED_G_ROLES:
        object.__setattr__(g, RECORD, record)
        return
    with contextlib.suppress(TypeError):
        _g_records[g] = record


def g_used(g: Any, name: str, depth: int) -> None:
    """*g*'s attribute *name* was used outside its request's context."""
    record = g_record(g)
    if type(record) is RequestRecord:
        report_access(record, "g", name, depth + 1)


# What a checked property of this thread just checked and found missing:
# Python calls the class's __getattr__ next, which must not check it again.
# Kept per thread, and set by the property itself: asking instead whether
# the name is a checked property now would miss a read that looked the
# name up just before another thread made it one.
_missing = threading.local()


def reported_missing(g: Any, name: str) -> None:
    """
    A checked property of *g* checked a read of *name*, which *g* lacks:
    the ``__getattr__`` Python calls next leaves it alone.
    """
    _missing.last = (id(g), name)


def checked_getattr(base: type) -> Callable[[Any, str], Any]:
    """
    The ``__getattr__`` of a guarded g class over *base*, which Python
    calls for a name the g does not have: a read of it outside the g's
    own context is a use of the g (unless a checked property of the class
    checked this very read: `reported_missing`). Then it resolves as
    *base* would.
    """
    base_getattr = (
        None if base is FLASK_G_CLASS else getattr(base, "__getattr__", None)
    )

    def __getattr__(self: Any, name: str) -> Any:  # noqa: N807
        last = getattr(_missing, "last", None)
        if last is not None:
            _missing.last = None
        if last != (id(self), name) and _app_get(NO_CONTEXT).g is not self:
            g_used(self, name, 1)
        state = self.__dict__
        if name in state:
            return state[name]
        if base_getattr is not None:
            return base_getattr(self, name)
        raise AttributeError(name)

    return __getattr__


def checked_g_methods(
    base: type,
    *,
    on_change: Callable[[Any], None] | None = None,
    on_new_name: Callable[[Any, str], None] | None = None,
) -> dict[str, Any]:
    """
    The dict-like methods of a guarded g class that read values (``get``,
    ``pop``, ``setdefault``) or names (iteration), each checking the
    context first; Flask's own are written out rather than wrapped, which
    would cost a second Python call. ``in`` is left to the base class: it
    reveals no value, and Flask-Login asks it before every read of
    ``g._login_user``. Those of a request's own class call *on_change*
    when ``pop`` changes a g that something else holds, as writes do;
    those of an escaped class call *on_new_name* before ``setdefault``
    gives the g a name (it becomes a checked property).
    """
    flask = base is FLASK_G_CLASS
    found: dict[str, Any] = {}
    base_get = getattr(base, "get", None)
    base_pop = getattr(base, "pop", None)
    base_setdefault = getattr(base, "setdefault", None)
    base_iter = getattr(base, "__iter__", None)

    def get(self: Any, name: str, default: Any = None) -> Any:
        if _app_get(NO_CONTEXT).g is not self:
            g_used(self, name, 1)
        if flask:
            return self.__dict__.get(name, default)
        return base_get(self, name, default)  # type: ignore[misc]

    _missing = object()

    def pop(self: Any, name: str, default: Any = _missing) -> Any:
        if _app_get(NO_CONTEXT).g is not self:
            g_used(self, name, 1)
        if on_change is not None and _refcount(self) > G_REFS_AT_METHOD:
            on_change(self)
        if default is _missing:
            if flask:
                return self.__dict__.pop(name)
            return base_pop(self, name)  # type: ignore[misc]
        if flask:
            return self.__dict__.pop(name, default)
        return base_pop(self, name, default)  # type: ignore[misc]

    def setdefault(self: Any, name: str, default: Any = None) -> Any:
        if _app_get(NO_CONTEXT).g is not self:
            g_used(self, name, 1)
        # (It never replaces a value: not counted, see __setattr__.)
        if on_new_name is not None:
            on_new_name(self, name)
        if flask:
            return self.__dict__.setdefault(name, default)
        return base_setdefault(self, name, default)  # type: ignore[misc]

    def __iter__(self: Any) -> Iterator[str]:  # noqa: N807
        if _app_get(NO_CONTEXT).g is not self:
            g_used(self, "", 1)
        if flask:
            return iter(self.__dict__)
        return base_iter(self)  # type: ignore[no-any-return,misc]

    for name, original, wrapper in (
        ("get", base_get, get),
        ("pop", base_pop, pop),
        ("setdefault", base_setdefault, setdefault),
        ("__iter__", base_iter, __iter__),
    ):
        if original is not None:
            wrapper.__doc__ = original.__doc__
            found[name] = wrapper
    return found


def base_dict(g: Any) -> dict[str, Any]:
    """``g``'s attribute dict, without going through any check."""
    return object.__getattribute__(g, "__dict__")  # type: ignore[no-any-return]
