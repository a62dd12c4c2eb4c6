"""
The guarded ``g`` classes: a request's own, and one shared by requests.

``app.app_ctx_globals_class`` is replaced by a generated subclass that
checks every read of a request's own ``g`` against the current context
(CG102-CG104, like the request). A ``g`` that outlives requests (an app
context pushed around them, as tests do) is switched to its watched class,
which remembers which request wrote each attribute and reports a read by
another request (CG101); an ordinary request's ``g`` never is.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from . import _sites
from ._access import NO_CONTEXT, current_record, report_access
from ._classes import (
    G_ROLES,
    LATE_G,
    RECORD,
    SLOTTED_G_ROLES,
    WATCHED_G,
    WATCHED_LATE_G,
    G,
    method,
    registry,
    subclass,
    switch_class,
)
from ._flaskcompat import FLASK_G_CLASS, app_ctx_var
from ._tags import RequestRecord
from ._violations import g_leak_message

if TYPE_CHECKING:
    from ._state import AppState

__all__ = [
    "SharedG",
    "base_dict",
    "g_record",
    "guarded_g_class",
    "own_g",
    "watch_shared_g",
]

_app_get = app_ctx_var.get

#: Who wrote an attribute of a shared ``g``: the request (`None` outside
#: requests), and where (site, stack).
Owner = tuple[RequestRecord | None, str | None, str | None]


class SharedG:
    """
    The bookkeeping of a ``g`` that outlives requests: who wrote what.

    An attribute's value and its owner change together, under ``lock``,
    and are read together: a read never pairs one request's value with
    another request's ownership.
    """

    __slots__ = ("app_state", "lock", "owners")

    def __init__(self, app_state: AppState) -> None:
        self.app_state = app_state
        # Re-entrant: a g class's own __setattr__ may read attributes.
        self.lock = threading.RLock()
        self.owners: dict[str, Owner] = {}


# g's record cannot live in g's __dict__: users iterate it. The g class
# installed by init_app has a slot for it. A g created before the guard was
# installed (the pytest plugin discovers apps late) cannot take a slot, as
# that would change the object's layout: its class is switched to one
# without a slot, and its record is kept in a weak dictionary instead.
_g_records: weakref.WeakKeyDictionary[Any, RequestRecord | SharedG] = (
    weakref.WeakKeyDictionary()
)


def g_record(g: Any) -> RequestRecord | SharedG | None:
    """*g*'s record: its request's, or its `SharedG`, or `None`."""
    try:
        # In the slot of the g classes init_app installs (set or not).
        return object.__getattribute__(g, RECORD)  # type: ignore[no-any-return]
    except AttributeError:
        pass
    try:
        return _g_records.get(g)
    except TypeError:  # a g class without __weakref__
        return None


def _set_g_record(g: Any, record: RequestRecord | SharedG) -> None:
    if registry.role(type(g)) in SLOTTED_G_ROLES:
        object.__setattr__(g, RECORD, record)
        return
    with contextlib.suppress(TypeError):
        _g_records[g] = record


def _shared(g: Any) -> SharedG | None:
    record = g_record(g)
    return record if type(record) is SharedG else None


def guarded_g_class(base: type) -> type:
    """
    The guarded subclass of the ``g`` class *base* (cached), with a slot
    for the guard's record.
    """
    if registry.role(base) in G_ROLES:
        return base
    cls = registry.get_or_make(
        base, G, lambda base: _make_guarded_g_class(base, slotted=True)
    )
    assert cls is not None
    return cls


def _late_g_class(base: type) -> type:
    """
    The guarded subclass of *base* an existing ``g`` can be switched to:
    without a slot, its record is kept aside.
    """
    if registry.role(base) in G_ROLES:
        return base
    cls = registry.get_or_make(
        base, LATE_G, lambda base: _make_guarded_g_class(base, slotted=False)
    )
    assert cls is not None
    return cls


def _watched_g_class(guarded: type) -> type:
    """The watched class of the guarded ``g`` class *guarded*."""
    role = WATCHED_G if registry.role(guarded) == G else WATCHED_LATE_G
    cls = registry.get_or_make(guarded, role, _make_watched_g_class)
    assert cls is not None
    return cls


def _make_guarded_g_class(base: type, *, slotted: bool) -> type:
    # A request's own g is checked on every read: g is where a request's
    # user and tenant live, and handing it to a thread is a real bug
    # (CG104). Its class does not change when the request ends: the
    # record it shares with the request is marked retired, and every read
    # outside the request's context is reported (CG102, CG103). A g shared
    # by several requests is switched to its watched class (CG101).
    base_getattribute = method(base, "__getattribute__")

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if _app_get(NO_CONTEXT).g is not self:
            record = g_record(self)
            if type(record) is RequestRecord:
                report_access(record, "g", name, 1)
        return base_getattribute(self, name)

    members: dict[str, Any] = {"__getattribute__": __getattribute__}
    if base is FLASK_G_CLASS:
        # Flask's __setattr__ (`self.__dict__[name] = value`, for typing)
        # would read __dict__ through the check above on every write: the
        # same, in C.
        members["__setattr__"] = object.__setattr__
    return subclass(base, members, slots=(RECORD,) if slotted else ())


def _check_g_read(g: Any, name: str, how: str, depth: int) -> None:
    shared = _shared(g)
    if shared is None:
        return
    with shared.lock:
        entry = shared.owners.get(name)
        value = base_dict(g).get(name)
    if entry is None or entry[0] is None:
        return
    owner = entry[0]
    current = current_record()
    if current is None or current is owner:
        return
    reporter = shared.app_state.reporter
    subject = f"g.{name}"
    if reporter.is_ignored("CG101", subject):
        return
    try:
        origin_tag, accessor_tag = owner.tag(), current.tag()
        violation = reporter.build(
            "CG101",
            subject=subject,
            message=g_leak_message(name, how, origin_tag, accessor_tag),
            origin=origin_tag,
            accessor=accessor_tag,
            thread=threading.current_thread().name,
            origin_site=entry[1],
            access_site=_sites.capture_site(depth + 1),
            origin_stack=entry[2],
            access_stack=(
                _sites.capture_stack(depth + 1)
                if reporter.settings.stacks
                else None
            ),
            value=value,
            has_value=True,
            value_name=name,
        )
    except Exception as exc:  # noqa: BLE001 - never break a request
        reporter.internal_error("checking a 'g' read", exc)
        return
    reporter.report(violation)


def base_dict(g: Any) -> dict[str, Any]:
    """``g``'s attribute dict, without going through any check."""
    return object.__getattribute__(g, "__dict__")  # type: ignore[no-any-return]


