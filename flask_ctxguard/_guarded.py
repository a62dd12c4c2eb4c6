"""
Guarded request, session and ``g`` classes, and retiring them.

How the checks stay cheap:

- The request class is installed through Flask's ``app.request_class``,
  the ``g`` class through ``app.app_ctx_globals_class``, and sessions are
  created guarded by a copy of ``app.session_interface`` whose
  ``session_class`` is the guarded one (another session's class is switched
  when the request starts). No Flask code is patched.
- While a request runs, only the request's public data attributes
  (``args``, ``form``, ``headers``...), the session's dict methods and
  ``g``'s attributes are checked, and the check is one ContextVar lookup and
  one identity comparison: "is the current context this object's own?",
  in a property's getter or a wrapper with the method's own signature.
- When the request ends, the record shared by the request, its session and
  its ``g`` is marked retired. If something still holds the request (its
  reference count says so), its class is switched to one that checks every
  public attribute; a request nothing holds is freed with its context, and
  skips the switch, which costs about as much as everything else here.
- Every request pays for arming and retiring: they are written inline,
  with the rare cases out of line, as each Python call counts.
- A ``g`` that outlives requests (an app context pushed around them, as
  tests do) is watched attribute by attribute for CG101; an ordinary
  request's ``g`` never is.
- Sites and stacks are only captured when something is reported.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from contextvars import copy_context
from threading import get_ident
from time import time
from typing import Any, cast

from flask.sessions import NullSession

from . import _sites
from ._contextvars import LEFT_BEHIND, detect_leaks
from ._flaskcompat import (
    FLASK_G_CLASS,
    app_ctx_var,
    request_ctx_var,
    session_of,
)
from ._tags import ARMED, RETIRED, RequestRecord, RequestTag
from .exceptions import ContaminationError

__all__ = [
    "arm_request",
    "guarded_g_class",
    "guarded_request_class",
    "is_guarded_request_class",
]

_request_get = request_ctx_var.get


class _NoContext:
    """
    What the context getters return outside any context in checks, so
    that "is this object's own context current?" is one comparison.
    """

    __slots__ = ()
    request = g = session = _session = None


_NO_CONTEXT = _NoContext()
_left_behind = LEFT_BEHIND.get
_app_get = app_ctx_var.get
_RECORD = "_ctxguard_record"

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

# The session's dict API: every way to read or write its data. ``len()``
# and ``bool()`` are left to dict's C implementation: Flask calls them when
# saving the session, and they reveal no values.
CHECKED_SESSION_METHODS = (
    "__contains__",
    "__delitem__",
    "__getitem__",
    "__iter__",
    "__setitem__",
    "clear",
    "copy",
    "get",
    "items",
    "keys",
    "pop",
    "popitem",
    "setdefault",
    "update",
    "values",
)


def _subclass(
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


def _method(cls: type, name: str) -> Callable[..., Any]:
    """*cls*'s attribute *name*, typed as the callable it is."""
    return cast("Callable[..., Any]", getattr(cls, name))


_lock = threading.Lock()
_new_record = object.__new__
_refcount = sys.getrefcount
# How many references a request has when Flask closes it, if nothing else
# keeps it: its context, its environ ('werkzeug.request', counted even when
# a copy of the context popped earlier cleared it), the bound close() Flask
# calls, close()'s own frame, and getrefcount()'s argument. A request with
# more outlives its context, and its class is switched to the retired one;
# one with no more is freed when its context is popped. Learnt downwards:
# a path with fewer references lowers it (then more requests are switched
# than need be, never fewer).
REFS_AT_CLOSE = 5
_refs_at_close = REFS_AT_CLOSE
_set_attribute = object.__setattr__
_UNSEEN: Any = object()
_NULL_SESSIONS = frozenset({NullSession})
_our_request_classes: set[type] = set()
_guarded_requests: dict[type, type] = {}
_late_requests: dict[type, type] = {}
_retired_requests: dict[type, type] = {}
_guarded_sessions: dict[type, type | None] = {}
# The guarded session classes (each also maps to itself above): a session
# of one only needs its record.
_born_guarded_sessions: set[type] = set()
_guarded_gs: dict[type, type] = {}
_watched_gs: dict[type, type] = {}


# -- the slow path: something touched an object of another request ----------


