"""
The guarded ``g`` classes of a request's own ``g``.

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
``__getattribute__`` on every attribute lookup. A ``g`` shared by
requests is watched instead (`._shared_g`).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
import weakref
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

from flask_ctxguard._core.classes import (
    ESCAPED_G,
    ESCAPED_LATE_G,
    G_ROLES,
    LATE_G,
    OWN_G_ROLES,
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
from flask_ctxguard._core.flaskcompat import (
    FLASK_G_CLASS,
    G_REFS_AT_METHOD,
    G_REFS_AT_WRITE,
    app_ctx_var,
)
from flask_ctxguard._rules.access import NO_CONTEXT, report_access
from flask_ctxguard._rules.records import RequestRecord

if TYPE_CHECKING:
    # For typing only: _shared_g imports this module.
    from flask_ctxguard._guard.shared_g import SharedG

__all__ = [
    "MAX_CHECKED_NAMES",
    "base_dict",
    "escaped_g_class",
    "g_escapes",
    "g_outlives",
    "g_record",
    "guarded_g_class",
    "is_escaped",
    "late_g_class",
    "learn_names",
    "own_g",
    "set_g_record",
]

_app_get = app_ctx_var.get
_refcount = sys.getrefcount


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


def set_g_record(g: Any, record: RequestRecord | SharedG) -> None:
    if registry.role(type(g)) in SLOTTED_G_ROLES:
        object.__setattr__(g, RECORD, record)
        return
    with contextlib.suppress(TypeError):
        _g_records[g] = record


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
        # Only a write that replaces a value changes what a holder of
        # this g has seen: one that adds a name (Flask-Login loading its
        # user, mid-template) is not counted.
        replaces = name in state
        if flask_setattr:
            state[name] = value
        else:
            base_setattr(self, name, value)
        if replaces and _refcount(self) > G_REFS_AT_WRITE:
            g_escapes(self)

    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        base_delattr(self, name)
        if _refcount(self) > G_REFS_AT_WRITE:
            g_escapes(self)

    members: dict[str, Any] = {
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        # A name this g does not have: `getattr(g, 'db', None)` of a kept
        # g is a use of it, checked whether or not it escaped.
        "__getattr__": _checked_getattr(base, frozenset()),
    }
    members.update(_checked_g_methods(base, None, []))
    return subclass(base, members, slots=slots)


def _checked_getattr(
    base: type, checked: Collection[str]
) -> Callable[[Any, str], Any]:
    """
    The ``__getattr__`` of a guarded g class over *base*, which Python
    calls for a name the g does not have: a read of it outside the g's
    own context is a use of the g (unless *checked* names it: its checked
    property reported it already). Then it resolves as *base* would.
    """
    base_getattr = (
        None if base is FLASK_G_CLASS else getattr(base, "__getattr__", None)
    )

    def __getattr__(self: Any, name: str) -> Any:  # noqa: N807
        if name not in checked and _app_get(NO_CONTEXT).g is not self:
            _g_used(self, name, 1)
        state = self.__dict__
        if name in state:
            return state[name]
        if base_getattr is not None:
            return base_getattr(self, name)
        raise AttributeError(name)

    return __getattr__


def escaped_g_class(cls: type) -> type | None:
    """
    The escaped class of the guarded ``g`` class *cls* (cached): where a
    request's own ``g`` is switched when something else holds it, and
    every read of it is checked. *cls* itself if it is one; `None` if
    *cls* is not a request's own ``g`` class, or checks every read
    already (a ``g`` class without a ``__dict__``).
    """
    role = registry.role(cls)
    if role in (ESCAPED_G, ESCAPED_LATE_G):
        return cls
    if role not in (G, LATE_G) or not cls.__dictoffset__:
        return None
    return registry.get_or_make(
        cls, ESCAPED_G if role == G else ESCAPED_LATE_G, _make_escaped_g_class
    )


def is_escaped(g: Any) -> bool:
    """Whether *g* was switched to its escaped class."""
    return registry.role(type(g)) in (ESCAPED_G, ESCAPED_LATE_G)


def _make_escaped_g_class(guarded: type) -> type:
    """
    The escaped class of the guarded ``g`` class *guarded*: the same
    layout (it can be switched to), and each attribute name written to a
    ``g`` of this class becomes a property of the class whose getter
    checks the context and reads the instance's ``__dict__``: a C-level
    call of one small function. The values stay in ``__dict__``, so
    iterating ``g`` and ``vars(g)`` are unchanged.
    """
    base = guarded.__bases__[0]
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

    members: dict[str, Any] = {
        "__setattr__": __setattr__,
        # A name no g of this class was given through setattr (or one
        # deleted from this g): checked too. (A checked property raising
        # AttributeError checked it already before Python came here.)
        "__getattr__": _checked_getattr(base, checked),
    }
    members.update(_checked_g_methods(base, learnt, holder))
    cls = subclass(guarded, members)
    holder.append(cls)
    _learnt_names[cls] = learnt
    _checked_names[cls] = checked
    return cls


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
    base: type, learnt: set[str] | None, holder: list[type]
) -> dict[str, Any]:
    """
    The dict-like methods of a guarded g class that read values (``get``,
    ``pop``, ``setdefault``) or names (iteration), each checking the
    context first; Flask's own are written out rather than wrapped, which
    would cost a second Python call. ``in`` is left to the base class: it
    reveals no value, and Flask-Login asks it before every read of
    ``g._login_user``. Those of a request's own class (*learnt* `None`)
    also count the g's references when they change it, as writes do;
    those of an escaped class (*learnt*: its names) make the names
    ``setdefault`` sets checked properties of ``holder[0]``.
    """
    flask = base is FLASK_G_CLASS
    escaping = learnt is None
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
        if escaping and _refcount(self) > G_REFS_AT_METHOD:
            g_escapes(self)
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
        # (It never replaces a value: not counted, see __setattr__.)
        if learnt is not None and name not in learnt:
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


def base_dict(g: Any) -> dict[str, Any]:
    """``g``'s attribute dict, without going through any check."""
    return object.__getattribute__(g, "__dict__")  # type: ignore[no-any-return]


def own_g(g: Any, record: RequestRecord) -> None:
    """*g* belongs to the app context *record*'s request pushed."""
    role = registry.role(type(g))
    if role in (WATCHED_G, WATCHED_LATE_G):
        return  # a g shared with an outer request: not this one's
    if role not in OWN_G_ROLES and not switch_class(g, late_g_class(type(g))):
        return
    set_g_record(g, record)
