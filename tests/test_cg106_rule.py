"""
The CG106 rule's two halves, without an app: which values any code could
produce again (`is_ambient`), and which objects a request's code can name
(`reachable_ids`).
"""

from __future__ import annotations

import enum
import functools
import sys
import types
import weakref
from typing import Any, ClassVar

from flask_ctxguard._rules.cg106_ambient import (
    INTERNS,
    is_ambient,
    is_interned,
)
from flask_ctxguard._rules.cg106_walk import EVERYTHING, reachable_ids


class Color(enum.Enum):
    """An enum whose members a request may set."""

    RED = "red"
    BLUE = "blue"


class Registry:
    """A registry object with state, methods and a cached lookup."""

    plans: ClassVar[dict[str, Any]] = {"gold": ["gold plan"]}

    def __init__(self) -> None:
        self._by_name = {"acme": ("acme tenant",)}

    def lookup(self, name: str) -> Any:
        return self._by_name[name]

    @staticmethod
    def default() -> str:
        return "static default"

    @classmethod
    def make(cls) -> str:
        return "class default"

    @property
    def first(self) -> Any:
        return next(iter(self._by_name.values()))


REGISTRY = Registry()
LIMITS = {"free": [10**6], "nested": {"deep": {"deeper": [object()]}}}
OTHER = ["not named"]


@functools.lru_cache
def cached(name: str) -> list[str]:
    return [name]


CACHED = cached("kept")


def _ids_of(*functions: Any, roots: Any = ()) -> frozenset[int]:
    return reachable_ids(functions, roots)


class TestIsAmbient:
    def test_singletons_small_ints_and_short_strings(self):
        """None, booleans, small ints, one-character and empty values are
        ambient: any code produces them again."""
        values = [None, True, False, ..., NotImplemented, 0, 256, -5, "a"]
        values += ["", b"", b"x", (), frozenset()]

        assert all(is_ambient(value) for value in values)

    def test_code_objects_and_weakly_held(self):
        """Classes, functions, modules and weakly referenced objects are
        ambient."""
        kept = Registry()
        ref = weakref.ref(kept)

        assert is_ambient(Registry)
        assert is_ambient(_ids_of)
        assert is_ambient(len)
        assert is_ambient(sys)
        assert is_ambient(ref())

    def test_request_data_is_not(self):
        """Built values are not ambient (the positive control)."""
        built = "".join(["ten", "ant"])

        assert not is_ambient(built)
        assert not is_ambient(10**6)
        assert not is_ambient([1])
        assert not is_ambient(Registry())
        assert not is_ambient(b"".join([b"ab", b"c"]))

    def test_interned(self):
        """Interned strings are told from equal ones that are not."""
        built = "".join(["inter", "ned-value"])
        interned = sys.intern("".join(["inter", "ned-value"]))

        assert is_interned(interned)
        assert not is_interned("".join(["not", "-interned-value"]))
        assert not is_interned(42)
        assert interned == built


class TestReachableIds:
    def test_globals_containers_enum_members(self):
        """Constants, named globals, their containers' entries and an
        enum's members are reachable; unnamed globals are not."""

        def view() -> Any:
            return LIMITS["free"], Color.RED, "literal-constant"

        ids = _ids_of(view)

        assert id(LIMITS["free"]) in ids
        assert id(LIMITS["free"][0]) in ids
        assert id(Color.BLUE) in ids
        assert id(OTHER) not in ids

    def test_objects_methods_and_caches(self):
        """An object's state, the methods the code names (static, class
        methods and properties too) and an lru_cache's entries are
        reachable."""

        def view() -> Any:
            REGISTRY.lookup("acme")
            REGISTRY.default()
            REGISTRY.make()
            return REGISTRY.first, cached("kept"), Registry.plans

        ids = _ids_of(view)

        assert id(REGISTRY._by_name["acme"]) in ids
        assert id(Registry.plans["gold"]) in ids
        assert id(CACHED) in ids

    def test_partials_methods_instances_closures_defaults(self):
        """Partials, bound methods, callable instances, closures, defaults
        and __wrapped__ layers are walked into."""
        held = ["closure value"]
        default = ["default value"]
        partial_arg = ["partial argument"]
        keyword = ["keyword default"]

        def inner(
            arg: Any, extra: Any = default, *, key: Any = keyword
        ) -> Any:
            return held, arg

        @functools.wraps(inner)
        def wrapper(*args: Any) -> Any:
            return inner(*args)

        class Callable:
            def __init__(self) -> None:
                self.state = ["instance state"]

            def __call__(self) -> Any:
                return self.state

        instance = Callable()
        bound = Registry().lookup
        empty_cell: Any

        def uses_empty() -> Any:
            return empty_cell  # noqa: F821 - never bound: an empty cell

        ids = _ids_of(
            functools.partial(wrapper, partial_arg),
            instance,
            bound,
            uses_empty,
        )

        assert {id(held), id(default), id(keyword), id(partial_arg)} <= ids
        assert id(instance.state) in ids
        assert id(bound.__self__._by_name) in ids

    def test_foreign_code_and_request_objects_are_not_walked(self):
        """The standard library's code and request-like objects are not
        walked into."""
        from flask import Flask

        app = Flask("walk")
        with app.test_request_context("/?q=secret"):
            from flask import request

            kept = request._get_current_object()  # type: ignore[attr-defined]
            secret = kept.args["q"]

            def view() -> Any:
                return kept.args, types.SimpleNamespace

            ids = _ids_of(view, roots=(app,))

        assert id(kept) in ids
        assert id(secret) not in ids
        assert id(app.config) in ids

    def test_intern_is_noted(self):
        """Code that names 'intern' can produce any interned string."""

        def view() -> Any:
            return sys.intern("x")

        assert id(INTERNS) in _ids_of(view)
        assert id(INTERNS) not in _ids_of(lambda: None)

    def test_an_unreadable_object_means_everything(self):
        """A walk that fails on an object counts everything as reachable
        (the request gets no CG106 report), where one that does not fail
        stays precise (the positive control)."""

        class HostileGlobals(dict[str, Any]):
            def keys(self) -> Any:
                msg = "keys"
                raise RuntimeError(msg)

        code = (lambda: LIMITS).__code__
        broken = types.FunctionType(code, HostileGlobals(LIMITS=LIMITS))
        fine = types.FunctionType(code, {"LIMITS": LIMITS})

        assert EVERYTHING is _ids_of(broken)
        assert 12345 in _ids_of(broken)
        assert id(OTHER) not in _ids_of(fine)