def _current_record() -> RequestRecord | None:
    ctx = _request_get(None)
    if ctx is None:
        return None
    request = ctx.request
    record = getattr(request, _RECORD, None)
    if record is None or record.state != ARMED:
        return None
    _note_endpoint(record, request)
    return record  # type: ignore[no-any-return]


def note_endpoint(record: RequestRecord, request: Any) -> None:
    """
    Fill in *record*'s endpoint from its in-flight *request*: it is armed
    when its session opens, before Flask matches the URL.
    """
    if record.endpoint is None:
        rule = getattr(request, "url_rule", None)
        if rule is not None:
            record.endpoint = rule.endpoint


_note_endpoint = note_endpoint


def _report_access(
    record: RequestRecord, subject: str, attribute: str, depth: int
) -> None:
    """
    Report that *subject* of *record*'s request was used here.

    *depth* counts the frames between this function and the code that made
    the access.
    """
    guard = record.guard
    if record.state != ARMED and _sites.is_internal_caller(depth + 1):
        # Flask and Werkzeug reading a request while tearing it down. While
        # a request is in flight they only touch it in its own context, so
        # any other access counts, also through a Werkzeug property.
        return
    try:
        reporter = guard.reporter
        accessor = _current_record()
        if accessor is record:
            return
        if accessor is not None:
            code = "CG103"
        elif record.state != ARMED:
            code = "CG102"
        else:
            code = "CG104"
        if reporter.is_ignored(code, subject):
            return
        origin_tag = record.tag()
        thread = threading.current_thread().name
        what = f"'{subject}.{attribute}'" if attribute else f"'{subject}'"
        of = f"{what} of {origin_tag.method} {origin_tag.path} (request"
        of += f" {origin_tag.token}, thread {origin_tag.thread_name!r})"
        accessor_tag: RequestTag | None = None
        if code == "CG103":
            assert accessor is not None
            accessor_tag = accessor.tag()
            when = (
                "after that request ended"
                if record.state != ARMED
                else "while that request was still in flight"
            )
            message = f"{of} was used during {accessor_tag}, {when}."
        elif code == "CG102":
            message = (
                f"{of} was used after that request ended, outside any"
                f" request, in thread {thread!r}."
            )
        else:
            message = (
                f"{of} was used from thread {thread!r}, which has no context"
                " of that request, while it was in flight."
            )
        violation = reporter.build(
            code,
            subject=subject,
            message=message,
            origin=origin_tag,
            accessor=accessor_tag,
            thread=thread,
            origin_site=guard.view_site(record.endpoint),
            access_site=_sites.capture_site(depth + 1),
            access_stack=(
                _sites.capture_stack(depth + 1)
                if reporter.settings.stacks
                else None
            ),
        )
        reporter.report(violation)
    except ContaminationError:
        raise
    except Exception as exc:  # noqa: BLE001 - never break a request
        guard.reporter.internal_error("checking an access", exc)


# -- the request ------------------------------------------------------------


class _CheckedProperty(property):
    """
    A checked attribute of a guarded request class: a property whose getter
    checks that the request is used in its own context, then resolves the
    attribute as the class it replaces would. A property, not a descriptor
    class: its ``__get__`` runs in C, and only the check is Python.
    """

    name: str
    base: Any


def _check_request_use(request: Any, name: str) -> None:
    """*request*'s attribute *name* was used outside its own context."""
    record = request._ctxguard_record
    if record is not None:
        if record.state == ARMED:
            _note_endpoint(record, request)
        # Frames: this one and the property's getter.
        _report_access(record, "request", name, 2)


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
            if _request_get(_NO_CONTEXT).request is not obj:
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
            if _request_get(_NO_CONTEXT).request is not obj:
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
            if _request_get(_NO_CONTEXT).request is not obj:
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
            if _request_get(_NO_CONTEXT).request is not obj:
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
    return cls in _our_request_classes


def guarded_request_class(base: type) -> type:
    """
    The guarded subclass of the request class *base* (cached), to install
    as ``app.request_class``: plain attributes it checks are kept in slots.
    """
    return _request_class(base, _guarded_requests, slotted=True)


def _late_request_class(base: type) -> type:
    """
    The guarded subclass of *base* that an existing request of class
    *base* can be switched to: it adds no slots.
    """
    return _request_class(base, _late_requests, slotted=False)


