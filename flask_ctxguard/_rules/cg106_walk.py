"""
What the code that runs for a request can name: the CG106 rule's reach.

``ContextVar.set`` with the object a variable already holds cannot be
told, from the context alone, from a value inherited from an earlier
request. `contextvar_leaks` therefore credits a request with a value
(other than structlog's, whose binds are observed) when any code could
produce it again (`cg106_ambient`), or when the request's own code can
name it (`reachable_ids`): a bounded, static walk of the code that runs
for the request (`cg106_roots`: the view, the hooks, the extensions'
callbacks) through its constants, globals, closures and defaults,
containers, objects' state, enums' members and ``lru_cache`` entries, a
few calls deep. Nothing of the app's runs during the walk. Each walk
keeps its own cache of classes' state, so concurrent walks (requests
ending on several threads) never see each other's. The limits of the
rule are in ``docs/rules.md#cg106``.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import types
from collections.abc import Iterable
from typing import Any, TypeGuard, TypeVar

from flask.sessions import SessionMixin
from werkzeug.sansio.request import Request as SansIORequest

from flask_ctxguard._core.flaskcompat import FLASK_G_CLASS
from flask_ctxguard._rules.cg106_ambient import INTERNS

_T = TypeVar("_T")

__all__ = [
    "EVERYTHING",
    "reachable_ids",
]

# Bounds of one walk: it runs once per endpoint, and again only when a
# leak is about to be reported, but an app's globals can be vast.
_MAX_OBJECTS = 20_000
_MAX_FUNCTION_DEPTH = 4
_MAX_CONTAINER_DEPTH = 3
_CONTAINERS = (list, tuple, set, frozenset)
_Pending = tuple[object, int, bool, int]
# Code the walk does not enter: the standard library's and the
# frameworks'. Their functions hand back what the app gives them, not
# registries of the app's own (and walking them would reach everything).
_FOREIGN = frozenset(
    (
        *sys.stdlib_module_names,
        "asgiref",
        "blinker",
        "click",
        "flask",
        "flask_ctxguard",
        "flask_login",
        "itsdangerous",
        "jinja2",
        "markupsafe",
        "structlog",
        "werkzeug",
    )
)
# How many objects' state a walk goes through from a name the code uses
# (``self.registry.plans``).
_MAX_HOPS = 2


def _is(obj: object, kind: type[_T]) -> TypeGuard[_T]:
    """
    ``isinstance`` by the object's real type. ``isinstance`` falls back
    on ``obj.__class__``, which a proxy resolves (Werkzeug's LocalProxy:
    ``current_user`` would load the user): the walk must run no app code.
    """
    return issubclass(type(obj), kind)


def _dict_of(obj: object) -> dict[str, Any] | None:
    """
    *obj*'s instance dict, read without running any of its code: only
    through the ``__dict__`` slot Python itself gives a class (a proxy's
    class defines its own ``__dict__``, which would resolve the proxy).
    """
    for klass in _mro(type(obj)):
        try:
            own = type.__dict__["__dict__"].__get__(klass)
        except Exception:  # noqa: BLE001 - a hostile metaclass
            return None
        if "__dict__" not in own:
            continue
        slot = own["__dict__"]
        if type(slot) not in _DICT_SLOTS:
            return None
        try:
            found = slot.__get__(obj, type(obj))
        except Exception:  # noqa: BLE001 - no __dict__ after all
            return None
        return found if type(found) is dict else None
    return None


_DICT_SLOTS = (types.GetSetDescriptorType, types.MemberDescriptorType)
_REQUEST_OBJECTS = (SansIORequest, SessionMixin, FLASK_G_CLASS)


def _mro(cls: type) -> tuple[type, ...]:
    try:
        mro = type.__dict__["__mro__"].__get__(cls)
    except Exception:  # noqa: BLE001 - a hostile metaclass
        return (cls,)
    return mro if _is(mro, tuple) else (cls,)


def _merged_class_state(cls: type) -> dict[str, Any]:
    state: dict[str, Any] = {}
    for klass in reversed(_mro(cls)):
        try:
            state.update(type.__dict__["__dict__"].__get__(klass))
        except Exception:  # noqa: BLE001 - a hostile metaclass
            continue
    return state


def _code_of(member: object) -> object:
    """A class attribute as the function it stands for, if it is one."""
    if _is(member, staticmethod) or _is(member, classmethod):
        return member.__func__
    if _is(member, property):
        return member.fget
    return member


class _Walk:
    """
    The objects the code of some functions can name: their constants,
    the globals, closure cells and defaults they use, the attributes of
    those under the names the code uses, the entries of containers and
    the state of objects among them, and the same again for the functions
    and methods the code names.

    Static: nothing of the app's runs (no property, no ``__getattr__``).
    """

    def __init__(self) -> None:
        # Each class's merged state, for this walk only: classes may
        # change between walks, and walks run concurrently (each request
        # that ends may walk).
        self._classes: dict[type, dict[str, Any]] = {}
        self.ids: set[int] = set()
        self.names: set[str] = set()
        self._functions: set[int] = set()
        self._named: set[int] = set()
        self._pending: list[_Pending] = []
        # Objects met so far: looked up again under the names that code
        # met later uses.
        self._met: list[_Pending] = []

    def full(self) -> bool:
        return len(self.ids) >= _MAX_OBJECTS

    def _class_state(self, cls: type) -> dict[str, Any]:
        """The attributes *cls* and its bases define, the nearest first."""
        try:
            return self._classes[cls]
        except (KeyError, TypeError):
            pass
        state = _merged_class_state(cls)
        with contextlib.suppress(TypeError):
            self._classes[cls] = state
        return state

    def function(self, func: object, depth: int) -> None:
        """Take in the code of the callable *func*."""
        if depth > _MAX_FUNCTION_DEPTH or id(func) in self._functions:
            return
        self._functions.add(id(func))
        self.ids.add(id(func))
        if _is(func, types.MethodType):
            self.function(func.__func__, depth)
            self.value(func.__self__, depth, named=False)
        elif _is(func, functools.partial):
            self.function(func.func, depth)
            for arg in (*func.args, *func.keywords.values()):
                self.value(arg, depth, named=False)
        elif _is(func, type):
            # A class-based view, or a class the code calls: its methods.
            for member in self._class_state(func).values():
                member = _code_of(member)  # noqa: PLW2901
                if _is(member, types.FunctionType):
                    self.function(member, depth)
        elif _is(func, types.FunctionType):
            self._code(func, depth)
        else:
            # A callable instance: its class's __call__, and its state
            # (an lru_cache's entries are only seen by the collector).
            call = _code_of(self._class_state(type(func)).get("__call__"))
            if _is(call, types.FunctionType):
                self.function(call, depth)
            self.value(func, depth, named=False)
            self._referents(func, depth)

    def _referents(self, func: object, depth: int) -> None:
        # What a C-level callable holds (functools.lru_cache: its cache,
        # whose entries hold the results), two levels deep.
        for referent in gc.get_referents(func):
            self.value(referent, depth, named=False)
            if _is(referent, dict):
                for entry in list(dict.values(referent)):
                    for held in gc.get_referents(entry):
                        self.value(held, depth, named=False)

    def _code(self, func: types.FunctionType, depth: int) -> None:
        module: object = func.__module__  # anything a user assigned
        if _is(module, str) and module.partition(".")[0] in _FOREIGN:
            return
        state = _dict_of(func) or {}
        for layer in (state.get("__wrapped__"), state.get("view_class")):
            if layer is not None:
                self.function(layer, depth)
        codes = [func.__code__]
        while codes:
            code = codes.pop()
            self.names.update(code.co_names)
            for constant in code.co_consts:
                if _is(constant, types.CodeType):
                    codes.append(constant)
                else:
                    self.value(constant, depth, named=False)
        namespace = func.__globals__
        for name in self.names & namespace.keys():
            self.value(namespace[name], depth, named=True)
        for cell in func.__closure__ or ():
            try:
                contents = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            self.value(contents, depth, named=True)
        for default in (
            *(func.__defaults__ or ()),
            *(func.__kwdefaults__ or {}).values(),
        ):
            self.value(default, depth, named=False)

    def value(
        self,
        obj: object,
        depth: int,
        *,
        named: bool,
        level: int = 0,
        hops: int = 0,
    ) -> None:
        """
        Take in *obj*, which the code can name (*named*: by a name it
        uses, so a function is walked into) or reach through a container
        (*level* deep) or the state of *hops* objects.
        """
        if self.full():
            return
        if id(obj) in self.ids:
            if named and id(obj) not in self._named:
                # Met in a container first, named by code now.
                self._named.add(id(obj))
                self._pending.append((obj, depth, named, hops))
            return
        self.ids.add(id(obj))
        if issubclass(type(obj), _REQUEST_OBJECTS):
            # Another request's request, session or g, kept somewhere: what
            # B reads through it is that request's data (CG102/CG103 say
            # so), not something B's own code can name.
            return
        if named:
            self._named.add(id(obj))
        self._pending.append((obj, depth, named, hops))
        if level >= _MAX_CONTAINER_DEPTH:
            return
        if _is(obj, dict):
            items: list[Any] = []
            for key, item in list(dict.items(obj)):
                self.ids.add(id(key))
                items.append(item)
        elif type(obj) in _CONTAINERS:
            items = list(obj)  # type: ignore[call-overload]
        else:
            return
        for item in items:
            self.value(item, depth, named=False, level=level + 1, hops=hops)

    def settle(self) -> None:
        """Look up what the code names on what it can reach, until done."""
        looked_up: set[str] = set()
        while not self.full():
            while self._pending and not self.full():
                batch, self._pending = self._pending, []
                for pending in batch:
                    self._met.append(pending)
                    self._expand(*pending, self.names)
            # Objects met early are looked up again under the names that
            # code met later uses, and only those.
            new = self.names - looked_up
            if not new or not looked_up:
                looked_up |= new
                if not new:
                    return
                continue
            looked_up |= new
            for pending in list(self._met):
                self._expand(*pending, new)

    def _expand(
        self,
        obj: object,
        depth: int,
        named: bool,
        hops: int,
        names: set[str],
    ) -> None:
        if named and callable(obj) and not _is(obj, type):
            self.function(obj, depth + 1)
            return
        if hops >= _MAX_HOPS or _is(obj, dict) or type(obj) in _CONTAINERS:
            return
        if _is(obj, type):
            state = self._class_state(obj)
            members = state.get("_member_map_")
            if _is(members, dict):  # an Enum: all its members
                for member in list(dict.values(members)):
                    self.value(member, depth, named=False, hops=hops + 1)
        elif _is(obj, types.ModuleType):
            state = _dict_of(obj) or {}
        elif type(obj).__module__.startswith("flask_ctxguard."):
            return  # the guard's own state (this walk's earlier results)
        else:
            # An object: its whole state (a registry object, a cache, the
            # app and its config), and its class's methods the code names.
            for member in list((_dict_of(obj) or {}).values()):
                self.value(member, depth, named=False, hops=hops + 1)
            state = self._class_state(type(obj))
        shared = (
            [name for name in names if name in state]
            if len(names) < len(state)
            else [name for name in state if name in names]
        )
        for name in shared:
            self.value(_code_of(state[name]), depth, named=True, hops=hops + 1)


def reachable_ids(
    functions: Iterable[object], roots: Iterable[object] = ()
) -> frozenset[int]:
    """
    The ids of the objects the code of *functions* (a view and the
    request's hooks) can name, statically: the constants in their code,
    the globals, closure cells and defaults they use, what those hold
    under the names the code uses (a registry's entries, an enum's
    members, a module's or an object's attributes), and the same for the
    functions and methods they name, a few calls deep.

    A ContextVar that a request sets to such an object again on every
    request (``plan.set(PLANS[org])``, ``role.set(Role.MEMBER)``) looks
    inherited at the C level; this is how the request is credited with
    it. *roots* are objects whose state the code reaches by other means
    (the app, through ``current_app``). Bounded and static.
    """
    walk = _Walk()
    try:
        for root in roots:
            walk.value(root, 0, named=False)
        for func in functions:
            walk.function(func, 0)
        walk.settle()
    except Exception:  # noqa: BLE001 - an app's object the walk cannot read
        # Then anything may be within the request's reach: say so, and
        # CG106 stays silent for this endpoint.
        return EVERYTHING
    if "intern" in walk.names:
        walk.ids.add(id(INTERNS))
    return frozenset(walk.ids)


class _Everything(frozenset[int]):
    """The ids of every object: what `reachable_ids` gives when it fails."""

    def __contains__(self, item: object) -> bool:
        return True


EVERYTHING: frozenset[int] = _Everything()
