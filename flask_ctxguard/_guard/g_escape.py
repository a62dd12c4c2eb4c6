"""
The escaped class of a request's own ``g``: every read checked.

A request's own ``g`` that something else holds (a thread it was handed
to, a cache, a global) is switched to its escaped class (see `g`). Each
attribute name written to a ``g`` of that class becomes a checked
property of the class, whose getter checks the context and reads the
instance's ``__dict__``: a read costs one small Python function, not a
``__getattribute__`` on every attribute lookup. Writes from outside the
``g``'s context are checked too. A class that would get more than
`MAX_CHECKED_NAMES` properties checks every read with a
``__getattribute__`` instead.
"""

from __future__ import annotations

import inspect
import threading
import weakref
from typing import Any

from flask_ctxguard._core.classes import (
    ESCAPED_G,
    ESCAPED_LATE_G,
    LATE_G,
    RECORD,
    G,
    method,
    registry,
    subclass,
)
from flask_ctxguard._core.flaskcompat import FLASK_G_CLASS, app_ctx_var
from flask_ctxguard._guard.g_checks import (
    base_dict,
    checked_g_methods,
    checked_getattr,
    g_used,
    reported_missing,
)
from flask_ctxguard._rules.access import NO_CONTEXT

__all__ = [
    "MAX_CHECKED_NAMES",
    "escaped_g_class",
    "is_escaped",
    "learn_names",
]

_app_get = app_ctx_var.get


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
    holder: list[type] = []
    base_setattr = method(base, "__setattr__")
    flask_setattr = base is FLASK_G_CLASS or base_setattr is object.__setattr__

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        # A write from outside the g's context is a use of it (CG102 once
        # its request ended), as a read is.
        if _app_get(NO_CONTEXT).g is not self:
            g_used(self, name, 1)
        # The name becomes a checked property before the value is stored:
        # a holder reading it meanwhile finds no value in __dict__ and goes
        # through the checked __getattr__.
        if name not in learnt:
            _learn(holder[0], learnt, name)
        if flask_setattr:
            self.__dict__[name] = value
        else:
            base_setattr(self, name, value)

    def on_new_name(self: Any, name: str) -> None:
        if name not in learnt:
            _learn(holder[0], learnt, name)

    members: dict[str, Any] = {
        "__setattr__": __setattr__,
        # A name no g of this class was given through setattr (or one
        # deleted from this g): checked too. (A checked property raising
        # AttributeError checked it already before Python came here.)
        "__getattr__": checked_getattr(base),
    }
    members.update(checked_g_methods(base, on_new_name=on_new_name))
    cls = subclass(guarded, members)
    holder.append(cls)
    _learnt_names[cls] = learnt
    return cls


#: At most this many attribute names become checked properties of one g
#: class: an app that makes up names (`setattr(g, f"cache_{key}", ...)`)
#: must not grow the class without bound. Beyond it, the class checks
#: every read with a __getattribute__ instead, at its cost.
MAX_CHECKED_NAMES = 512
# The g classes that check every read so (see _hook_every_read).
_hooked_classes: weakref.WeakSet[type] = weakref.WeakSet()
# Each guarded g class (with a __dict__): the names it has seen. Weak, like
# the class registry.
_learnt_names: weakref.WeakKeyDictionary[type, set[str]] = (
    weakref.WeakKeyDictionary()
)
# Serialises making names checked properties of a class.
_learn_lock = threading.Lock()


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
        checked = _checked_property(cls, name)
        if checked is not None:
            type.__setattr__(cls, name, checked)
        # Published last: a writer that finds the name learnt goes on at
        # once, and a holder reading it must find its property installed.
        learnt.add(name)


def _checked_property(cls: type, name: str) -> property | None:
    """The checked property *name* of *cls* should have, if any."""
    if name.startswith("__") or name == RECORD:
        return None
    inherited = inspect.getattr_static(cls, name, _MISSING)
    if inherited is _MISSING:
        return _checked_g_attribute(name, None)
    if _is_data_descriptor(inherited):
        # A slot or a property of the g class: checked, then as before.
        return _checked_g_attribute(name, inherited)
    # A method or a class-level default keeps its meaning: reads of it
    # are not checked.
    return None


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
                g_used(self, name, 1)
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
                g_used(g, name, 1)
            try:
                return inherited_get(inherited, g, type(g))
            except AttributeError:
                reported_missing(g, name)  # checked: not again
                raise

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
            g_used(g, name, 1)
        try:
            return g.__dict__[name]
        except KeyError:
            # Deleted from this g, or never set on it: the class's
            # __getattr__ (Python calls it after an AttributeError here),
            # which leaves this read alone.
            reported_missing(g, name)
            raise AttributeError(name) from None

    def set_(g: Any, value: Any) -> None:
        g.__dict__[name] = value

    def delete(g: Any) -> None:
        try:
            del g.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    return property(get, set_, delete, f"'g.{name}', checked.")
