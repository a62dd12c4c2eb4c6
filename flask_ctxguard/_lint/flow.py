"""
What a request function's names hold: request-bound objects, or data
read from the request.

*Bound* objects die with their request: the proxies ``request``,
``session``, ``g`` and ``current_user``, what their
``_get_current_object()`` returns, and ``request.files`` (the uploads'
streams are closed when the request ends). *Data* is anything computed
from a proxy or from a view's URL arguments: ``request.args["q"]``,
``current_user.id``, ``f"{user_id}"``. Plain values are data, never bound:
handing ``request.args["q"]`` to a thread is the sanctioned way.

The analysis is flow-insensitive within a function (a name assigned a
bound object anywhere is bound everywhere in it) and follows arguments
into the module's own functions.

Also the questions the rules share about names: which a function binds
(`local_names`) or declares global, which proxies it reads through the
module's own calls (`reads_proxy`), and which module-level names are
ContextVars or thread-locals.
"""

from __future__ import annotations

import ast

from flask_ctxguard._lint.scope import Function, Module

__all__ = [
    "Flow",
    "contextvars_of",
    "globals_declared",
    "local_names",
    "reads_proxy",
    "thread_locals_of",
]

_RAW_ATTRS = frozenset({"files", "stream", "input_stream"})
_LOCALS = frozenset(
    {
        "threading.local",
        "werkzeug.local.Local",
        "werkzeug.Local",
        "_threading_local.local",
    }
)


class Flow:
    """Bound and data names of every request function of a module."""

    __slots__ = ("bound", "data", "module", "passed")

    def __init__(self, module: Module) -> None:
        self.module = module
        #: Local names holding a bound object, with how it was obtained.
        self.bound: dict[Function, dict[str, str]] = {}
        self.data: dict[Function, set[str]] = {}
        #: For a parameter bound by a caller: the caller and its call.
        self.passed: dict[tuple[int, str], tuple[Function, ast.Call]] = {}
        for function in module.functions:
            self.bound[function] = {}
            self.data[function] = set()
            if function.role == "view":
                self.data[function].update(_parameters(function))
        for _ in range(4):
            if not self._step():
                break

    def _step(self) -> bool:
        changed = False
        for function in self.module.functions:
            bound, data = self.bound[function], self.data[function]
            before = (len(bound), len(data))
            for node in function.body:
                for target, value in _assignments(node):
                    if not isinstance(target, ast.Name):
                        continue
                    found = self.describe(value, function)
                    if found is not None and target.id not in bound:
                        bound[target.id] = found
                    if self.is_data(value, function):
                        data.add(target.id)
                if isinstance(node, ast.Call):
                    changed |= self._pass_arguments(node, function)
            changed |= before != (len(bound), len(data))
        return changed

    def _pass_arguments(self, call: ast.Call, caller: Function) -> bool:
        callee = self.module.resolve(call.func, caller)
        if callee is None:
            return False
        names = _parameters(callee)
        changed = False
        pairs = list(zip(names, call.args, strict=False))
        pairs += [(k.arg, k.value) for k in call.keywords if k.arg is not None]
        for name, value in pairs:
            if isinstance(value, ast.Starred):
                break
            found = self.describe(value, caller)
            if found is not None and name not in self.bound[callee]:
                self.bound[callee][name] = found
                self.passed[id(callee), name] = (caller, call)
                changed = True
            if self.is_data(value, caller) and name not in self.data[callee]:
                self.data[callee].add(name)
                changed = True
        return changed

    def origin(
        self, function: Function, node: ast.AST
    ) -> tuple[Function, ast.Call] | None:
        """
        Where the bound object in parameter *node* of *function* came
        from: the first call, up the chain of callers, that passed it.
        """
        found = None
        seen: set[int] = set()
        while isinstance(node, ast.Name) and id(function) not in seen:
            seen.add(id(function))
            step = self.passed.get((id(function), node.id))
            if step is None:
                break
            found = step
            function, call = step
            node = _argument_for(call, node.id, self, function)
        return found

    # -- expressions ------------------------------------------------------

    def describe(  # noqa: PLR0911 - one return per shape
        self, node: ast.AST, where: Function | None
    ) -> str | None:
        """
        How *node* holds a request-bound object (``"request"``,
        ``"request._get_current_object()"``, ``"request.files[...]"``), or
        `None` when it holds none.
        """
        imports = self.module.imports
        if isinstance(node, ast.Name) and where is not None:
            known = self.bound[where].get(node.id)
            if known is not None:
                return known
        proxy = imports.proxy(node)
        if proxy is not None:
            return proxy
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = imports.proxy(node.func.value)
            if owner is not None and node.func.attr == "_get_current_object":
                return f"{owner}._get_current_object()"
            if node.func.attr in {"get", "getlist"} and _is_files(
                node.func.value, self.module
            ):
                return f"request.files.{node.func.attr}(...)"
            return None
        if isinstance(node, ast.Subscript) and _is_files(
            node.value, self.module
        ):
            return "request.files[...]"
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _RAW_ATTRS
            and imports.proxy(node.value) == "request"
        ):
            return f"request.{node.attr}"
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            return self._first(node.elts, where)
        if isinstance(node, ast.Dict):
            return self._first(node.values, where)
        if isinstance(node, (ast.Starred, ast.NamedExpr)):
            return self.describe(node.value, where)
        if isinstance(node, ast.IfExp):
            return self._first([node.body, node.orelse], where)
        return None

    def _first(
        self, nodes: list[ast.expr], where: Function | None
    ) -> str | None:
        for element in nodes:
            found = self.describe(element, where)
            if found is not None:
                return found
        return None

    def is_raw(self, node: ast.AST, where: Function | None) -> bool:
        """Whether *node* holds a bound object other than a bare proxy."""
        found = self.describe(node, where)
        return found is not None and found not in _PROXY_NAMES

    def is_data(self, node: ast.AST, where: Function | None) -> bool:
        """Whether *node* is computed from the request."""
        names = self.data[where] if where is not None else set()
        bound = self.bound[where] if where is not None else {}
        for child in ast.walk(node):
            if isinstance(child, ast.Name) and (
                child.id in names or child.id in bound
            ):
                return True
            if self.module.imports.proxy(child) is not None:
                return True
        return False


