"""
Making the classes the guard installs or switches objects to, and the one
registry of them.

Every guarded class is a subclass generated from the class it guards, so
that it behaves exactly like it: same name, module and docs. The helpers
here build such a subclass and switch an object's class; `registry`
remembers, weakly, which class was made from which and for what role, so
that "is this class ours?" is one dictionary lookup and a class generated
for an app dies with the last object that uses it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, cast

__all__ = [
    "RECORD",
    "Registry",
    "method",
    "registry",
    "subclass",
    "switch_class",
]

#: The attribute (or slot) a guarded object keeps its request's record in.
RECORD = "_ctxguard_record"


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


# The roles of generated classes, by the object they guard.
REQUEST = "request"  #: installed as app.request_class (checked in slots)
LATE_REQUEST = "late request"  #: an existing request is switched to it
RETIRED_REQUEST = "retired request"  #: made from a guarded request class
SESSION = "session"  #: a guarded session class
SESSION_INTERFACE = "session interface"  #: arms requests in open_session
#: arms a random sample of requests in open_session (CTXGUARD_SAMPLE_RATE)
SAMPLING_SESSION_INTERFACE = "sampling session interface"
G = "g"  #: installed as app.app_ctx_globals_class, record in a slot
LATE_G = "late g"  #: an existing g is switched to it, record aside
#: a request's own g that escaped its request, made from G
ESCAPED_G = "escaped g"
#: a request's own g that escaped its request, made from LATE_G
ESCAPED_LATE_G = "escaped late g"
WATCHED_G = "watched g"  #: a shared g (CG101), made from G
WATCHED_LATE_G = "watched late g"  #: a shared g, made from LATE_G

#: The roles whose instances keep their record in a slot.
SLOTTED_G_ROLES = frozenset({G, ESCAPED_G, WATCHED_G})
#: The roles of a request's own g class, escaped or not.
OWN_G_ROLES = frozenset({G, LATE_G, ESCAPED_G, ESCAPED_LATE_G})
#: Every role of a g class.
G_ROLES = OWN_G_ROLES | {WATCHED_G, WATCHED_LATE_G}
#: Every role of a request class.
REQUEST_ROLES = frozenset({REQUEST, LATE_REQUEST, RETIRED_REQUEST})

_DECLINED: Any = object()
# The attribute of a generated class holding the classes made from it.
_PINNED = "_ctxguard_made"


class Registry:
    """
    Every class the guard generated: its role, and which class it was made
    from. Classes are held weakly, both ways.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._roles: weakref.WeakKeyDictionary[type, str] = (
            weakref.WeakKeyDictionary()
        )
        self._made: weakref.WeakKeyDictionary[type, dict[str, Any]] = (
            weakref.WeakKeyDictionary()
        )

    def role(self, cls: type) -> str | None:
        """*cls*'s role, if the guard generated it, else `None`."""
        return self._roles.get(cls)

    def made(self, base: type, role: str) -> type | None:
        """The class made from *base* for *role*, if it is alive."""
        ref = self._made.get(base, {}).get(role)
        if ref is None or ref is _DECLINED:
            return None
        return ref()  # type: ignore[no-any-return]

    def declined(self, base: type, role: str) -> bool:
        """Whether no class can be made from *base* for *role*."""
        return self._made.get(base, {}).get(role) is _DECLINED

    def decline(self, base: type, role: str) -> None:
        """Remember that no class can be made from *base* for *role*."""
        with self._lock:
            self._made.setdefault(base, {})[role] = _DECLINED

    def get_or_make(
        self, base: type, role: str, make: Callable[[type], type | None]
    ) -> type | None:
        """
        The class made from *base* for *role*, made by ``make(base)`` if
        there is none alive; `None` if *make* declines (and from then on).
        """
        made = self._made.get(base, {}).get(role)
        if made is _DECLINED:
            return None
        cls = made() if made is not None else None
        if cls is not None:
            return cls  # type: ignore[no-any-return]
        with self._lock:
            cls = self.made(base, role)
            if cls is None and not self.declined(base, role):
                cls = make(base)
                if cls is None:
                    self.decline(base, role)
                else:
                    self._roles[cls] = role
                    self._made.setdefault(base, {})[role] = weakref.ref(cls)
                    if self.role(base) is not None:
                        # Made from one of ours (a retired or watched
                        # class): it lives as long as that one does.
                        pinned = base.__dict__.get(_PINNED)
                        if pinned is None:
                            pinned = {}
                            type.__setattr__(base, _PINNED, pinned)
                        pinned[role] = cls
            return cls


#: The registry of every class the guard generated.
registry = Registry()
