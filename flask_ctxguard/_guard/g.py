"""
The guarded ``g`` classes of a request's own ``g``, and when it escapes.

``app.app_ctx_globals_class`` is replaced by a generated subclass whose
instances are read at full speed while their request runs: a request's
own ``g`` is where its user and tenant live, and a page that renders
``current_user`` reads it a hundred times. Such a ``g`` can
only be contaminated once something other than its app context holds
it: a thread it was handed to, a cache, a global. The guard looks for
that at the moments it matters, cheaply, by the ``g``'s reference count:
when the request replaces, deletes or pops a value of it, as what a
holder sees starts to differ from what the request sees, and at the
request's end, after which any read is stale. A ``g`` found
held so is switched to its *escaped* class, on which every read of an
attribute is checked against the current context (CG102-CG104, like the
request): each attribute name becomes a checked property of that class,
so that a read costs one small Python function, not a
``__getattribute__`` on every attribute lookup (`g_escape`). A write
or delete from outside the ``g``'s context is a use of it too: checked
on every write once its request ended (one slot read per write), and on
a write that replaces a value while something else holds it. The
checks both classes share, and where a ``g``'s record is kept, are in
`g_checks`. A ``g`` shared by requests is watched instead (`shared_g`).
"""

from __future__ import annotations

import sys
from typing import Any

from flask_ctxguard._core.classes import (
    G_ROLES,
    LATE_G,
    OWN_G_ROLES,
    RECORD,
    WATCHED_G,
    WATCHED_LATE_G,
    G,
    method,
    registry,
    subclass,
    switch_class,
)
from flask_ctxguard._core.flaskcompat import (
    FLASK_G_CLASS,
    G_REFS_AT_WRITE,
    app_ctx_var,
)
from flask_ctxguard._guard.g_checks import (
    checked_g_methods,
    checked_getattr,
    g_record,
    g_used,
    set_g_record,
)
from flask_ctxguard._guard.g_escape import escaped_g_class, learn_names
from flask_ctxguard._rules.access import NO_CONTEXT
from flask_ctxguard._rules.records import RETIRED, RequestRecord

__all__ = [
    "g_escapes",
    "g_outlives",
    "g_record",
    "guarded_g_class",
    "late_g_class",
    "own_g",
]

_app_get = app_ctx_var.get
_refcount = sys.getrefcount
_getattribute = object.__getattribute__


def guarded_g_class(base: type) -> type:
    """
    The guarded subclass of the ``g`` class *base* (cached), with a slot
    for the guard's record.
    """
    return _guarded_g_class(base, G)


def late_g_class(base: type) -> type:
    """
    The guarded subclass of *base* an existing ``g`` can be switched to:
    without a slot, its record is kept aside.
    """
    return _guarded_g_class(base, LATE_G)


def _guarded_g_class(base: type, role: str) -> type:
    if registry.role(base) in G_ROLES:
        return base
    cls = registry.get_or_make(
        base, role, lambda base: _make_guarded_g_class(base, slotted=role == G)
    )
    assert cls is not None
    return cls


def _make_guarded_g_class(base: type, *, slotted: bool) -> type:
    slots = (RECORD,) if slotted else ()
    if not base.__dictoffset__:
        return _make_hooked_g_class(base, slots)
    # Reads are the base class's own: an attribute in __dict__ is read in
    # C, and Flask's own reads of __dict__ (`in`, get, pop) are unchanged.
    # Writes and deletes, Python functions in Flask's class too, count the
    # g's references: one more than a write through the `g` proxy finds
    # means something else holds this g (see g_escapes).
    base_setattr = method(base, "__setattr__")
    base_delattr = method(base, "__delattr__")
    flask_setattr = base is FLASK_G_CLASS or base_setattr is object.__setattr__

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        state = self.__dict__
        if name in state and _refcount(self) > G_REFS_AT_WRITE:
            # Replaces a value while something else holds this g: what
            # the holder has seen changes, so the g escapes; a write from
            # outside its context is a use of it.
            if _app_get(NO_CONTEXT).g is not self:
                g_used(self, name, 1)
            g_escapes(self)
        elif _is_retired(self):
            # Any other write (adding a name: Flask-Login loading its
            # user, mid-template) is only checked once the g's request
            # ended: one slot read per write.
            _write_after_end(self, name)
        if flask_setattr:
            state[name] = value
        else:
            base_setattr(self, name, value)

    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        if _is_retired(self):
            _write_after_end(self, name)
        base_delattr(self, name)
        if _refcount(self) > G_REFS_AT_WRITE:
            g_escapes(self)

    def _is_retired(self: Any) -> bool:
        try:
            record = _getattribute(self, RECORD)
        except AttributeError:
            record = None if slotted else g_record(self)
        return type(record) is RequestRecord and record.phase == RETIRED

    members: dict[str, Any] = {
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        # A name this g does not have: `getattr(g, 'db', None)` of a kept
        # g is a use of it, checked whether or not it escaped.
        "__getattr__": checked_getattr(base),
    }
    members.update(checked_g_methods(base, on_change=g_escapes))
    return subclass(base, members, slots=slots)


def _write_after_end(g: Any, name: str) -> None:
    """
    *g*'s request ended and *name* of it is written or deleted: a use of
    it (CG102/CG103) unless it is the current ``g`` (a
    ``teardown_appcontext`` function of its own context).
    """
    if _app_get(NO_CONTEXT).g is not g:
        g_used(g, name, 2)


def g_escapes(g: Any) -> None:
    """
    *g* is held by more than its app context and the code using it: if it
    is a request's own ``g``, switch it to its escaped class, on which
    every read is checked from now on. Never raises.
    """
    record = g_record(g)
    if type(record) is not RequestRecord:
        return  # not a request's own g: outside requests, or shared
    try:
        cls = escaped_g_class(type(g))
        if cls is not None and cls is not type(g) and switch_class(g, cls):
            learn_names(g)
    except Exception as exc:  # noqa: BLE001 - never break a request
        record.app_state.reporter.internal_error("checking a 'g'", exc)


def g_outlives(g: Any, record: RequestRecord) -> None:
    """
    *g*, of the app context current when *record*'s request closes, has
    more references than its context's: if it is that request's own, it
    outlives it, and is checked from now on.
    """
    if g is not None and g_record(g) is record:
        g_escapes(g)


def _make_hooked_g_class(base: type, slots: tuple[str, ...]) -> type:
    """
    The guarded subclass of a ``g`` class without a ``__dict__``: every
    attribute read is checked by a ``__getattribute__``.
    """
    base_getattribute = method(base, "__getattribute__")

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if _app_get(NO_CONTEXT).g is not self:
            g_used(self, name, 1)
        return base_getattribute(self, name)

    return subclass(base, {"__getattribute__": __getattribute__}, slots=slots)


def own_g(g: Any, record: RequestRecord) -> None:
    """*g* belongs to the app context *record*'s request pushed."""
    role = registry.role(type(g))
    if role in (WATCHED_G, WATCHED_LATE_G):
        return  # a g shared with an outer request: not this one's
    if role not in OWN_G_ROLES and not switch_class(g, late_g_class(type(g))):
        return
    set_g_record(g, record)
