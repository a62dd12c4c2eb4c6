"""
ContextVar snapshots and the CG106 comparison.

A request's context is snapshotted with `contextvars.copy_context` when it
starts and when it ends: O(1) copies of an immutable mapping. Comparing two
snapshots with ``==`` runs in C, so a request that changed no ContextVar
costs two copies and one comparison. Only when something changed are the
snapshots diffed in Python.

What a request sets and leaves behind is remembered, with the request, in
one ContextVar of our own: it lives in the same context as the leaked values
(the pooled worker thread's, or the test client's) and dies with it, so the
guard keeps nothing alive on its own.

``ContextVar.set`` with the very object a variable already holds leaves
the context's mapping untouched at the C level (the HAMT returns itself),
on every supported Python: a request that sets a registry entry, a module
constant or an enum member again on every request cannot be told from one
that inherited it by looking at the context. So a value is only reported
when the request could not have set it itself (issue 11): it is not an
ambient object any code can name (`is_ambient`), not part of the request's
own data, and not reachable from the names the request's own code uses
(`reachable_ids`). The limits of that rule are in ``docs/rules.md#cg106``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import sys
import types
import weakref
from collections.abc import Callable, Container, Iterable, Iterator
from contextvars import Context, ContextVar
from typing import Any, TypeGuard, TypeVar

from flask.sessions import SessionMixin
from werkzeug.sansio.request import Request as SansIORequest

from ._flaskcompat import FLASK_CONTEXT_VARS, FLASK_G_CLASS
from ._tags import RequestRecord

_T = TypeVar("_T")

__all__ = [
    "LEFT_BEHIND",
    "Leak",
    "LeftBehind",
    "detect_leaks",
    "detect_unsampled_leaks",
    "is_ambient",
    "reachable_ids",
]

#: What each ContextVar was left holding, and by which request.
LeftBehind = dict[ContextVar[Any], tuple[object, RequestRecord]]

_left_behind: ContextVar[LeftBehind | None] = ContextVar(
    "flask_ctxguard.left_behind", default=None
)

# Values that carry no request data and that libraries set and reset as
# flags (asgiref's deadlock guard, structlog's cleared marker `...`). They
# are singletons, so a request that sets the same one again is
# indistinguishable from a request that inherited it.
_FLAG_VALUES: tuple[object, ...] = (None, True, False, Ellipsis)

#: Public name of the guard's own ContextVar, for the fast path.
LEFT_BEHIND = _left_behind

# Sampling (CTXGUARD_SAMPLE_RATE < 1): every ContextVar's value when the
# last sampled request in this context ended. A value a later sampled
# request finds that is not among these was set in between, by requests
# that were not guarded.
_last_seen: ContextVar[dict[ContextVar[Any], object] | None] = ContextVar(
    "flask_ctxguard.last_seen", default=None
)

_IGNORED_VARS: frozenset[ContextVar[Any]] = FLASK_CONTEXT_VARS | {
    _left_behind,
    _last_seen,
}

# Modules whose own ContextVars are bookkeeping, never request data:
# asgiref's thread and event-loop tracking (set when Flask runs an async
# view), structlog's async call tracking (not the vars bind_contextvars
# makes), Werkzeug's debug console. They are found by identity, so a user's
# own asgiref Local or structlog key is still checked.
_LIBRARY_MODULES = (
    "asgiref.sync",
    "decimal",
    "structlog.contextvars",
    "werkzeug.debug",
)
_library: tuple[tuple[str, ...], frozenset[ContextVar[Any]]] = (
    (),
    frozenset(),
)


def _library_vars() -> frozenset[ContextVar[Any]]:
    global _library
    loaded = tuple(name for name in _LIBRARY_MODULES if name in sys.modules)
    if loaded == _library[0]:
        return _library[1]
    found: set[ContextVar[Any]] = set()
    if "decimal" in loaded:
        found.update(_decimal_vars())
    for name in loaded:
        for value in list(vars(sys.modules[name]).values()):
            members = [value]
            if isinstance(value, type):
                members.extend(vars(value).values())
            for member in members:
                if isinstance(member, ContextVar):
                    found.add(member)
                elif type(member).__module__ == "asgiref.local":
                    # The ContextVar behind an asgiref Local: on the Local
                    # itself (asgiref < 3.9) or on its storage.
                    storage = _object_attribute(member, "_storage")
                    for holder in (member, storage):
                        data = _object_attribute(holder, "_data")
                        if isinstance(data, ContextVar):
                            found.add(data)
    _library = (loaded, frozenset(found))
    return _library[1]


def _decimal_vars() -> set[ContextVar[Any]]:
    """
    The ContextVar behind ``decimal.getcontext()``: the C module keeps it
    out of sight and sets it, lazily, on the first decimal operation of a
    context, to a context it creates (bookkeeping, not request data).
    """
    import decimal  # loaded already, by the app

    def probe() -> tuple[object, Context]:
        current = decimal.getcontext()  # sets the variable: then copy
        return current, contextvars.copy_context()

    current, copied = Context().run(probe)
    return {var for var, value in copied.items() if value is current}


def _object_attribute(obj: object, name: str) -> object:
    try:
        return object.__getattribute__(obj, name)
    except AttributeError:
        return None


# (var, value, the request that left it: None if it was not sampled)
Leak = tuple[ContextVar[Any], object, RequestRecord | None]


def _is_flag(value: object) -> bool:
    return any(value is flag for flag in _FLAG_VALUES)


def _changed(start: Context, end: Context) -> Iterator[tuple[Any, object]]:
    missing = object()
    library = _library_vars()
    for var, value in end.items():
        if var in _IGNORED_VARS or var in library or _is_flag(value):
            continue
        if start.get(var, missing) is not value:
            yield var, value


def detect_leaks(
    start: Context,
    record: RequestRecord,
    own_values: Callable[[bool], Container[int]],
    end: Context | None = None,
) -> list[Leak]:
    """
    Compare the context at the end of *record*'s request with *start*.

    Must be called in the request's own context, at its end. Returns the
    ContextVars that held, for the whole request, a value an earlier
    request set and never reset, with that value and that request; and
    remembers what this request leaves behind for the next one.

    A request that sets a var to the very object it already held cannot be
    told from one that inherited it. So a value counts as set by the
    request itself when it is ambient (`is_ambient`), or when its id is in
    *own_values(fresh)*: the request's own data (its WSGI environ, its URL
    arguments) and the objects its code can name (`reachable_ids`; cached
    unless *fresh*).
    """
    if end is None:
        end = contextvars.copy_context()
    left = end.get(_left_behind)
    if left is None and start == end:
        return []

    leaks: list[Leak] = []
    kept: LeftBehind = {}
    missing = object()
    own: Container[int] | None = None
    fresh = False
    if left:
        for var, (value, origin) in left.items():
            now = end.get(var, missing)
            if now is not value:
                continue  # cleared or overwritten since
            if origin is not record and start.get(var, missing) is value:
                if _ambient(value):
                    kept[var] = (value, record)
                    continue
                if own is None:
                    own = own_values(False)
                if id(value) not in own and not fresh:
                    # Walk the request's code again before saying so: a
                    # registry may have grown since it was last walked.
                    own, fresh = own_values(True), True
                if id(value) in own or (
                    id(INTERNS) in own and is_interned(value)
                ):
                    kept[var] = (value, record)
                    continue
                leaks.append((var, value, origin))
            kept[var] = (value, origin)
    for var, value in _changed(start, end):
        kept[var] = (value, record)
    if not _same(kept, left):
        _left_behind.set(kept or None)
    return leaks


def _same(kept: LeftBehind, left: LeftBehind | None) -> bool:
    # By identity: a leaked value's own __eq__ may be costly or raise.
    if not left:
        return not kept
    if kept.keys() != left.keys():
        return False
    return all(
        kept[var][0] is value and kept[var][1] is origin
        for var, (value, origin) in left.items()
    )


# -- could the request have set it itself? --------------------------------

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


def _ambient(value: object) -> bool:
    # An object whose __class__ property raises fails isinstance(): what
    # the guard cannot examine, it does not report.
    try:
        return is_ambient(value)
    except Exception:  # noqa: BLE001 - an app's object
        return True


def is_interned(value: object) -> bool:
    """Whether *value* is an interned string."""
    return type(value) is str and _interned(value)  # type: ignore[arg-type,unused-ignore]


#: In `reachable_ids` when the code names ``intern``: any interned string
#: is then within the request's reach.
INTERNS = sys.intern


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


_class_states: weakref.WeakKeyDictionary[type, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)


def _class_state(cls: type) -> dict[str, Any]:
    """The attributes *cls* and its bases define, the nearest first."""
    try:
        return _class_states[cls]
    except (KeyError, TypeError):
        pass
    state = _merged_class_state(cls)
    if len(_class_states) < 4096:
        with contextlib.suppress(TypeError):
            _class_states[cls] = state
    return state


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
            for member in _class_state(func).values():
                member = _code_of(member)  # noqa: PLW2901
                if _is(member, types.FunctionType):
                    self.function(member, depth)
        elif _is(func, types.FunctionType):
            self._code(func, depth)
        else:
            # A callable instance: its class's __call__, and its state
            # (an lru_cache's entries are only seen by the collector).
            call = _code_of(_class_state(type(func)).get("__call__"))
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
            state = _class_state(obj)
            members = state.get("_member_map_")
            if _is(members, dict):  # an Enum: all its members
                for member in list(dict.values(members)):
                    self.value(member, depth, named=False, hops=hops + 1)
        elif _is(obj, types.ModuleType):
            state = _dict_of(obj) or {}
        elif type(obj).__module__.startswith(__package__ or "flask_ctxguard"):
            return  # the guard's own state (this walk's earlier results)
        else:
            # An object: its whole state (a registry object, a cache, the
            # app and its config), and its class's methods the code names.
            for member in list((_dict_of(obj) or {}).values()):
                self.value(member, depth, named=False, hops=hops + 1)
            state = _class_state(type(obj))
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
    # Classes may change between walks: their merged state is only kept
    # for one.
    _class_states.clear()
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


def detect_unsampled_leaks(
    start: Context,
    end: Context,
    own_values: Callable[..., Container[int]],
    known: Container[ContextVar[Any]],
) -> list[Leak]:
    """
    Sampling: compare the context a sampled request started with against
    the one the last sampled request in this context ended with.

    Must be called in the request's own context, at its end. Returns the
    ContextVars (other than *known*, reported with their origin) that held,
    for the whole request, a value set since that last sampled request
    ended, by requests that were not guarded: their origin is `None`. The
    first sampled request in a context only remembers what it ends with.
    """
    seen = end.get(_last_seen)
    leaks: list[Leak] = []
    if seen is not None:
        missing = object()
        library = _library_vars()
        own: Container[int] | None = None
        for var, value in start.items():
            if (
                var in _IGNORED_VARS
                or var in library
                or var in known
                or _is_flag(value)
                or seen.get(var, missing) is value
                or end.get(var, missing) is not value
            ):
                continue
            if _ambient(value):
                continue
            if own is None:
                own = own_values()
            if id(value) not in own:
                # Walk the request's code again before saying so.
                own = own_values(True)
                if id(value) not in own and not (
                    id(INTERNS) in own and is_interned(value)
                ):
                    leaks.append((var, value, None))
    _last_seen.set(
        {var: value for var, value in end.items() if var not in _IGNORED_VARS}
    )
    return leaks
