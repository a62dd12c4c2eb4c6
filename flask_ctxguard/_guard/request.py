"""
The guarded request classes: in flight, late, and retired.

``app.request_class`` is replaced by a generated subclass whose checked
attributes (the request's public data: ``args``, ``form``, ``headers``...)
are properties that check, in one ContextVar lookup and one identity
comparison, that the request is used in its own context. A request that
outlives its context is switched, when it ends, to its retired class, on
which every public attribute is checked.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from flask_ctxguard._core.classes import (
    LATE_REQUEST,
    RECORD,
    REQUEST,
    REQUEST_ROLES,
    RETIRED_REQUEST,
    method,
    registry,
    subclass,
)
from flask_ctxguard._core.flaskcompat import (
    is_pushed,
    request_ctx_var,
    request_of,
)
from flask_ctxguard._rules.access import (
    NO_CONTEXT,
    note_endpoint,
    report_access,
)
from flask_ctxguard._rules.records import ARMED

__all__ = [
    "CHECKED_REQUEST_ATTRIBUTES",
    "guarded_request_class",
    "is_guarded_request_class",
    "late_request_class",
    "retired_request_class",
]

_request_get = request_ctx_var.get

# The request's public, data-bearing attributes: checked while the request
# is in flight. Plumbing that Flask itself reads many times per request
# (environ, url_rule, endpoint, blueprints...) is left out to keep the hot
# path cheap, and so are the plain attributes Werkzeug sets in __init__
# (method, path, scheme, remote_addr...): checking them would cost a Python
# call on every request just to store them (and Flask 3.1 stores `host` on
# every request). `headers` is the exception, worth its one call: it is
# what threads handed a request read most. After the request ends, every
# public attribute but environ is checked.
CHECKED_REQUEST_ATTRIBUTES = (
    "accept_charsets",
    "accept_encodings",
    "accept_languages",
    "accept_mimetypes",
    "access_control_request_headers",
    "access_control_request_method",
    "access_route",
    "args",
    "authorization",
    "base_url",
    "cache_control",
    "content_encoding",
    "content_length",
    "content_md5",
    "content_type",
    "cookies",
    "data",
    "date",
    "files",
    "form",
    "full_path",
    "get_data",
    "get_json",
    "headers",
    "host_url",
    "if_match",
    "if_modified_since",
    "if_none_match",
    "if_range",
    "if_unmodified_since",
    "is_json",
    "is_secure",
    "json",
    "mimetype",
    "mimetype_params",
    "origin",
    "pragma",
    "range",
    "referrer",
    "remote_user",
    "root_url",
    "stream",
    "url",
    "url_root",
    "user_agent",
    "values",
)


class _CheckedProperty(property):
    """
    A checked attribute of a guarded request class: a property whose getter
    checks that the request is used in its own context, and that this
    context is still pushed, then resolves the attribute as the class it
    replaces would. (A copy of the context, ``copy_context().run`` handed
    to an executor, still holds the request's context once it is popped:
    Flask empties its ``_cv_tokens`` then, see `_flaskcompat`.) A
    property, not a descriptor class: its ``__get__`` runs in C, and only
    the check is Python.
    """

    name: str
    base: Any


def _check_request_use(request: Any, name: str) -> None:
    """*request*'s attribute *name* was used outside its own context."""
    record = request._ctxguard_record
    if record is not None:
        if record.phase == ARMED:
            note_endpoint(record, request)
        # Frames: this one and the property's getter.
        report_access(record, "request", name, 2)