def _request_class(
    base: type, cache: dict[type, type], *, slotted: bool
) -> type:
    if is_guarded_request_class(base):
        return base
    with _lock:
        cls = cache.get(base)
        if cls is None:
            cls = _make_guarded_request_class(base, slotted=slotted)
            retired = _make_retired_request_class(cls)
            _our_request_classes.update((cls, retired))
            _retired_requests[cls] = retired
            cache[base] = cls
        return cls


def _make_guarded_request_class(base: type, *, slotted: bool) -> type:
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

    base_close = _method(base, "close")

    def close(self: Any) -> None:
        try:
            base_close(self)
        finally:
            record = self._ctxguard_record
            if record is not None and record.state == ARMED:
                # (id(None) is no context's.)
                if id(_request_get(None)) != record.ctx_id:
                    # A copy of its context (copy_current_request_context)
                    # popped in another thread: the request goes on, but
                    # its environ no longer refers to it (Flask clears it).
                    record.unlinked = 1
                else:
                    # Retire it: switch its class, check its ContextVars.
                    # Inline: every request ends here, and a Python call
                    # is a good part of what the guard costs.
                    record.state = RETIRED
                    rule = self.url_rule
                    if rule is not None:
                        endpoint = record.endpoint = rule.endpoint
                        if endpoint not in record.guard.sites:
                            # Once per endpoint: the view's site outlives
                            # the app, for reports about objects that do.
                            record.guard.view_site(endpoint)
                    # Switch its class only if it outlives its context:
                    # switching costs about as much as all the rest.
                    refs = _refcount(self) + record.unlinked
                    if refs != _refs_at_close:
                        _outlives(self, record, refs)
                    snapshot = record.snapshot
                    record.snapshot = None
                    end = copy_context()
                    # The common case, compared in C: no ContextVar
                    # changed, and none is left over from before.
                    if not (snapshot == end and _left_behind(None) is None):
                        _check_contextvars(self, record, snapshot, end)

    close.__doc__ = base_close.__doc__
    cls = _subclass(base, {_RECORD: None, "close": close}, slots=slots)
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
        if _request_get(_NO_CONTEXT).request is not obj:
            record = obj._ctxguard_record
            if record is not None:
                _report_access(record, "request", self._name, 1)
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
    return _subclass(guarded, namespace)


# -- the session -------------------------------------------------------------


def _session_used(session: Any) -> None:
    """*session* was used outside its own request context."""
    record = getattr(session, _RECORD, None)
    if record is not None:
        # Frames: this one and the checked method.
        _report_access(record, "session", "", 2)


_NO_DEFAULT: Any = object()


def _session_method(name: str, method: Callable[..., Any]) -> Any:
    """
    *method* of the session class, checked: one wrapper per signature, as
    packing arguments costs more than the check.
    """
    checked: Callable[..., Any]
    if name in {"clear", "copy", "items", "keys", "values", "popitem"} or (
        name == "__iter__"
    ):

        def checked_0(self: Any) -> Any:
            if session_of(_request_get(_NO_CONTEXT)) is not self:
                _session_used(self)
            return method(self)

        checked = checked_0
    elif name in {"__contains__", "__delitem__", "__getitem__"}:

        def checked_1(self: Any, key: Any) -> Any:
            if session_of(_request_get(_NO_CONTEXT)) is not self:
                _session_used(self)
            return method(self, key)

        checked = checked_1
    elif name == "__setitem__":

        def checked_2(self: Any, key: Any, value: Any) -> Any:
            if session_of(_request_get(_NO_CONTEXT)) is not self:
                _session_used(self)
            return method(self, key, value)

        checked = checked_2
    elif name in {"get", "pop", "setdefault"}:

        def checked_default(
            self: Any, key: Any, default: Any = _NO_DEFAULT
        ) -> Any:
            if session_of(_request_get(_NO_CONTEXT)) is not self:
                _session_used(self)
            if default is _NO_DEFAULT:
                return method(self, key)
            return method(self, key, default)

        checked = checked_default
    else:

        def checked_any(self: Any, *args: Any, **kwargs: Any) -> Any:
            if session_of(_request_get(_NO_CONTEXT)) is not self:
                _session_used(self)
            return method(self, *args, **kwargs)

        checked = checked_any
    checked.__name__ = name
    checked.__qualname__ = name
    checked.__doc__ = method.__doc__
    return checked


