"""
The watched ``g``: one that outlives requests, shared by them (CG101).

A ``g`` that outlives requests (an app context pushed around them, as
tests do) is switched to its watched class, a subclass of its guarded
class (`._g`), which remembers which request wrote each attribute and
reports a read by another request (CG101); an ordinary request's ``g``
never is.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from flask_ctxguard._core import override as _override
from flask_ctxguard._core.classes import (
    ESCAPED_G,
    ESCAPED_LATE_G,
    LATE_G,
    WATCHED_G,
    WATCHED_LATE_G,
    G,
    method,
    registry,
    subclass,
    switch_class,
)
from flask_ctxguard._core.flaskcompat import app_ctx_var
from flask_ctxguard._guard.g import late_g_class
from flask_ctxguard._guard.g_checks import base_dict, g_record, set_g_record
from flask_ctxguard._reporting import sites as _sites
from flask_ctxguard._reporting.messages import g_leak_hint, g_leak_message
from flask_ctxguard._rules.access import current_record
from flask_ctxguard._rules.records import RequestRecord

if TYPE_CHECKING:
    from flask_ctxguard._guard.state import AppState

__all__ = ["Owner", "SharedG", "watch_shared_g"]

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


def _shared(g: Any) -> SharedG | None:
    record = g_record(g)
    return record if type(record) is SharedG else None


def _watched_g_class(guarded: type) -> type:
    """The watched class of the guarded ``g`` class *guarded*."""
    role = WATCHED_G if registry.role(guarded) == G else WATCHED_LATE_G
    cls = registry.get_or_make(guarded, role, _make_watched_g_class)
    assert cls is not None
    return cls


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
            # Whatever pushed the shared app context, if a test harness
            # did (a fixture, pytest-flask): the fix names it.
            hint=g_leak_hint(
                _override.current().harness(app_ctx_var.get(None))
            ),
        )
    except Exception as exc:  # noqa: BLE001 - never break a request
        reporter.internal_error("checking a 'g' read", exc)
        return
    reporter.report(violation)


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
        if role in (G, LATE_G):
            guarded = type(g)
        elif role in (ESCAPED_G, ESCAPED_LATE_G):
            # An escaped request's own g, now shared by a nested request:
            # watched like the g of its own class.
            guarded = type(g).__bases__[0]
        else:
            guarded = late_g_class(type(g))
        if not switch_class(g, _watched_g_class(guarded)):
            return
    if _shared(g) is None:
        set_g_record(g, SharedG(state))
