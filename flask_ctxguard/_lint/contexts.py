"""
CG206: contexts pushed and never popped, and test-client requests that
share one pushed application context (and so one ``g``, on Flask 3.1 and
earlier).

Sanctioned, and silent: ``with app.app_context():`` around work that
makes no request, a context pushed and popped in the same function (a
fixture that yields and then pops), a context kept on ``self`` and popped
in ``tearDown``, a context returned to the caller.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from .catalog import Finding
from .flow import Flow
from .names import last_name
from .scope import Function, Module, is_context_maker

__all__ = ["check_contexts"]

_REQUESTS = frozenset(
    {"get", "post", "put", "delete", "patch", "head", "options", "open"}
)
_CLIENT_NAMES = frozenset({"client", "test_client"})


def check_contexts(module: Module, flow: Flow) -> Iterator[Finding]:
    """CG206 over every scope of *module*."""
    del flow
    scopes: list[ast.AST] = [module.tree, *(f.node for f in module.functions)]
    for scope in scopes:
        yield from _pushes(module, scope)
        yield from _shared(module, scope)
    for function in module.functions:
        if function.name.startswith("test"):
            yield from _in_fixture_context(module, function)


def context_facts(module: Module) -> set[str]:
    """
    "ctx-fixture:NAME" for each pytest fixture of the module that yields
    inside an app or request context it opened; "pop:ATTR" for each
    ``x.ATTR.pop`` (a context kept on ``self`` and popped in ``tearDown``).
    """
    found = {
        f"pop:{node.value.attr}"
        for node in module.nodes
        if isinstance(node, ast.Attribute)
        and node.attr == "pop"
        and isinstance(node.value, ast.Attribute)
    }
    for function in module.functions:
        name = _fixture_name(function)
        if name is None:
            continue
        for node in function.body:
            if (
                isinstance(node, (ast.With, ast.AsyncWith))
                and any(is_context_maker(i.context_expr) for i in node.items)
                and any(
                    isinstance(n, (ast.Yield, ast.YieldFrom))
                    for statement in node.body
                    for n in _walk(statement)
                )
            ):
                found.add(f"ctx-fixture:{name}")
    return found


def _fixture_name(function: Function) -> str | None:
    for decorator in function.node.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        func = call.func if call is not None else decorator
        if last_name(func) != "fixture":
            continue
        for keyword in call.keywords if call is not None else ():
            if keyword.arg == "name" and isinstance(
                keyword.value, ast.Constant
            ):
                return str(keyword.value.value)
        return function.name
    return None


def _in_fixture_context(
    module: Module, function: Function
) -> Iterator[Finding]:
    """A test that takes a fixture's pushed context and makes requests."""
    args = function.node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if not names:
        return
    # Requests inside a 'with app.app_context():' of the test's own use
    # that context, not the fixture's (reported by the block's finding).
    outside = [
        statement
        for statement in function.node.body
        if not (
            isinstance(statement, (ast.With, ast.AsyncWith))
            and any(is_context_maker(i.context_expr) for i in statement.items)
        )
    ]
    lines = _requests_inside(
        outside, _client_names(module.body_of(function.node))
    )
    if not lines or lines == ["yield"]:
        return
    for name in names:
        yield Finding(
            "CG206",
            function.node.lineno,
            function.node.col_offset + 1,
            f"'{function.name}' takes the fixture '{name}', which yields"
            " inside an app context it pushed, and its test-client requests"
            f" (line {', '.join(lines)}) run inside it, so on Flask 3.1 and"
            " earlier they share one 'g'; make the requests without that"
            " fixture, or push the context for the set-up only",
            requires=frozenset({f"ctx-fixture:{name}"}),
        )


def _pushes(module: Module, scope: ast.AST) -> Iterator[Finding]:
    nodes = module.body_of(scope)
    contexts: dict[str, ast.Call] = {}
    for node in nodes:
        if isinstance(node, ast.Assign) and is_context_maker(node.value):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    contexts[target.id] = node.value  # type: ignore[assignment]
    for node in nodes:
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "push"
        ):
            continue
        owner = node.func.value
        if is_context_maker(owner):
            assert isinstance(owner, ast.Call)
            shown = ast.unparse(owner.func)
            yield _unpopped(
                node,
                f"'{shown}().push()' pushes a context that nothing can pop",
            )
        elif isinstance(owner, ast.Name) and owner.id in contexts:
            if not _escapes(nodes, owner.id):
                shown = ast.unparse(contexts[owner.id].func)
                yield _unpopped(
                    node,
                    f"'{owner.id}.push()' pushes '{shown}()' and this scope"
                    f" never calls '{owner.id}.pop()'",
                )
        elif (
            isinstance(owner, ast.Attribute)
            and isinstance(owner.value, ast.Name)
            and owner.value.id in {"self", "cls"}
            and _assigned_context(nodes, owner.attr)
        ):
            # A base class's tearDown, in another module, may pop it.
            finding = _unpopped(
                node,
                f"'{ast.unparse(owner)}.push()' is never popped (no"
                f" '.{owner.attr}.pop()' in any module)",
            )
            yield dataclasses.replace(
                finding, unless=frozenset({f"pop:{owner.attr}"})
            )