def _guarded_session_class(base: type) -> type | None:
    try:
        return _guarded_sessions[base]
    except KeyError:
        pass
    with _lock:
        cls: type | None = None
        if base in _born_guarded_sessions:
            cls = base
        elif base.__dictoffset__:
            # Instances need a __dict__ for the record; a session class
            # without one (all __slots__) is not guarded.
            namespace: dict[str, Any] = {_RECORD: None}
            for name in CHECKED_SESSION_METHODS:
                method = getattr(base, name, None)
                if method is not None:
                    namespace[name] = _session_method(name, method)
            cls = _subclass(base, namespace)
            _guarded_sessions[cls] = cls
            _born_guarded_sessions.add(cls)
        _guarded_sessions[base] = cls
        return cls


def _decline_session(guard: Any, cls: type) -> None:
    guard.reporter.declined(
        f"session class {cls.__module__}.{cls.__qualname__}",
        "its instances cannot carry the guard's record (no __dict__, or a"
        " class that cannot be switched); sessions of this class are not"
        " checked for CG102-CG104. Give the class a __dict__ (drop"
        " __slots__) to have them guarded.",
    )


def _guard_session(guard: Any, session: Any, record: RequestRecord) -> None:
    cls = _guarded_sessions.get(type(session), _UNSEEN)
    if cls is _UNSEEN:
        cls = _guarded_session_class(type(session))
    if cls is None:
        _decline_session(guard, type(session))
        return
    try:
        if type(session) is not cls:
            _set_attribute(session, "__class__", cls)
        _set_attribute(session, _RECORD, record)
    except (TypeError, AttributeError):
        # A session class whose layout forbids the swap (a C type, slots):
        # the guard declines for sessions of this class.
        with _lock:
            _guarded_sessions[type(session)] = None
        _decline_session(guard, type(session))


# -- arming: the session interface ----------------------------------------

_guarded_interfaces: dict[type, type] = {}


def guarded_session_interface(interface: Any) -> Any:
    """
    A copy of the app's session *interface* whose ``open_session`` arms
    the request.

    Flask opens the session of every request context it pushes, right
    after the context becomes current: the cheapest moment to start
    guarding (a ``before_request`` function goes through Flask's
    ``ensure_sync`` on every request). The copy is of a subclass of the
    interface's own class, so it behaves exactly like it.
    """
    base = type(interface)
    if base in _guarded_interfaces.values():
        return interface
    with _lock:
        cls = _guarded_interfaces.get(base)
        if cls is None:
            base_open = _method(base, "open_session")

            def open_session(self: Any, app: Any, request: Any) -> Any:
                session = base_open(self, app, request)
                # Arm the request whose context is being pushed (not a
                # session opened by hand, as session_transaction() does).
                ctx = _request_get(_NO_CONTEXT)
                if ctx.request is request:
                    guard = app.extensions.get("ctxguard")
                    if guard is not None:
                        try:
                            _arm(guard, ctx, request, session)
                        except Exception as exc:  # noqa: BLE001 - contain
                            guard.reporter.internal_error(
                                "starting to guard a request", exc
                            )
                return session

            open_session.__doc__ = base_open.__doc__
            # No __slots__: session interfaces are plain classes whose
            # instances carry a __dict__ (copied below).
            cls = type(
                base.__name__,
                (base,),
                {
                    "__module__": base.__module__,
                    "__qualname__": base.__qualname__,
                    "__doc__": base.__doc__,
                    "open_session": open_session,
                },
            )
            _guarded_interfaces[base] = cls
    guarded = copy.copy(interface)
    object.__setattr__(guarded, "__class__", cls)
    # Sessions born guarded: an interface that builds its sessions from
    # `session_class` (Flask's own does) then needs no class switch per
    # request.
    session_class = getattr(interface, "session_class", None)
    if isinstance(session_class, type) and session_class not in _NULL_SESSIONS:
        guarded_class = _guarded_session_class(session_class)
        if guarded_class is not None:
            with contextlib.suppress(AttributeError, TypeError):
                guarded.session_class = guarded_class
    return guarded


# -- g ------------------------------------------------------------------------


class SharedG:
    """
    The bookkeeping of a ``g`` that outlives requests: who wrote what.
    """

    __slots__ = ("guard", "owners")

    def __init__(self, guard: Any) -> None:
        self.guard = guard
        # name -> (request that wrote it or None outside requests, site,
        # stack)
        self.owners: dict[
            str, tuple[RequestRecord | None, str | None, str | None]
        ] = {}


