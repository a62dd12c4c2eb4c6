"""
The guarded ``g`` classes: a request's own, and one shared by requests.

``app.app_ctx_globals_class`` is replaced by a generated subclass that
checks every read of a request's own ``g`` against the current context
(CG102-CG104, like the request): each attribute name written to such a
``g`` becomes a checked property of the class, so that a read costs one
small Python function, not a ``__getattribute__`` on every attribute
lookup. A ``g`` that outlives requests (an app
context pushed around them, as tests do) is switched to its watched class,
which remembers which request wrote each attribute and reports a read by
another request (CG101); an ordinary request's ``g`` never is.
"""

from __future__ import annotations

import contextlib
import inspect
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
    "late_g_class",
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


def late_g_class(base: type) -> type:
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
    slots = (RECORD,) if slotted else ()
    if not base.__dictoffset__:
        return _make_hooked_g_class(base, slots)
    # g is where a request's user and tenant live, and handing it to a
    # thread is a real bug (CG104), so every read of a request's own g is
    # checked; but a Python-level __getattribute__ on every read of g
    # (Flask-Login's `current_user` is two of them) costs more than all
    # the rest of the guard on a page that reads it often (issue 15).
    # Instead, each attribute name written to a g of this class becomes a
    # property of the class whose getter checks the context and reads the
    # instance's __dict__: a C-level call of one small function, and
    # nothing for Flask's own reads of __dict__ (`in`, get, pop). The
    # values stay in __dict__, so iterating g and vars(g) are unchanged.
    learnt: set[str] = set()
    checked: set[str] = set()
    holder: list[type] = []
    base_setattr = method(base, "__setattr__")
    flask_setattr = base is FLASK_G_CLASS or base_setattr is object.__setattr__

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        if flask_setattr:
            self.__dict__[name] = value
        else:
            base_setattr(self, name, value)
        if name not in learnt:
            _learn(holder[0], learnt, name)

    def __getattr__(self: Any, name: str) -> Any:  # noqa: N807
        # A name no g of this class was given through setattr (or one
        # deleted from this g): checked too, as `getattr(g, 'db', None)`
        # of a kept g is a use of it. (A checked property raising
        # AttributeError checked it already before Python came here.)
        if name not in checked and _app_get(NO_CONTEXT).g is not self:
            _g_used(self, name, 1)
        state = self.__dict__
        if name in state:
            return state[name]
        if base_getattr is not None:
            return base_getattr(self, name)
        raise AttributeError(name)

    base_getattr = (
        None if base is FLASK_G_CLASS else getattr(base, "__getattr__", None)
    )
    members: dict[str, Any] = {
        "__setattr__": __setattr__,
        "__getattr__": __getattr__,
    }
    members.update(_checked_g_methods(base, learnt, holder))
    cls = subclass(base, members, slots=slots)
    holder.append(cls)
    _learnt_names[cls] = learnt
    _checked_names[cls] = checked
    return cls


def _make_hooked_g_class(base: type, slots: tuple[str, ...]) -> type:
    """
    The guarded subclass of a ``g`` class without a ``__dict__``: every
    attribute read is checked by a ``__getattribute__``.
    """
    base_getattribute = method(base, "__getattribute__")

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if _app_get(NO_CONTEXT).g is not self:
            _g_used(self, name, 1)
        return base_getattribute(self, name)

    return subclass(base, {"__getattribute__": __getattribute__}, slots=slots)


#: At most this many attribute names become checked properties of one g
#: class: an app that makes up names (`setattr(g, f"cache_{key}", ...)`)
#: must not grow the class without bound. Beyond it, the class checks
#: every read with a __getattribute__ instead, at its cost.
MAX_CHECKED_NAMES = 512
# The g classes that check every read so (see _hook_every_read).
_hooked_classes: weakref.WeakSet[type] = weakref.WeakSet()
# Each guarded g class (with a __dict__): the names it has seen, and those
# of them that are checked properties. Weak, like the class registry.
_learnt_names: weakref.WeakKeyDictionary[type, set[str]] = (
    weakref.WeakKeyDictionary()
)
_checked_names: weakref.WeakKeyDictionary[type, set[str]] = (
    weakref.WeakKeyDictionary()
)
# Serialises making names checked properties of a class.
_learn_lock = threading.Lock()


def _g_used(g: Any, name: str, depth: int) -> None:
    """*g*'s attribute *name* was used outside its request's context."""
    record = g_record(g)
    if type(record) is RequestRecord:
        report_access(record, "g", name, depth + 1)


def _learn(cls: type, learnt: set[str], name: str) -> None:
    """Make *name* a checked property of the g class *cls*."""
    if cls in _hooked_classes:
        return
    with _learn_lock:
        if name in learnt or cls in _hooked_classes:
            return
        if len(learnt) >= MAX_CHECKED_NAMES:
            _hook_every_read(cls)
            return
        learnt.add(name)
        if name.startswith("__") or name == RECORD:
            return
        inherited = inspect.getattr_static(cls, name, _MISSING)
        if inherited is _MISSING:
            checked = _checked_g_attribute(name, None)
        elif _is_data_descriptor(inherited):
            # A slot or a property of the g class: checked, then as before.
            checked = _checked_g_attribute(name, inherited)
        else:
            # A method or a class-level default keeps its meaning: reads
            # of it are not checked.
            return
        type.__setattr__(cls, name, checked)
        _checked_names[cls].add(name)


