"""
Rules about request data kept beyond its request: CG201 (a request-bound
object stored where it outlives the request), CG205 (a cache over a
function that reads the request) and CG207 (a module global assigned
request data).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .catalog import Finding
from .flow import Flow, contextvars_of, thread_locals_of
from .scope import Function, Module, body_nodes

__all__ = ["check_caches", "check_globals", "check_stored", "local_names"]

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
_CACHES = frozenset({"functools.lru_cache", "functools.cache"})


def local_names(function: Function) -> set[str]:
    """The names *function* binds itself (not ``global``/``nonlocal``)."""
    node = function.node
    args = node.args
    names = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
    if args.vararg is not None:
        names.add(args.vararg.arg)
    if args.kwarg is not None:
        names.add(args.kwarg.arg)
    declared: set[str] = set()
    for child in body_nodes(node):
        if isinstance(child, ast.Name) and isinstance(
            child.ctx, (ast.Store, ast.Del)
        ):
            names.add(child.id)
        elif isinstance(child, (ast.Global, ast.Nonlocal)):
            declared.update(child.names)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(child.name)
        elif isinstance(child, (ast.Import, ast.ImportFrom)):
            names.update(
                (a.asname or a.name).split(".")[0] for a in child.names
            )
    return names - declared


def _globals_declared(function: Function) -> set[str]:
    declared: set[str] = set()
    for child in function.body:
        if isinstance(child, ast.Global):
            declared.update(child.names)
    return declared


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
        self.globals = _globals_declared(function)
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


def check_stored(module: Module, flow: Flow) -> Iterator[Finding]:
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


def _stored(node: ast.AST, found: str, where: str) -> Finding:
    assert isinstance(node, (ast.stmt, ast.expr))
    return Finding(
        "CG201",
        node.lineno,
        node.col_offset + 1,
        f"'{found}' is {where}, which outlives the request: a later"
        " request (or thread) reads this one's object; store plain values"
        " (the user id, the fields you need) instead",
    )


def check_globals(module: Module, flow: Flow) -> Iterator[Finding]:
    """CG207: module globals (re)assigned request data in request code."""
    shared = _shared_objects(module)
    for function in module.request_functions():
        declared = _globals_declared(function)
        for node in function.body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            if node.value is None or not flow.is_data(node.value, function):
                continue
            if flow.is_raw(node.value, function):
                continue  # CG201's
            targets = (
                node.targets if isinstance(node, ast.Assign) else [node.target]
            )
            for target in targets:
                where = _global_target(
                    module, target, declared, function
                ) or _shared_slot(target, shared, function)
                if where is not None:
                    yield Finding(
                        "CG207",
                        node.lineno,
                        node.col_offset + 1,
                        f"{where} is assigned request data in request code:"
                        " every request and thread of the process sees the"
                        " last request's value; keep it in 'g', the"
                        " session or a per-user store instead",
                    )
                    break


def _shared_objects(module: Module) -> set[str]:
    """
    Module-level names of objects and containers shared by every request
    (not thread-locals, ContextVars or proxies, which are per thread or
    per request).
    """
    per_thread = thread_locals_of(module) | contextvars_of(module)
    shared = set()
    for name, value in module.globals.items():
        if name in per_thread:
            continue
        if isinstance(value, (ast.Dict, ast.List)):
            shared.add(name)
        elif isinstance(value, ast.Call):
            called = module.imports.qualify(value.func) or ""
            if not called.startswith("werkzeug.local"):
                shared.add(name)
    return shared


def _shared_slot(
    target: ast.AST, shared: set[str], function: Function
) -> str | None:
    """A fixed slot of a shared object: 'STATE["user"]', 'state.user'."""
    owner = (
        target.value
        if isinstance(target, (ast.Subscript, ast.Attribute))
        else None
    )
    if not isinstance(owner, ast.Name) or owner.id not in shared:
        return None
    if owner.id in local_names(function):
        return None
    if isinstance(target, ast.Subscript):
        key = target.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return (
                f"the fixed slot '{owner.id}[{key.value!r}]' of a"
                " module-level object"
            )
        return None
    assert isinstance(target, ast.Attribute)
    return (
        f"the attribute '{owner.id}.{target.attr}' of an object created at"
        " import"
    )


def _global_target(
    module: Module, target: ast.AST, declared: set[str], function: Function
) -> str | None:
    if isinstance(target, ast.Name) and target.id in declared:
        return f"the module global '{target.id}' (declared 'global')"
    if isinstance(target, ast.Attribute) and isinstance(
        target.value, ast.Name
    ):
        owner = target.value.id
        if owner in local_names(function):
            return None
        if module.imports.imports_module(owner):
            return f"the module attribute '{owner}.{target.attr}'"
        if owner in module.classes:
            return f"the class attribute '{owner}.{target.attr}'"
    return None


def check_caches(module: Module, flow: Flow) -> Iterator[Finding]:
    """CG205: a cache over a function that reads the request."""
    del flow
    for function in module.functions:
        for decorator in function.node.decorator_list:
            kind = _cache_kind(module, decorator)
            if kind is None:
                continue
            wanted = (
                {"session", "g", "current_user"}
                if kind.endswith(".cached")
                else {"request", "session", "g", "current_user"}
            )
            read = reads_proxy(module, function, wanted)
            if read is None:
                continue
            name, line = read
            yield Finding(
                "CG205",
                decorator.lineno,
                max(1, decorator.col_offset),  # the '@'
                f"'@{kind}' caches '{function.name}()', which reads '{name}'"
                f" (line {line}): every later request, of any user, gets"
                " the first request's result; pass the key (the user id)"
                " as an argument, or cache per request on 'g'",
            )
            break


def _cache_kind(module: Module, decorator: ast.expr) -> str | None:
    call = decorator if isinstance(decorator, ast.Call) else None
    func = call.func if call is not None else decorator
    qualified = module.imports.qualify(func)
    if qualified in _CACHES:
        return qualified
    if (
        isinstance(func, ast.Attribute)
        and func.attr in {"memoize", "cached"}
        and isinstance(func.value, ast.Name)
        and _is_flask_cache(module, func.value.id)
    ):
        if func.attr == "cached" and call is not None:
            for keyword in call.keywords:
                if keyword.arg in {"unless", "make_cache_key", "source_check"}:
                    return None
                if keyword.arg == "key_prefix" and not isinstance(
                    keyword.value, ast.Constant
                ):
                    return None
        return f"{func.value.id}.{func.attr}"
    return None


def _is_flask_cache(module: Module, name: str) -> bool:
    value = module.globals.get(name)
    if isinstance(value, ast.Call):
        return module.imports.is_(value.func, "flask_caching.Cache")
    return "cache" in name.lower() and name in module.imports.aliases


def reads_proxy(
    module: Module,
    function: Function,
    wanted: set[str],
    _seen: set[int] | None = None,
) -> tuple[str, int] | None:
    """
    The first proxy of *wanted* that *function*, or a function of the
    module it calls, reads outside a context it opens itself, with the
    line; `None` if none.
    """
    seen = _seen if _seen is not None else set()
    if id(function) in seen or len(seen) > 50:
        return None
    seen.add(id(function))
    own = module.own_context_nodes(function.node)
    for node in function.body:
        if id(node) in own or not isinstance(node, (ast.Name, ast.Attribute)):
            continue
        name = module.imports.proxy(node)
        if name in wanted:
            return name, node.lineno
    for callee in function.calls:
        found = reads_proxy(module, callee, wanted, seen)
        if found is not None:
            return found
    return None