# g's record cannot live in g's __dict__: users iterate it. The g class
# installed by init_app has a slot for it. A g created before the guard was
# installed (the pytest plugin discovers apps late) cannot take a slot, as
# that would change the object's layout: its class is switched to one
# without a slot, and its record is kept in a weak dictionary instead.
_g_records: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_slotted_guarded_gs: set[type] = set()
_late_gs: dict[type, type] = {}


def _g_record(g: Any) -> Any:
    if type(g) in _slotted_guarded_gs:
        try:
            return object.__getattribute__(g, _RECORD)
        except AttributeError:
            return None
    try:
        return _g_records.get(g)
    except TypeError:  # a g class without __weakref__
        return None


def _set_g_record(g: Any, record: Any) -> None:
    if type(g) in _slotted_guarded_gs:
        object.__setattr__(g, _RECORD, record)
        return
    with contextlib.suppress(TypeError):
        _g_records[g] = record


def _is_our_g_class(cls: type) -> bool:
    return cls in _watched_gs or cls in _watched_gs.values()


def guarded_g_class(base: type) -> type:
    """
    The guarded subclass of the ``g`` class *base* (cached), with a slot
    for the guard's record.
    """
    if _is_our_g_class(base):
        return base
    with _lock:
        cls = _guarded_gs.get(base)
        if cls is None:
            cls = _make_guarded_g_class(base, slotted=True)
            watched = _make_watched_g_class(cls)
            _slotted_guarded_gs.update((cls, watched))
            _watched_gs[cls] = watched
            _guarded_gs[base] = cls
        return cls


def _late_g_class(base: type) -> type:
    """
    The guarded subclass of *base* an existing ``g`` can be switched to:
    without a slot, its record is kept aside.
    """
    if _is_our_g_class(base):
        return base
    with _lock:
        cls = _late_gs.get(base)
        if cls is None:
            cls = _make_guarded_g_class(base, slotted=False)
            _watched_gs[cls] = _make_watched_g_class(cls)
            _late_gs[base] = cls
        return cls


def _make_guarded_g_class(base: type, *, slotted: bool) -> type:
    # A request's own g is checked on every read: g is where a request's
    # user and tenant live, and handing it to a thread is a real bug
    # (CG104). A g shared by several requests is switched to its watched
    # class (CG101), and a request's own g to its retired class when the
    # request ends.
    base_getattribute = _method(base, "__getattribute__")

    def __getattribute__(self: Any, name: str) -> Any:  # noqa: N807
        if _app_get(_NO_CONTEXT).g is not self:
            record = _g_record(self)
            if type(record) is RequestRecord:
                _report_access(record, "g", name, 1)
        return base_getattribute(self, name)

    members: dict[str, Any] = {"__getattribute__": __getattribute__}
    if base is FLASK_G_CLASS:
        # Flask's __setattr__ (`self.__dict__[name] = value`, for typing)
        # would read __dict__ through the check above on every write: the
        # same, in C.
        members["__setattr__"] = object.__setattr__
    return _subclass(base, members, slots=(_RECORD,) if slotted else ())


