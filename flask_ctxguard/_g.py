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
from collections.abc import Iterator
from typing import Any

from . import _sites
from ._access import NO_CONTEXT, current_record, report_access
from ._classes import RECORD, lock, method, subclass, switch_class
from ._flaskcompat import FLASK_G_CLASS, app_ctx_var
from ._tags import RequestRecord

__all__ = [
    "SharedG",
    "base_dict",
    "g_record",
    "guarded_g_class",
    "own_g",
    "slotted_guarded_gs",
    "watch_shared_g",
]

_app_get = app_ctx_var.get
_guarded_gs: dict[type, type] = {}
_watched_gs: dict[type, type] = {}


class SharedG:
    """
    The bookkeeping of a ``g`` that outlives requests: who wrote what.
    """

    __slots__ = ("guard", "owners")

    def __init__(self, guard: Any) -> None:
        self.guard = guard
        # name -> (request that wrote it or None outside requests, site,
        # stack)
        self.owners: dict[
            str, tuple[RequestRecord | None, str | None, str | None]
        ] = {}


# g's record cannot live in g's __dict__: users iterate it. The g class
# installed by init_app has a slot for it. A g created before the guard was
# installed (the pytest plugin discovers apps late) cannot take a slot, as
# that would change the object's layout: its class is switched to one
# without a slot, and its record is kept in a weak dictionary instead.
_g_records: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
slotted_guarded_gs: set[type] = set()
_late_gs: dict[type, type] = {}


def g_record(g: Any) -> Any:
    if type(g) in slotted_guarded_gs:
        try:
            return object.__getattribute__(g, RECORD)
        except AttributeError:
            return None
    try:
        return _g_records.get(g)
    except TypeError:  # a g class without __weakref__
        return None


def _set_g_record(g: Any, record: Any) -> None:
    if type(g) in slotted_guarded_gs:
        object.__setattr__(g, RECORD, record)
        return
    with contextlib.suppress(TypeError):
        _g_records[g] = record


def _is_our_g_class(cls: type) -> bool:
    return cls in _watched_gs or cls in _watched_gs.values()


def guarded_g_class(base: type) -> type:
    """
    The guarded subclass of the ``g`` class *base* (cached), with a slot
    for the guard's record.
    """
    if _is_our_g_class(base):
        return base
    with lock:
        cls = _guarded_gs.get(base)
        if cls is None:
            cls = _make_guarded_g_class(base, slotted=True)
            watched = _make_watched_g_class(cls)
            slotted_guarded_gs.update((cls, watched))
            _watched_gs[cls] = watched
            _guarded_gs[base] = cls
        return cls


def _late_g_class(base: type) -> type:
    """
    The guarded subclass of *base* an existing ``g`` can be switched to:
    without a slot, its record is kept aside.
    """
    if _is_our_g_class(base):
        return base
    with lock:
        cls = _late_gs.get(base)
        if cls is None:
            cls = _make_guarded_g_class(base, slotted=False)
            _watched_gs[cls] = _make_watched_g_class(cls)
            _late_gs[base] = cls
        return cls


