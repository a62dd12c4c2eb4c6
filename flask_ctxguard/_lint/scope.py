"""
Which code of a module runs inside a request.

A `Module` indexes one parsed file: its functions (with the class and the
function that enclose them), its module-level names, and the *request
code*: views (``@app.route``, ``@bp.get``, ``add_url_rule``, class-based
views), request hooks (``before_request``, ``teardown_request``...), and
every function of the same module they call, followed through
``helper()``, ``self.helper()`` and nested functions. A function that
reads ``request``, ``session`` or ``current_user`` outside a context it
pushes itself also counts: it can only run in a request.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from flask_ctxguard._lint.names import Imports
from flask_ctxguard._lint.roles import (
    HOOKS,
    VIEW_BASES,
    decorator_role,
    hook_role,
    is_context_maker,
    pushes_context,
)

__all__ = ["Function", "Module", "body_nodes"]

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


@dataclasses.dataclass(slots=True, eq=False)
class Function:
    """One ``def`` of the module and what the module makes of it."""

    node: FunctionNode
    cls: ast.ClassDef | None
    outer: Function | None
    #: "view", "before", "after", "teardown", "hook" or "" (plain).
    role: str = ""
    request: bool = False
    calls: list[Function] = dataclasses.field(default_factory=list)
    _body: list[ast.AST] | None = None

    @property
    def body(self) -> list[ast.AST]:
        """The nodes of the function's own body (see `body_nodes`)."""
        if self._body is None:
            self._body = list(body_nodes(self.node))
        return self._body

    @property
    def name(self) -> str:
        """The function's name."""
        return self.node.name


def body_nodes(node: ast.AST) -> Iterator[ast.AST]:
    """
    Every node of a function's (or module's) own body, not descending into
    nested functions, classes or lambdas.
    """
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        stack: list[ast.AST] = list(node.body)
    elif isinstance(node, ast.Lambda):
        stack = [node.body]
    else:
        stack = list(ast.iter_child_nodes(node))
    while stack:
        child = stack.pop()
        yield child
        if isinstance(
            child,
            (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda),
        ):
            continue
        stack.extend(ast.iter_child_nodes(child))