def _check_owned_read(g: Any, name: str) -> None:
    shared = _shared(g)
    # Owners, not __dict__: a g class may keep attributes in slots.
    if shared is not None and name in shared.owners:
        _check_g_read(g, name, "read", 2)


def _owner_here(shared: SharedG, depth: int) -> Owner:
    """Who is writing a shared g's attribute here (*depth*: frames up)."""
    current = current_record()
    if current is None:
        return (None, None, None)
    stacks = shared.app_state.reporter.settings.stacks
    return (
        current,
        _sites.capture_site(depth + 1),
        _sites.capture_stack(depth + 1) if stacks else None,
    )


def _set_owner(shared: SharedG, name: str, owner: Owner) -> None:
    if owner[0] is None:
        shared.owners.pop(name, None)
    else:
        shared.owners[name] = owner


def _make_watched_g_class(guarded: type) -> type:
    """
    The class a shared ``g`` is switched to: every read of an attribute is
    checked against the request that wrote it (CG101).
    """
    base_getattribute = method(guarded, "__getattribute__")
    base_setattr = method(guarded, "__setattr__")
    base_delattr = method(guarded, "__delattr__")

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        try:
            value = base_getattribute(self, name)
        except AttributeError:
            # Python falls back to the class's __getattr__ (which reads
            # __dict__) without coming back here: check before it does.
            _check_owned_read(self, name)
            raise
        _check_owned_read(self, name)
        return value

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        shared = _shared(self)
        if shared is None:
            base_setattr(self, name, value)
            return
        owner = _owner_here(shared, 1)
        with shared.lock:
            base_setattr(self, name, value)
            _set_owner(shared, name, owner)

    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        shared = _shared(self)
        if shared is None:
            base_delattr(self, name)
            return
        with shared.lock:
            base_delattr(self, name)
            shared.owners.pop(name, None)

    namespace: dict[str, Any] = {
        "__getattribute__": __getattribute__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
    }
    # A g class need not be an _AppCtxGlobals (Flask only calls it): wrap
    # the dict-like methods it has, and only those.
    for name, wrap in _DICT_METHODS.items():
        base = getattr(guarded, name, None)
        if base is not None:
            namespace[name] = wrap(base)
    return subclass(guarded, namespace)