def _checked_property(name: str, base: Any, slot: Any) -> _CheckedProperty:
    """
    The checked attribute *name* over *base*, the descriptor it replaces
    (`None`: a plain instance attribute, which werkzeug sets in
    ``__init__``, such as ``headers``). A plain attribute's value is kept
    in *slot*, the member descriptor of a slot of the class, or, if `None`,
    in the instance's ``__dict__``.
    """
    fget: Callable[[Any], Any]
    fset: Callable[[Any, Any], None] | None
    fdel: Callable[[Any], None] | None
    if base is None and slot is not None:
        # Stored in the slot by the slot's own setter: no Python call when
        # werkzeug sets the attribute on every request.
        slot_get = slot.__get__

        def get_slot(obj: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if request_of(ctx) is not obj or not is_pushed(ctx):
                _check_request_use(obj, name)
            try:
                return slot_get(obj, None)
            except AttributeError:
                raise AttributeError(name) from None

        fget, fset, fdel = get_slot, slot.__set__, slot.__delete__
    elif base is None:
        # A class an existing request is switched to (no slot): the value
        # stays in the instance's __dict__, under its own name.

        def get_plain(obj: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if request_of(ctx) is not obj or not is_pushed(ctx):
                _check_request_use(obj, name)
            try:
                return obj.__dict__[name]
            except KeyError:
                raise AttributeError(name) from None

        fget, fset, fdel = get_plain, _dict_setter(name), _dict_deleter(name)
    elif not _is_data_descriptor(base):
        # A method: what the instance's __dict__ holds comes first, as
        # with the original.
        base_get = base.__get__

        def get_method(obj: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if request_of(ctx) is not obj or not is_pushed(ctx):
                _check_request_use(obj, name)
            value = obj.__dict__.get(name, _MISSING)
            return base_get(obj, type(obj)) if value is _MISSING else value

        fget = get_method
        fset, fdel = _dict_setter(name), _dict_deleter(name)
    else:
        # A property, or werkzeug's cached_property (which looks in the
        # instance's __dict__ itself).
        base_get = base.__get__

        def get_data(obj: Any) -> Any:
            ctx = _request_get(NO_CONTEXT)
            if request_of(ctx) is not obj or not is_pushed(ctx):
                _check_request_use(obj, name)
            return base_get(obj, type(obj))

        fget = get_data
        fset = getattr(base, "__set__", None)
        fdel = getattr(base, "__delete__", None)
    checked = _CheckedProperty(
        fget, fset, fdel, getattr(base, "__doc__", None)
    )
    checked.name = name
    checked.base = base
    return checked


def _is_data_descriptor(obj: Any) -> bool:
    """Whether *obj*, found on a class, takes precedence over instances."""
    kind = type(obj)
    return hasattr(kind, "__set__") or hasattr(kind, "__delete__")


def _dict_setter(name: str) -> Callable[[Any, Any], None]:
    def set_in_dict(obj: Any, value: Any) -> None:
        obj.__dict__[name] = value

    return set_in_dict


def _dict_deleter(name: str) -> Callable[[Any], None]:
    def delete_from_dict(obj: Any) -> None:
        try:
            del obj.__dict__[name]
        except KeyError:
            raise AttributeError(name) from None

    return delete_from_dict


def is_guarded_request_class(cls: type) -> bool:
    """Whether *cls* is one of our guarded (or retired) request classes."""
    return registry.role(cls) in REQUEST_ROLES


#: Wraps a request class's ``close()`` into the lifecycle's, which retires
#: the request: passed in, so that this module never imports the lifecycle.
Retire = Callable[[Callable[..., Any]], Callable[[Any], None]]


def guarded_request_class(base: type, *, retire: Retire) -> type:
    """
    The guarded subclass of the request class *base* (cached), to install
    as ``app.request_class``: plain attributes it checks are kept in slots,
    and its ``close()`` is ``retire(base.close)``.
    """
    return _request_class(base, REQUEST, retire)


def late_request_class(base: type, *, retire: Retire) -> type:
    """
    The guarded subclass of *base* that an existing request of class
    *base* can be switched to: it adds no slots.
    """
    return _request_class(base, LATE_REQUEST, retire)


def _request_class(base: type, role: str, retire: Retire) -> type:
    if is_guarded_request_class(base):
        return base
    cls = registry.get_or_make(
        base,
        role,
        lambda base: _make_guarded_request_class(
            base, slotted=role == REQUEST, retire=retire
        ),
    )
    assert cls is not None
    return cls


def retired_request_class(guarded: type) -> type:
    """
    The class a request of the guarded class *guarded* is switched to when
    it outlives its context.
    """
    cls = registry.get_or_make(
        guarded, RETIRED_REQUEST, _make_retired_request_class
    )
    assert cls is not None
    return cls


def _make_guarded_request_class(
    base: type, *, slotted: bool, retire: Retire
) -> type:
    checked: dict[str, Any] = {}
    for name in CHECKED_REQUEST_ATTRIBUTES:
        inherited = inspect.getattr_static(base, name, None)
        if isinstance(inherited, _CheckedProperty):
            inherited = inherited.base  # a subclass of a guarded class
        elif inherited is not None and not hasattr(inherited, "__get__"):
            continue  # a plain class attribute, not request data
        checked[name] = inherited
    plain = tuple(name for name, base_ in checked.items() if base_ is None)
    slots = tuple(f"_ctxguard_{name}" for name in plain) if slotted else ()

    # Retiring is the lifecycle's: every request ends in this close().
    close = retire(method(base, "close"))
    cls = subclass(base, {RECORD: None, "close": close}, slots=slots)
    for name, inherited in checked.items():
        slot = (
            cls.__dict__[f"_ctxguard_{name}"]
            if slots and inherited is None
            else None
        )
        type.__setattr__(cls, name, _checked_property(name, inherited, slot))
    return cls


# Plain attributes Werkzeug and Flask set on a request; after it ends they
# are checked like the rest. (Flask itself reads `environ` right after its
# context is popped: the slow path lets Flask's own reads through, and only
# requests that outlive their context pay for it.)
_RETIRED_PLAIN_ATTRIBUTES = (
    "environ",
    "method",
    "path",
    "query_string",
    "remote_addr",
    "root_path",
    "routing_exception",
    "scheme",
    "server",
    "shallow",
    "url_rule",
    "view_args",
)


_MISSING: Any = object()


class _RetiredAttribute:
    """
    A data descriptor of a retired request's class: any use of the
    attribute outside the request's own context is reported, then the
    attribute resolves as it would on the guarded class.
    """

    __slots__ = ("_base", "_data", "_name")

    def __init__(self, name: str, base: Any) -> None:
        self._name = name
        # _MISSING: a plain instance attribute with no class default.
        self._base = base
        self._data = base is not _MISSING and _is_data_descriptor(base)

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        base = self._base
        if obj is None:
            return self if base is _MISSING else base
        ctx = _request_get(NO_CONTEXT)
        if request_of(ctx) is not obj or not is_pushed(ctx):
            record = obj._ctxguard_record
            if record is not None:
                report_access(record, "request", self._name, 1)
        if not self._data:
            state = obj.__dict__
            if self._name in state:
                return state[self._name]
            if base is _MISSING:
                raise AttributeError(self._name)
        getter = getattr(type(base), "__get__", None)
        return base if getter is None else getter(base, obj, owner)

    def __set__(self, obj: Any, value: Any) -> None:
        if self._data:
            type(self._base).__set__(self._base, obj, value)
        else:
            obj.__dict__[self._name] = value

    def __delete__(self, obj: Any) -> None:
        if self._data:
            type(self._base).__delete__(self._base, obj)
            return
        try:
            del obj.__dict__[self._name]
        except KeyError:
            raise AttributeError(self._name) from None


def _make_retired_request_class(guarded: type) -> type:
    """
    The class a request that outlives its context is switched to when it
    ends: every public attribute checks that it is used in the request's
    own context. The checked attributes of the guarded class already do.
    """
    namespace: dict[str, Any] = {}
    names = {name for name in dir(guarded) if not name.startswith("_")}
    names.update(_RETIRED_PLAIN_ATTRIBUTES)
    for name in sorted(names):
        inherited = inspect.getattr_static(guarded, name, _MISSING)
        if isinstance(inherited, _CheckedProperty):
            continue
        namespace[name] = _RetiredAttribute(name, inherited)
    return subclass(guarded, namespace)