_PROXY_NAMES = frozenset({"request", "session", "g", "current_user"})


def _is_files(node: ast.AST, module: Module) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "files"
        and module.imports.proxy(node.value) == "request"
    )


def _argument_for(
    call: ast.Call, name: str, flow: Flow, caller: Function
) -> ast.AST:
    """The argument of *call* that became parameter *name* of its callee."""
    callee = flow.module.resolve(call.func, caller)
    if callee is not None:
        names = _parameters(callee)
        for parameter, value in zip(names, call.args, strict=False):
            if parameter == name:
                return value
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return call


def _parameters(function: Function) -> list[str]:
    """The parameters a caller passes, without ``self`` or ``cls``."""
    args = function.node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args)]
    static = any(
        isinstance(d, ast.Name) and d.id == "staticmethod"
        for d in function.node.decorator_list
    )
    if function.cls is not None and names and not static:
        names = names[1:]
    return names + [a.arg for a in args.kwonlyargs]


def _assignments(node: ast.AST) -> list[tuple[ast.expr, ast.expr]]:
    if isinstance(node, ast.Assign):
        return [(target, node.value) for target in node.targets]
    if isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value:
        return [(node.target, node.value)]
    if isinstance(node, ast.NamedExpr):
        return [(node.target, node.value)]
    if isinstance(node, (ast.For, ast.AsyncFor)):
        return [(node.target, node.iter)]
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [
            (item.optional_vars, item.context_expr)
            for item in node.items
            if item.optional_vars is not None
        ]
    return []


def contextvars_of(module: Module) -> set[str]:
    """Module-level names bound to a ``ContextVar``."""
    return {
        name
        for name, value in module.globals.items()
        if isinstance(value, ast.Call)
        and module.imports.is_(value.func, "contextvars.ContextVar")
    }


def thread_locals_of(module: Module) -> set[str]:
    """Module-level names bound to a thread-local object."""
    local_classes = {
        name
        for name, cls in module.classes.items()
        if any(module.imports.qualify(b) in _LOCALS for b in cls.bases)
    }
    found = set()
    for name, value in module.globals.items():
        if not isinstance(value, ast.Call):
            continue
        if module.imports.qualify(value.func) in _LOCALS or (
            isinstance(value.func, ast.Name) and value.func.id in local_classes
        ):
            found.add(name)
    return found


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
    for child in function.body:
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


def globals_declared(function: Function) -> set[str]:
    """The names *function* declares ``global``."""
    declared: set[str] = set()
    for child in function.body:
        if isinstance(child, ast.Global):
            declared.update(child.names)
    return declared


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