def _check_g_read(g: Any, name: str, how: str, depth: int) -> None:
    shared = _g_record(g)
    if type(shared) is not SharedG:
        return
    entry = shared.owners.get(name)
    if entry is None or entry[0] is None:
        return
    owner = entry[0]
    current = _current_record()
    if current is None or current is owner:
        return
    reporter = shared.guard.reporter
    subject = f"g.{name}"
    if reporter.is_ignored("CG101", subject):
        return
    try:
        origin_tag, accessor_tag = owner.tag(), current.tag()
        value = base_dict(g).get(name)
        message = (
            f"'{subject}' was {how} during {accessor_tag}"
            f" but was set during {origin_tag.method} {origin_tag.path}"
            f" (request {origin_tag.token})."
        )
        violation = reporter.build(
            "CG101",
            subject=subject,
            message=message,
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
    shared = _g_record(g)
    # Owners, not __dict__: a g class may keep attributes in slots.
    if type(shared) is SharedG and name in shared.owners:
        _check_g_read(g, name, "read", 2)


def _forget_g_owner(g: Any, name: str) -> None:
    shared = _g_record(g)
    if type(shared) is SharedG:
        shared.owners.pop(name, None)


def _record_g_write(g: Any, name: str, depth: int) -> None:
    shared = _g_record(g)
    if type(shared) is not SharedG:
        return
    current = _current_record()
    if current is None:
        shared.owners.pop(name, None)
        return
    stacks = shared.guard.reporter.settings.stacks
    shared.owners[name] = (
        current,
        _sites.capture_site(depth + 1),
        _sites.capture_stack(depth + 1) if stacks else None,
    )


def _make_watched_g_class(guarded: type) -> type:
    """
    The class a shared ``g`` is switched to: every read of an attribute is
    checked against the request that wrote it (CG101).
    """
    base_getattribute = _method(guarded, "__getattribute__")

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

    base_setattr = _method(guarded, "__setattr__")
    base_delattr = _method(guarded, "__delattr__")
    # A g class need not be an _AppCtxGlobals (Flask only calls it): wrap
    # the dict-like methods it has, and only those.
    base_get = getattr(guarded, "get", None)
    base_pop = getattr(guarded, "pop", None)
    base_setdefault = getattr(guarded, "setdefault", None)
    base_contains = getattr(guarded, "__contains__", None)
    base_iter = getattr(guarded, "__iter__", None)

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807
        base_setattr(self, name, value)
        _record_g_write(self, name, 1)

    def __delattr__(self: Any, name: str) -> None:  # noqa: N807
        base_delattr(self, name)
        _forget_g_owner(self, name)

    def get(self: Any, name: str, default: Any = None) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "read (g.get)", 1)
        return base_get(self, name, default)  # type: ignore[misc]

    _missing = object()

    def pop(self: Any, name: str, default: Any = _missing) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "popped", 1)
        if default is _missing:
            value = base_pop(self, name)  # type: ignore[misc]
        else:
            value = base_pop(self, name, default)  # type: ignore[misc]
        _forget_g_owner(self, name)
        return value

    def setdefault(self: Any, name: str, default: Any = None) -> Any:
        if name in base_dict(self):
            _check_g_read(self, name, "read (g.setdefault)", 1)
            return base_setdefault(self, name, default)  # type: ignore[misc]
        value = base_setdefault(self, name, default)  # type: ignore[misc]
        _record_g_write(self, name, 1)
        return value

    def __contains__(self: Any, name: object) -> bool:  # noqa: N807
        found: bool = base_contains(self, name)  # type: ignore[misc]
        if found and isinstance(name, str):
            _check_g_read(self, name, "looked up ('in')", 1)
        return found

    def __iter__(self: Any) -> Iterator[str]:  # noqa: N807
        names = list(base_dict(self))
        for name in names:
            _check_g_read(self, name, "iterated over", 1)
        return iter(names)

    namespace: dict[str, Any] = {
        "__getattribute__": __getattribute__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
    }
    for name, base, wrapper in (
        ("get", base_get, get),
        ("pop", base_pop, pop),
        ("setdefault", base_setdefault, setdefault),
        ("__contains__", base_contains, __contains__),
        ("__iter__", base_iter, __iter__),
    ):
        if base is not None:
            namespace[name] = wrapper
    return _subclass(guarded, namespace)


def _switch_class(obj: Any, cls: type) -> bool:
    try:
        object.__setattr__(obj, "__class__", cls)
    except TypeError:
        return False  # a class whose layout forbids the switch
    return True


def _watch_shared_g(g: Any, guard: Any) -> None:
    cls = type(g)
    if cls not in _watched_gs.values():
        guarded = cls if cls in _watched_gs else _late_g_class(cls)
        if not _switch_class(g, _watched_gs[guarded]):
            return
    if type(_g_record(g)) is not SharedG:
        _set_g_record(g, SharedG(guard))


def _own_g(g: Any, record: RequestRecord) -> None:
    cls = type(g)
    if cls not in _watched_gs:
        if cls in _watched_gs.values():
            return  # a g shared with an outer request: not this one's
        if not _switch_class(g, _late_g_class(cls)):
            return
    _set_g_record(g, record)


# -- the lifecycle ------------------------------------------------------------