def _hook_every_read(cls: type) -> None:
    """
    Check every read of an instance attribute of the g class *cls*, which
    has as many checked properties as it may: a ``__getattribute__``, as
    costly as it is thorough, for an app that makes up names.
    """
    base_getattribute = object.__getattribute__

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if _app_get(NO_CONTEXT).g is not self:
            state = base_getattribute(self, "__dict__")
            if name in state:
                # Read here, not through its property: one report, and
                # the frames _g_used counts are the same.
                _g_used(self, name, 1)
                return state[name]
        return base_getattribute(self, name)

    type.__setattr__(cls, "__getattribute__", __getattribute__)
    _hooked_classes.add(cls)


def _is_data_descriptor(obj: Any) -> bool:
    kind = type(obj)
    return hasattr(kind, "__set__") or hasattr(kind, "__delete__")


def learn_names(g: Any) -> None:
    """
    Check the attributes *g* already has (it was switched to a guarded
    class after they were set).
    """
    for cls in type(g).__mro__:
        learnt = _learnt_names.get(cls)
        if learnt is not None:
            for name in list(base_dict(g)):
                if name not in learnt:
                    _learn(cls, learnt, name)
            return


_MISSING: Any = object()


def _checked_g_attribute(name: str, inherited: Any) -> property:
    """
    The checked property *name* of a guarded g class: the value is in the
    instance's ``__dict__``, or *inherited*'s (a data descriptor of the
    base class, such as a slot) if not `None`.
    """
    if inherited is not None:
        kind = type(inherited)
        inherited_get = kind.__get__
        inherited_set = getattr(kind, "__set__", None)
        inherited_delete = getattr(kind, "__delete__", None)

        def get_inherited(g: Any) -> Any:
            if _app_get(NO_CONTEXT).g is not g:
                _g_used(g, name, 1)
            return inherited_get(inherited, g, type(g))

        def set_inherited(g: Any, value: Any) -> None:
            if inherited_set is None:
                raise AttributeError(name)
            inherited_set(inherited, g, value)

        def delete_inherited(g: Any) -> None:
            if inherited_delete is None:
                raise AttributeError(name)
            inherited_delete(inherited, g)

        return property(
            get_inherited, set_inherited, delete_inherited, inherited.__doc__
        )

    def get(g: Any) -> Any:
        if _app_get(NO_CONTEXT).g is not g:
            _g_used(g, name, 1)
        try:
            return g.__dict__[name]
        except KeyError:
            # Deleted from this g, or never set on it: the class's
            # __getattr__ (Python calls it after an AttributeError here).
            raise AttributeError(name) from None

    def set_(g: Any, value: Any) -> None:
        g.__dict__[name] = value

    def delete(g: Any) -> None:
        try:
            del g.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    return property(get, set_, delete, f"'g.{name}', checked.")


def _checked_g_methods(
    base: type, learnt: set[str], holder: list[type]
) -> dict[str, Any]:
    """
    The dict-like methods of a guarded g class that read values (``get``,
    ``pop``, ``setdefault``) or names (iteration), each checking the
    context first; Flask's own are written out rather than wrapped, which
    would cost a second Python call. ``in`` is left to the base class: it
    reveals no value, and Flask-Login asks it before every read of
    ``g._login_user``, which is checked.
    """
    flask = base is FLASK_G_CLASS
    found: dict[str, Any] = {}
    base_get = getattr(base, "get", None)
    base_pop = getattr(base, "pop", None)
    base_setdefault = getattr(base, "setdefault", None)
    base_iter = getattr(base, "__iter__", None)

    def get(self: Any, name: str, default: Any = None) -> Any:
        if _app_get(NO_CONTEXT).g is not self:
            _g_used(self, name, 1)
        if flask:
            return self.__dict__.get(name, default)
        return base_get(self, name, default)  # type: ignore[misc]

    _missing = object()

    def pop(self: Any, name: str, default: Any = _missing) -> Any:
        if _app_get(NO_CONTEXT).g is not self:
            _g_used(self, name, 1)
        if default is _missing:
            if flask:
                return self.__dict__.pop(name)
            return base_pop(self, name)  # type: ignore[misc]
        if flask:
            return self.__dict__.pop(name, default)
        return base_pop(self, name, default)  # type: ignore[misc]

    def setdefault(self: Any, name: str, default: Any = None) -> Any:
        if _app_get(NO_CONTEXT).g is not self:
            _g_used(self, name, 1)
        if name not in learnt:
            _learn(holder[0], learnt, name)
        if flask:
            return self.__dict__.setdefault(name, default)
        return base_setdefault(self, name, default)  # type: ignore[misc]

    def __iter__(self: Any) -> Iterator[str]:  # noqa: N807
        if _app_get(NO_CONTEXT).g is not self:
            _g_used(self, "", 1)
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
        guarded = type(g) if role in (G, LATE_G) else late_g_class(type(g))
        if not switch_class(g, _watched_g_class(guarded)):
            return
        learn_names(g)
    if _shared(g) is None:
        _set_g_record(g, SharedG(state))


def own_g(g: Any, record: RequestRecord) -> None:
    """*g* belongs to the app context *record*'s request pushed."""
    role = registry.role(type(g))
    if role in (WATCHED_G, WATCHED_LATE_G):
        return  # a g shared with an outer request: not this one's
    if role not in (G, LATE_G):
        if not switch_class(g, late_g_class(type(g))):
            return
        learn_names(g)
    _set_g_record(g, record)
