"""
Values any code could produce again: the CG106 rule's ambient objects.

``ContextVar.set`` with the object a variable already holds cannot be
told, from the context alone, from a value inherited from an earlier
request. A value that any code can name without a reference path to it
(``None``, small ints, one-character strings, empty singletons, immortal
objects, classes, functions, modules, weakly referenced objects) is
therefore credited to the request that holds it (`is_ambient`). Interned
strings are credited only when the request's code names ``intern``
(`INTERNS`, noted by the walk in `cg106_walk`).
"""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Callable

__all__ = ["INTERNS", "is_ambient", "is_interned"]

# Objects that any code can name without holding a reference path to them:
# CPython's cached small ints and one-character strings, empty
# singletons, and (below) interned strings and immortal objects.
_SINGLETONS: tuple[object, ...] = (
    None,
    True,
    False,
    Ellipsis,
    NotImplemented,
    "",
    b"",
    (),
    frozenset(),
)
# Far above any count of real holders: an immortal object (Python 3.12+)
# or one the whole program shares.
_IMMORTAL_REFS = 1 << 24
_is_interned: Callable[[str], bool] | None = getattr(sys, "_is_interned", None)


def _interned(text: str) -> bool:
    if _is_interned is not None:  # Python 3.13+
        return _is_interned(text)
    if sys.version_info >= (3, 12):
        # Python 3.12 makes every interned string immortal.
        return sys.getrefcount(text) > _IMMORTAL_REFS
    # Python 3.10 and 3.11 intern mortal strings: intern an equal copy
    # (freed with its last reference) and see whether *text* comes back.
    copy = text.encode("utf-8", "surrogatepass").decode(
        "utf-8", "surrogatepass"
    )
    return sys.intern(copy) is text


def is_ambient(value: object) -> bool:
    """
    Whether any code could produce *value* again without a reference to
    it: ``None``, booleans, small ints, one-character strings, empty
    singletons, other immortal objects, classes, functions and modules,
    and objects something refers to weakly (a cache that hands them out
    again). A request that holds such a value may have set it itself.

    Interned strings are not ambient by themselves: every identifier-like
    literal is one (a test's header value ``"acme"``), and a request only
    gets an equal string's interned twin through ``sys.intern``, which
    `reachable_ids` notes when the request's code names it.
    """
    kind = type(value)
    if kind is int:
        return -5 <= value <= 256  # type: ignore[operator]
    if kind is str or kind is bytes:
        # Python 3.12 makes interned strings immortal: not counted below.
        return len(value) <= 1  # type: ignore[arg-type]
    if (kind is tuple or kind is frozenset) and not value:
        return True  # empty: a singleton on some Pythons, equal on all
    return (
        any(value is singleton for singleton in _SINGLETONS)
        # By the real type: a __class__ property may lie, or raise.
        or issubclass(
            kind,
            type
            | types.FunctionType
            | types.BuiltinFunctionType
            | types.ModuleType,
        )
        or sys.getrefcount(value) > _IMMORTAL_REFS
        or weakref.getweakrefcount(value) > 0
    )


def is_interned(value: object) -> bool:
    """Whether *value* is an interned string."""
    return type(value) is str and _interned(value)  # type: ignore[arg-type,unused-ignore]


#: In `reachable_ids` when the code names ``intern``: any interned string
#: is then within the request's reach.
INTERNS = sys.intern