_missing: Any = object()


def _watched_get(base_get: Callable[..., Any]) -> Callable[..., Any]:
    def get(self: Any, name: str, default: Any = None) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "read (g.get)", 1)
        return base_get(self, name, default)

    return get


def _watched_pop(base_pop: Callable[..., Any]) -> Callable[..., Any]:
    def pop(self: Any, name: str, default: Any = _missing) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "popped", 1)
        args = (name,) if default is _missing else (name, default)
        shared = _shared(self)
        if shared is None:
            return base_pop(self, *args)
        with shared.lock:
            value = base_pop(self, *args)
            shared.owners.pop(name, None)
        return value

    return pop


def _watched_setdefault(
    base_setdefault: Callable[..., Any],
) -> Callable[..., Any]:
    def setdefault(self: Any, name: str, default: Any = None) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "read (g.setdefault)", 1)
            return base_setdefault(self, name, default)
        shared = _shared(self)
        if shared is None:
            return base_setdefault(self, name, default)
        owner = _owner_here(shared, 1)
        with shared.lock:
            new = name not in base_dict(self)
            value = base_setdefault(self, name, default)
            if new:
                _set_owner(shared, name, owner)
        return value

    return setdefault


def _watched_contains(base_contains: Callable[..., Any]) -> Callable[..., Any]:
    def __contains__(self: Any, name: object) -> bool:  # noqa: N807
        found: bool = base_contains(self, name)
        if found and isinstance(name, str):
            _check_g_read(self, name, "looked up ('in')", 1)
        return found

    return __contains__


def _watched_iter(_base_iter: Callable[..., Any]) -> Callable[..., Any]:
    # Iterates over a snapshot of the names, not through the base's own.
    def __iter__(self: Any) -> Iterator[str]:  # noqa: N807
        names = list(base_dict(self))
        for name in names:
            _check_g_read(self, name, "iterated over", 1)
        return iter(names)

    return __iter__


# The dict-like methods of a g class, and their watched wrappers.
_DICT_METHODS: dict[
    str, Callable[[Callable[..., Any]], Callable[..., Any]]
] = {
    "get": _watched_get,
    "pop": _watched_pop,
    "setdefault": _watched_setdefault,
    "__contains__": _watched_contains,
    "__iter__": _watched_iter,
}


def watch_shared_g(g: Any, state: AppState) -> None:
    """
    *g* belongs to an app context pushed before the request now armed:
    switch it to its watched class, which checks reads against writers.
    """
    role = registry.role(type(g))
    if role not in (WATCHED_G, WATCHED_LATE_G):
        guarded = type(g) if role in (G, LATE_G) else _late_g_class(type(g))
        if not switch_class(g, _watched_g_class(guarded)):
            return
    if _shared(g) is None:
        _set_g_record(g, SharedG(state))


def own_g(g: Any, record: RequestRecord) -> None:
    """*g* belongs to the app context *record*'s request pushed."""
    role = registry.role(type(g))
    if role in (WATCHED_G, WATCHED_LATE_G):
        return  # a g shared with an outer request: not this one's
    if role not in (G, LATE_G) and not switch_class(g, _late_g_class(type(g))):
        return
    _set_g_record(g, record)