def _make_guarded_g_class(base: type, *, slotted: bool) -> type:
    # A request's own g is checked on every read: g is where a request's
    # user and tenant live, and handing it to a thread is a real bug
    # (CG104). A g shared by several requests is switched to its watched
    # class (CG101), and a request's own g to its retired class when the
    # request ends.
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
    shared = g_record(g)
    if type(shared) is not SharedG:
        return
    entry = shared.owners.get(name)
    if entry is None or entry[0] is None:
        return
    owner = entry[0]
    current = current_record()
    if current is None or current is owner:
        return
    reporter = shared.guard.reporter
    subject = f"g.{name}"
    if reporter.is_ignored("CG101", subject):
        return
    try:
        origin_tag, accessor_tag = owner.tag(), current.tag()
        value = base_dict(g).get(name)
        message = (
            f"'{subject}' was {how} during {accessor_tag}"
            f" but was set during {origin_tag.method} {origin_tag.path}"
            f" (request {origin_tag.token})."
        )
        violation = reporter.build(
            "CG101",
            subject=subject,
            message=message,
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
    shared = g_record(g)
    # Owners, not __dict__: a g class may keep attributes in slots.
    if type(shared) is SharedG and name in shared.owners:
        _check_g_read(g, name, "read", 2)


def _forget_g_owner(g: Any, name: str) -> None:
    shared = g_record(g)
    if type(shared) is SharedG:
        shared.owners.pop(name, None)


def _record_g_write(g: Any, name: str, depth: int) -> None:
    shared = g_record(g)
    if type(shared) is not SharedG:
        return
    current = current_record()
    if current is None:
        shared.owners.pop(name, None)
        return
    stacks = shared.guard.reporter.settings.stacks
    shared.owners[name] = (
        current,
        _sites.capture_site(depth + 1),
        _sites.capture_stack(depth + 1) if stacks else None,
    )


def _make_watched_g_class(guarded: type) -> type:
    """
    The class a shared ``g`` is switched to: every read of an attribute is
    checked against the request that wrote it (CG101).
    """
    base_getattribute = method(guarded, "__getattribute__")

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

    base_setattr = method(guarded, "__setattr__")
    base_delattr = method(guarded, "__delattr__")
    # A g class need not be an _AppCtxGlobals (Flask only calls it): wrap
    # the dict-like methods it has, and only those.
    base_get = getattr(guarded, "get", None)
    base_pop = getattr(guarded, "pop", None)
    base_setdefault = getattr(guarded, "setdefault", None)
    base_contains = getattr(guarded, "__contains__", None)
    base_iter = getattr(guarded, "__iter__", None)

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        base_setattr(self, name, value)
        _record_g_write(self, name, 1)

    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        base_delattr(self, name)
        _forget_g_owner(self, name)

    def get(self: Any, name: str, default: Any = None) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "read (g.get)", 1)
        return base_get(self, name, default)  # type: ignore[misc]

    _missing = object()

    def pop(self: Any, name: str, default: Any = _missing) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "popped", 1)
        if default is _missing:
            value = base_pop(self, name)  # type: ignore[misc]
        else:
            value = base_pop(self, name, default)  # type: ignore[misc]
        _forget_g_owner(self, name)
        return value

    def setdefault(self: Any, name: str, default: Any = None) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "read (g.setdefault)", 1)
            return base_setdefault(self, name, default)  # type: ignore[misc]
        value = base_setdefault(self, name, default)  # type: ignore[misc]
        _record_g_write(self, name, 1)
        return value

    def __contains__(self: Any, name: object) -> bool:  # noqa: N807
        found: bool = base_contains(self, name)  # type: ignore[misc]
        if found and isinstance(name, str):
            _check_g_read(self, name, "looked up ('in')", 1)
        return found

    def __iter__(self: Any) -> Iterator[str]:  # noqa: N807
        names = list(base_dict(self))
        for name in names:
            _check_g_read(self, name, "iterated over", 1)
        return iter(names)

    namespace: dict[str, Any] = {
        "__getattribute__": __getattribute__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
    }
    for name, base, wrapper in (
        ("get", base_get, get),
        ("pop", base_pop, pop),
        ("setdefault", base_setdefault, setdefault),
        ("__contains__", base_contains, __contains__),
        ("__iter__", base_iter, __iter__),
    ):
        if base is not None:
            namespace[name] = wrapper
    return subclass(guarded, namespace)


def watch_shared_g(g: Any, guard: Any) -> None:
    cls = type(g)
    if cls not in _watched_gs.values():
        guarded = cls if cls in _watched_gs else _late_g_class(cls)
        if not switch_class(g, _watched_gs[guarded]):
            return
    if type(g_record(g)) is not SharedG:
        _set_g_record(g, SharedG(guard))


def own_g(g: Any, record: RequestRecord) -> None:
    cls = type(g)
    if cls not in _watched_gs:
        if cls in _watched_gs.values():
            return  # a g shared with an outer request: not this one's
        if not switch_class(g, _late_g_class(cls)):
            return
    _set_g_record(g, record)