def arm_request(guard: Any) -> None:
    """
    Start guarding the current request of *guard*'s app after its session
    was opened (when the session interface did not). Never raises: a
    failure is reported once and the request goes on unguarded.
    """
    ctx = _request_get(None)
    if ctx is None:
        return
    try:
        _arm(guard, ctx, ctx.request, session_of(ctx))
    except Exception as exc:  # noqa: BLE001 - never break a request
        guard.reporter.internal_error("starting to guard a request", exc)


def _arm(guard: Any, ctx: Any, request: Any, session: Any) -> None:
    """
    Guard *request*, just pushed with its context *ctx*, and its *session*
    (`None`: none, or not opened yet) and ``g``.

    Runs on every request: each line here is paid for by every request.
    """
    try:
        if request._ctxguard_record is not None:
            return  # already armed: the same request pushed again
    except AttributeError:
        # app.request_class was replaced after init_app, or the pytest
        # plugin found the app after this request was created.
        _set_attribute(
            request, "__class__", _late_request_class(type(request))
        )
    # The endpoint is not matched yet when the session opens: it is read
    # when the request retires, or when a report needs it. The fields are
    # filled here rather than in an __init__: one Python call less.
    record = _new_record(RequestRecord)
    record.guard = guard
    record.ctx_id = id(ctx)
    record.method = request.method
    record.path = request.path
    record.endpoint = None
    record.snapshot = copy_context()
    record.state = ARMED
    record.thread_id = get_ident()
    record.started = time()
    record.unlinked = 0
    request._ctxguard_record = record
    # A null session (no secret key) holds no data and refuses writes:
    # leaving it alone keeps Flask's exact-type checks on it fast.
    if session is not None:
        if type(session) in _born_guarded_sessions:
            # Not through the class's own __setattr__, which may store
            # into the session's data.
            _set_attribute(session, _RECORD, record)
        elif type(session) not in _NULL_SESSIONS:
            _guard_session(guard, session, record)
    # RequestContext._cv_tokens (see _flaskcompat's docstring): the app
    # context this request pushed, and so owns the g of; None if it runs
    # in one pushed before it, whose g it shares.
    app_ctx = ctx._cv_tokens[-1][1]
    if app_ctx is None:
        app_ctx = _app_get(None)
        if app_ctx is not None:
            _watch_shared_g(app_ctx.g, guard)
    else:
        g = app_ctx.g
        if type(g) in _slotted_guarded_gs:
            # Into the slot, whatever the g class's own __setattr__ does.
            _set_attribute(g, _RECORD, record)
        else:
            _own_g(g, record)


def _outlives(request: Any, record: RequestRecord, refs: int) -> None:
    """
    *request*, which has ended, has *refs* references (see
    `REFS_AT_CLOSE`): switch it to its retired class if more than Flask's.
    """
    global _refs_at_close
    if refs < _refs_at_close:
        _refs_at_close = refs
        return
    try:
        _set_attribute(request, "__class__", _retired_requests[type(request)])
    except (KeyError, TypeError) as exc:
        record.guard.reporter.internal_error("retiring a request", exc)


def _check_contextvars(
    request: Any, record: RequestRecord, snapshot: Any, end: Any
) -> None:
    """
    Report the ContextVars (CG106) that *request*, which has just ended,
    found set by an earlier request and never changed.
    """
    if snapshot is None:
        return
    guard = record.guard
    try:
        leaks = detect_leaks(
            snapshot, record, lambda: _own_ids(request, guard), end
        )
    except Exception as exc:  # noqa: BLE001 - never break the request
        guard.reporter.internal_error("comparing ContextVars", exc)
        return
    if leaks:
        guard.report_contextvar_leaks(record, leaks)


def _own_ids(request: Any, guard: Any) -> set[int]:
    """
    The ids of values the request could have set itself: its environ and
    URL values, and the constants of the code that runs for its endpoint.
    """
    state = request.__dict__
    values = list(state.get("environ", {}).values())
    values.extend((state.get("view_args") or {}).values())
    ids = {id(value) for value in values}
    rule = state.get("url_rule")
    if rule is not None:
        ids.update((id(rule.endpoint), id(rule.rule)))
    ids |= guard.code_constants(
        rule.endpoint if rule is not None else None,
        state.get("blueprints") or _blueprints_of(request),
    )
    return ids


def _blueprints_of(request: Any) -> tuple[str, ...]:
    try:
        return tuple(object.__getattribute__(request, "blueprints"))
    except Exception:  # noqa: BLE001 - a custom request class's property
        return ()