def _assigned_context(nodes: list[ast.AST], attr: str) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and is_context_maker(node.value)
        and any(
            isinstance(t, ast.Attribute) and t.attr == attr
            for t in node.targets
        )
        for node in nodes
    )


def _escapes(nodes: list[ast.AST], name: str) -> bool:
    """Whether the scope pops *name*, or hands it to someone who may."""
    return any(_hands_on(node, name) for node in nodes)


def _hands_on(node: ast.AST, name: str) -> bool:
    if isinstance(node, ast.Attribute):
        return (
            isinstance(node.value, ast.Name)
            and node.value.id == name
            and node.attr in {"pop", "__exit__"}
        )
    if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom)):
        return node.value is not None and _mentions(node.value, name)
    if isinstance(node, ast.Assign):
        return _mentions(node.value, name) and not all(
            isinstance(t, ast.Name) for t in node.targets
        )
    if isinstance(node, ast.Call):
        own = (
            isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
        )
        return not own and any(
            _mentions(a, name)
            for a in (*node.args, *(k.value for k in node.keywords))
        )
    return False


def _mentions(node: ast.AST, name: str) -> bool:
    return any(
        isinstance(n, ast.Name) and n.id == name for n in ast.walk(node)
    )


def _unpopped(node: ast.Call, shape: str) -> Finding:
    return Finding(
        "CG206",
        node.lineno,
        node.col_offset + 1,
        f"{shape}: every later request and test in this thread runs inside"
        " it and shares its 'g'; use 'with app.app_context():', or pop it"
        " (in a fixture: 'yield', then pop)",
    )


def _shared(module: Module, scope: ast.AST) -> Iterator[Finding]:
    nodes = module.body_of(scope)
    clients = _client_names(nodes)
    for node in nodes:
        if not isinstance(node, (ast.With, ast.AsyncWith)):
            continue
        makers = [
            item.context_expr
            for item in node.items
            if is_context_maker(item.context_expr)
        ]
        if not makers:
            continue
        lines = _requests_inside(node.body, clients)
        if not lines or _injects_g(module, node):
            continue
        maker = makers[0]
        assert isinstance(maker, ast.Call)
        shown = ast.unparse(maker.func)
        if lines == ["yield"]:
            what = "the test client this fixture yields makes its requests"
        else:
            what = "test-client requests (line " + ", ".join(lines) + ") run"
        yield Finding(
            "CG206",
            node.lineno,
            node.col_offset + 1,
            f"{what} inside 'with {shown}():', so on Flask 3.1 and earlier"
            " they share one 'g' (Flask-Login's user among it); push the"
            " context for the set-up only, and make the requests outside"
            " the block",
        )


def _injects_g(module: Module, block: ast.With | ast.AsyncWith) -> bool:
    """
    A test that sets 'g' values in the block shares the context on
    purpose: values set outside any request are test set-up.
    """
    return any(
        isinstance(node, ast.Assign)
        and any(
            isinstance(t, ast.Attribute)
            and module.imports.proxy(t.value) == "g"
            for t in node.targets
        )
        for statement in block.body
        for node in _walk(statement)
    )


def _client_names(nodes: list[ast.AST]) -> set[str]:
    names = set(_CLIENT_NAMES)
    for node in nodes:
        pairs: list[tuple[ast.expr | None, ast.expr]] = []
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            pairs = [(i.optional_vars, i.context_expr) for i in node.items]
        names.update(
            target.id
            for target, value in pairs
            if isinstance(target, ast.Name)
            and isinstance(value, ast.Call)
            and isinstance(value.func, ast.Attribute)
            and value.func.attr == "test_client"
        )
    return names


def _is_client(node: ast.AST, clients: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in clients
    if isinstance(node, ast.Attribute):
        return node.attr in clients
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "test_client"
    )


def _requests_inside(
    statements: list[ast.stmt], clients: set[str]
) -> list[str]:
    """
    The lines of test-client requests in *statements* when several
    requests can share a context: two or more, one in a loop, or one and a
    ``test_request_context()`` (which reuses the pushed app context too);
    ``["yield"]`` for a fixture that yields a test client.
    """
    found: list[int] = []
    looped = False
    request_contexts = 0
    for statement in statements:
        for node in _walk(statement):
            if (
                isinstance(node, (ast.Yield, ast.YieldFrom))
                and node.value is not None
                and _is_client(node.value, clients)
            ):
                return ["yield"]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _REQUESTS
                and _is_client(node.func.value, clients)
            ):
                found.append(node.lineno)
            if isinstance(node, (ast.With, ast.AsyncWith)) and any(
                isinstance(i.context_expr, ast.Call)
                and last_name(i.context_expr.func) == "test_request_context"
                for i in node.items
            ):
                request_contexts += 1
            if isinstance(node, (ast.For, ast.While, ast.AsyncFor)):
                inner = [
                    n
                    for n in _walk(node)
                    if isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Attribute)
                    and n.func.attr in _REQUESTS
                    and _is_client(n.func.value, clients)
                ]
                looped = looped or bool(inner)
    if len(found) >= 2 or (found and (looped or request_contexts)):
        return [str(line) for line in sorted(set(found))]
    return []


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    if isinstance(
        node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    ):
        return
    for child in ast.iter_child_nodes(node):
        yield from _walk(child)