class Module:
    """The index of one parsed module."""

    __slots__ = (
        "_bodies",
        "_methods",
        "_named",
        "_own",
        "by_node",
        "classes",
        "functions",
        "globals",
        "imports",
        "is_test",
        "nodes",
        "tree",
    )

    def __init__(self, tree: ast.Module, *, is_test: bool = False) -> None:
        self.tree = tree
        self._own: dict[int, set[int]] = {}
        self.is_test = is_test
        self.functions: list[Function] = []
        self.by_node: dict[ast.AST, Function] = {}
        self.classes: dict[str, ast.ClassDef] = {}
        #: Module-level names bound by assignment, to the assigned value.
        self.globals: dict[str, ast.expr | None] = {}
        self._bodies: dict[int, list[ast.AST]] = {}
        self.nodes = self._index(tree)
        # Functions by (enclosing function, name) and methods by (class,
        # name); the first definition wins, as the scans did.
        self._named: dict[tuple[int, str], Function] = {}
        self._methods: dict[tuple[int, str], Function] = {}
        for function in self.functions:
            if function.cls is None:
                outer = 0 if function.outer is None else id(function.outer)
                self._named.setdefault((outer, function.name), function)
            else:
                key = (id(function.cls), function.name)
                self._methods.setdefault(key, function)
        self.imports = Imports(self.nodes)
        self._module_level(tree.body)
        self._mark_roles()
        self._link_calls()
        self._spread_request()

    # -- indexing ---------------------------------------------------------

    def _index(self, tree: ast.Module) -> list[ast.AST]:
        # One walk: every node, each scope's own body (what `body_nodes`
        # gives), and the functions with their class and outer function.
        item = tuple[ast.AST, ast.AST, ast.ClassDef | None, Function | None]
        nodes: list[ast.AST] = [tree]
        bodies = self._bodies
        bodies[id(tree)] = []
        stack: list[item] = [
            (c, tree, None, None) for c in reversed(tree.body)
        ]
        while stack:
            node, owner, cls, outer = stack.pop()
            nodes.append(node)
            bodies[id(owner)].append(node)
            around: list[ast.AST]
            inside: list[ast.AST]
            new_cls: ast.ClassDef | None
            new_outer: Function | None
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                function = Function(node, cls, outer)
                self.functions.append(function)
                self.by_node[node] = function
                function._body = bodies[id(node)] = []
                around = [*node.decorator_list, node.args]
                if node.returns is not None:
                    around.append(node.returns)
                inside = list(node.body)
                new_cls, new_outer = None, function
            elif isinstance(node, ast.ClassDef):
                if outer is None and cls is None:
                    self.classes[node.name] = node
                bodies[id(node)] = []
                around = [*node.decorator_list, *node.bases, *node.keywords]
                inside = list(node.body)
                new_cls, new_outer = node, outer
            elif isinstance(node, ast.Lambda):
                bodies[id(node)] = []
                around, inside = [node.args], [node.body]
                new_cls, new_outer = cls, outer
            else:
                stack.extend(
                    (c, owner, cls, outer)
                    for c in reversed(list(ast.iter_child_nodes(node)))
                )
                continue
            stack.extend(
                (c, node, new_cls, new_outer) for c in reversed(inside)
            )
            stack.extend((c, owner, cls, outer) for c in reversed(around))
        return nodes

    def body_of(self, node: ast.AST) -> list[ast.AST]:
        """The own body of the module, a function or a lambda."""
        known = self._bodies.get(id(node))
        return known if known is not None else list(body_nodes(node))

    def _module_level(self, body: list[ast.stmt]) -> None:
        for statement in body:
            if isinstance(statement, ast.Assign):
                for target in statement.targets:
                    for name in _target_names(target):
                        self.globals[name] = statement.value
            elif isinstance(statement, ast.AnnAssign) and isinstance(
                statement.target, ast.Name
            ):
                self.globals[statement.target.id] = statement.value
            elif isinstance(statement, (ast.If, ast.Try)):
                self._module_level(statement.body)
                self._module_level(statement.orelse)
                if isinstance(statement, ast.Try):
                    for handler in statement.handlers:
                        self._module_level(handler.body)

    def module_function(self, name: str) -> Function | None:
        """The module-level ``def`` called *name*."""
        return self._named.get((0, name))

    def resolve(
        self, node: ast.AST, where: Function | None
    ) -> Function | None:
        """The function a name or ``self.name`` in *where* refers to."""
        if isinstance(node, ast.Name):
            scope = where
            while scope is not None:
                found = self._named.get((id(scope), node.id))
                if found is not None:
                    return found
                scope = scope.outer
            return self.module_function(node.id)
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in {"self", "cls"}
            and where is not None
            and where.cls is not None
        ):
            return self.method(where.cls, node.attr)
        return None

    def method(self, cls: ast.ClassDef, name: str) -> Function | None:
        """Method *name* of *cls* or of a base class in this module."""
        seen: set[str] = set()
        todo = [cls]
        while todo:
            current = todo.pop()
            if current.name in seen:
                continue
            seen.add(current.name)
            found = self._methods.get((id(current), name))
            if found is not None:
                return found
            todo.extend(
                self.classes[base.id]
                for base in current.bases
                if isinstance(base, ast.Name) and base.id in self.classes
            )
        return None

    # -- roles ------------------------------------------------------------

    def _mark_roles(self) -> None:
        view_classes = self._view_classes()
        for function in self.functions:
            for decorator in function.node.decorator_list:
                role = decorator_role(decorator)
                if role:
                    function.role = role
            if function.cls is not None and function.cls.name in view_classes:
                function.role = function.role or "view"
        for node in self.nodes:
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
            ):
                continue
            attr = node.func.attr
            if attr == "add_url_rule":
                target = node.args[2] if len(node.args) > 2 else None
                for keyword in node.keywords:
                    if keyword.arg == "view_func":
                        target = keyword.value
                self._mark(target, "view")
            elif attr in HOOKS and node.args:
                self._mark(node.args[-1], hook_role(attr))

    def _mark(self, target: ast.AST | None, role: str) -> None:
        if isinstance(target, ast.Name):
            for function in self.functions:
                if function.name == target.id and function.cls is None:
                    function.role = function.role or role

    def _view_classes(self) -> set[str]:
        found: set[str] = set()
        for node in self.nodes:
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "as_view"
                and isinstance(node.func.value, ast.Name)
            ):
                found.add(node.func.value.id)
        changed = True
        while changed:
            changed = False
            for name, cls in self.classes.items():
                if name in found:
                    continue
                if any(
                    self.imports.qualify(base) in VIEW_BASES
                    or (isinstance(base, ast.Name) and base.id in found)
                    for base in cls.bases
                ) or any(
                    decorator_role(d) == "view" for d in cls.decorator_list
                ):
                    found.add(name)
                    changed = True
        return found

    # -- request code -----------------------------------------------------

    def _link_calls(self) -> None:
        for function in self.functions:
            for node in function.body:
                if isinstance(node, ast.Call):
                    callee = self.resolve(node.func, function)
                    if callee is not None and callee is not function:
                        function.calls.append(callee)

    def _spread_request(self) -> None:
        todo = [
            f
            for f in self.functions
            if f.role or (not self.is_test and self.reads_request(f))
        ]
        nested: dict[int, list[Function]] = {}
        for function in self.functions:
            if function.outer is not None:
                nested.setdefault(id(function.outer), []).append(function)
        while todo:
            function = todo.pop()
            if function.request:
                continue
            function.request = True
            todo.extend(f for f in function.calls if not f.request)
            # A nested def is called, or handed on, by its outer function.
            todo.extend(nested.get(id(function), ()))

    def reads_request(self, function: Function) -> bool:
        """
        Whether *function* reads ``request``, ``session`` or
        ``current_user`` outside a context it opens itself.
        """
        if function.name.startswith("test_"):
            return False
        own = self.own_context_nodes(function.node)
        for node in function.body:
            if id(node) in own:
                continue
            if self.imports.proxy(node) in {
                "request",
                "session",
                "current_user",
            }:
                return True
        return False

    def own_context_nodes(self, node: ast.AST) -> set[int]:
        """
        Ids of the nodes inside ``with x.app_context():`` blocks; all of
        the body's when it pushes a context itself (``ctx.push()``).
        """
        known = self._own.get(id(node))
        if known is not None:
            return known
        inside: set[int] = set()
        self._own[id(node)] = inside
        body = self.body_of(node)
        if pushes_context(body):
            inside.update(id(n) for n in body)
            return inside
        for child in body:
            if isinstance(child, (ast.With, ast.AsyncWith)) and any(
                is_context_maker(item.context_expr) for item in child.items
            ):
                for statement in child.body:
                    inside.update(id(n) for n in ast.walk(statement))
        return inside

    def request_functions(self) -> Iterator[Function]:
        """The functions that run inside a request."""
        return (f for f in self.functions if f.request)


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _target_names(element)
