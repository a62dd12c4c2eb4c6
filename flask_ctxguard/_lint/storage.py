"""
CG201: a request-bound object stored where it outlives the request (a
module global, a module-level container or object, a class attribute, a
mutable default, an app factory's container, an app-wide service).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.flow import Flow, globals_declared, local_names
from flask_ctxguard._lint.scope import Function, Module

__all__ = ["check_stored"]

#: Methods that keep their argument in the receiver.
STORE_METHODS = frozenset(
    {
        "append",
        "appendleft",
        "add",
        "insert",
        "extend",
        "setdefault",
        "update",
        "put",
        "put_nowait",
    }
)


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node


class _Lifetimes:
    """Which stores of one function outlive a request."""

    def __init__(self, module: Module, function: Function) -> None:
        self.module = module
        self.function = function
        self.locals = local_names(function)
        self.globals = globals_declared(function)
        self.defaults = _mutable_defaults(function)

    def of_target(self, target: ast.AST) -> str | None:
        """Where a store to *target* lands, if that outlives the request."""
        if isinstance(target, ast.Name):
            if target.id in self.globals:
                return f"the module global '{target.id}'"
            return None
        if isinstance(target, ast.Attribute):
            owner = target.value
            if isinstance(owner, ast.Name) and owner.id == "cls":
                return f"the class attribute 'cls.{target.attr}'"
            if (
                isinstance(owner, ast.Attribute) and owner.attr == "__class__"
            ) or (
                isinstance(owner, ast.Call)
                and isinstance(owner.func, ast.Name)
                and owner.func.id == "type"
            ):
                return f"the class attribute '{target.attr}'"
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            return self.of_root(_root(target))
        return None

    def of_root(  # noqa: PLR0911 - one return per kind of owner
        self, root: ast.AST
    ) -> str | None:
        """Whether the object named *root* outlives the request."""
        if not isinstance(root, ast.Name):
            return None
        name = root.id
        module = self.module
        if name in self.defaults:
            return f"the default argument '{name}', created once"
        if name in self.locals or name in {"self", "cls"}:
            return None
        if name in module.imports.aliases:
            if module.imports.proxy(root) is not None:
                return None
            return f"'{name}', imported at module level"
        outer = self.function.outer
        while outer is not None:
            if name in local_names(outer):
                if outer.request:
                    return None
                return (
                    f"'{name}' of '{outer.name}()', created once and shared"
                    " by its views"
                )
            outer = outer.outer
        if name in module.classes:
            return f"the class '{name}'"
        if name in module.globals:
            return f"the module-level '{name}'"
        return None


def _mutable_defaults(function: Function) -> set[str]:
    args = function.node.args
    positional = [*args.posonlyargs, *args.args]
    pairs = list(
        zip(
            positional[len(positional) - len(args.defaults) :],
            args.defaults,
            strict=True,
        )
    )
    pairs += [
        (a, d)
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
        if d is not None
    ]
    return {
        a.arg
        for a, d in pairs
        if isinstance(d, (ast.Dict, ast.List, ast.Set))
        or (
            isinstance(d, ast.Call)
            and isinstance(d.func, ast.Name)
            and d.func.id in {"dict", "list", "set", "deque", "OrderedDict"}
        )
    }


def _stored_value(
    flow: Flow, value: ast.AST, function: Function
) -> str | None:
    found = flow.describe(value, function)
    if found is None:
        return None
    if not function.request and not flow.is_raw(value, function):
        # A bare proxy is only request-bound inside a request; Flask itself
        # puts 'request' into Jinja's globals at set-up.
        return None
    return found


def check_stored(module: Module, flow: Flow) -> Iterator[LintFinding]:
    """CG201: request-bound objects stored where they outlive the request."""
    for function in module.functions:
        lifetimes: _Lifetimes | None = None
        for node in function.body:
            if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                if node.value is None:
                    continue
                found = _stored_value(flow, node.value, function)
                if found is None:
                    continue
                lifetimes = lifetimes or _Lifetimes(module, function)
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                )
                raw = flow.is_raw(node.value, function)
                for target in targets:
                    if not raw and not _keyed(target):
                        # A proxy in a fixed place is a proxy still: it
                        # reads the current request (CG207 reports a
                        # global set to one).
                        continue
                    where = lifetimes.of_target(target)
                    if where is not None:
                        yield _stored(node, found, f"stored in {where}")
                        break
            elif isinstance(node, ast.Call) and isinstance(
                node.func, ast.Attribute
            ):
                values = [*node.args, *(k.value for k in node.keywords)]
                for value in values:
                    found = _stored_value(flow, value, function)
                    if found is None:
                        continue
                    lifetimes = lifetimes or _Lifetimes(module, function)
                    where = _receiver(
                        lifetimes, node.func, flow.is_raw(value, function)
                    )
                    if where is not None:
                        yield _stored(node, found, where)
                        break


def _receiver(
    lifetimes: _Lifetimes, func: ast.Attribute, raw: bool
) -> str | None:
    receiver = func.value
    method = func.attr
    if method in STORE_METHODS and _plain_chain(receiver):
        where = lifetimes.of_root(_root(receiver))
        if where is not None:
            return f"kept by '.{method}()' in {where}"
    if not raw:
        return None
    # A raw object handed to an app-wide service ('audit_trail().record',
    # 'current_app.extensions["queue"].put') is kept beyond the request.
    if (
        isinstance(receiver, ast.Call)
        and not receiver.args
        and not receiver.keywords
        and isinstance(receiver.func, (ast.Name, ast.Attribute))
    ):
        name = ast.unparse(receiver.func)
        return f"handed to '{name}().{method}()', an object shared by requests"
    if (
        isinstance(receiver, ast.Subscript)
        and isinstance(receiver.value, ast.Attribute)
        and receiver.value.attr == "extensions"
    ):
        return (
            f"handed to '{ast.unparse(receiver)}.{method}()', an extension"
            " shared by requests"
        )
    return None


def _keyed(target: ast.AST) -> bool:
    """A store under a computed key: one entry per user or request."""
    return isinstance(target, ast.Subscript) and not isinstance(
        target.slice, ast.Constant
    )


def _plain_chain(node: ast.AST) -> bool:
    """
    A name or its items ('cache', 'cache[key]'), not an attribute chain:
    'db.session.add(current_user)' is SQLAlchemy's, not a container.
    """
    while isinstance(node, ast.Subscript):
        node = node.value
    return isinstance(node, ast.Name)


def _stored(node: ast.AST, found: str, where: str) -> LintFinding:
    assert isinstance(node, (ast.stmt, ast.expr))
    return LintFinding(
        "CG201",
        node.lineno,
        node.col_offset + 1,
        f"'{found}' is {where}, which outlives the request: a later"
        " request (or thread) reads this one's object; store plain values"
        " (the user id, the fields you need) instead",
    )
