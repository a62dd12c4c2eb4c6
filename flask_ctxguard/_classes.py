"""
Making the classes the guard installs or switches objects to.

Every guarded class is a subclass generated from the class it guards, so
that it behaves exactly like it: same name, module and docs. The helpers
here build such a subclass, switch an object's class, and hold the lock
under which each kind of generated class is cached.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

__all__ = ["RECORD", "lock", "method", "subclass", "switch_class"]

#: The attribute (or slot) a guarded object keeps its request's record in.
RECORD = "_ctxguard_record"

#: Held while a generated class is made and cached.
lock = threading.Lock()


def subclass(
    base: type, members: dict[str, Any], *, slots: tuple[str, ...] = ()
) -> type:
    """
    A subclass of *base* that looks like it (same name, module, docs) and
    adds *members*; with ``__slots__ = slots`` unless *base* is not meant
    to change layout.
    """
    namespace = {
        "__slots__": slots,
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
        **members,
    }
    return type(base.__name__, (base,), namespace)


def method(cls: type, name: str) -> Callable[..., Any]:
    """*cls*'s attribute *name*, typed as the callable it is."""
    return cast("Callable[..., Any]", getattr(cls, name))


def switch_class(obj: Any, cls: type) -> bool:
    """Switch *obj* to *cls*; `False` if its layout forbids it."""
    try:
        object.__setattr__(obj, "__class__", cls)
    except TypeError:
        return False  # a class whose layout forbids the switch
    return True
