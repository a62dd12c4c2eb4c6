"""
CG206's second shape: test-client requests that share one pushed
application context, and so one ``g`` on Flask 3.1 and earlier, here
inside ``with app.app_context():`` (fixtures and ``setUp`` are in
``fixtures``); and what tells a test client and its requests.

Sanctioned, and silent: ``with app.app_context():`` around work that makes
no request (or one), a block that sets ``g`` values itself (a test that
injects a fake on purpose).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.names import last_name
from flask_ctxguard._lint.roles import is_context_maker
from flask_ctxguard._lint.scope import Function, Module

__all__ = [
    "assigned_context",
    "check_sharing",
    "client_names",
    "is_client",
    "test_requests",
    "walk",
]

_REQUESTS = frozenset(
    {"get", "post", "put", "delete", "patch", "head", "options", "open"}
)
_CLIENT_NAMES = frozenset({"client", "test_client"})


def check_sharing(module: Module) -> Iterator[LintFinding]:
    """Test-client requests sharing a ``with app.app_context():`` block."""
    scopes: list[ast.AST] = [module.tree, *(f.node for f in module.functions)]
    for scope in scopes:
        yield from _shared(module, scope)


def test_requests(module: Module, function: Function) -> list[str]:
    """
    The lines of a test's requests outside its own context blocks, when
    several share one context.
    """
    # Requests inside a 'with app.app_context():' of the test's own use
    # that context (reported by the block's finding).
    outside = [
        statement
        for statement in function.node.body
        if not (
            isinstance(statement, (ast.With, ast.AsyncWith))
            and any(is_context_maker(i.context_expr) for i in statement.items)
        )
    ]
    lines = _requests_inside(
        outside, client_names(module.body_of(function.node))
    )
    return [] if lines == ["yield"] else lines


def _shared(module: Module, scope: ast.AST) -> Iterator[LintFinding]:
    nodes = module.body_of(scope)
    clients = client_names(nodes)
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
        yield LintFinding(
            "CG206",
            node.lineno,
            node.col_offset + 1,
            f"{what} inside 'with {shown}():', so on Flask 3.1 and earlier"
            " they share one 'g' (Flask-Login's user among it); push the"
            " context for the set-up only, and make the requests outside"
            " the block",
            shared_g=True,
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
        for node in walk(statement)
    )


def client_names(nodes: list[ast.AST]) -> set[str]:
    """
    Names of test clients: bound from ``test_client()``, or fixtures named
    'client' (a 'client' bound from anything else, an HTTP library's, is
    not one).
    """
    clients: set[str] = set()
    others: set[str] = set()
    for node in nodes:
        pairs: list[tuple[ast.expr | None, ast.expr]] = []
        if isinstance(node, ast.Assign):
            pairs = [(t, node.value) for t in node.targets]
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            pairs = [(i.optional_vars, i.context_expr) for i in node.items]
        for target, value in pairs:
            if not isinstance(target, ast.Name):
                continue
            if (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Attribute)
                and value.func.attr == "test_client"
            ):
                clients.add(target.id)
            else:
                others.add(target.id)
    return clients | (_CLIENT_NAMES - others)


def is_client(node: ast.AST, clients: set[str]) -> bool:
    """Whether *node* is a test client of *clients* (or makes one)."""
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
        for node in walk(statement):
            if (
                isinstance(node, (ast.Yield, ast.YieldFrom))
                and node.value is not None
                and is_client(node.value, clients)
            ):
                return ["yield"]
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _REQUESTS
                and is_client(node.func.value, clients)
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
                    for n in walk(node)
                    if isinstance(n, ast.Call)
                    and isinstance(n.func, ast.Attribute)
                    and n.func.attr in _REQUESTS
                    and is_client(n.func.value, clients)
                ]
                looped = looped or bool(inner)
    if len(found) >= 2 or (found and (looped or request_contexts)):
        return [str(line) for line in sorted(set(found))]
    return []


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """*node* and what it holds, not entering functions or classes."""
    yield node
    if isinstance(
        node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    ):
        return
    for child in ast.iter_child_nodes(node):
        yield from walk(child)


def assigned_context(nodes: list[ast.AST], attr: str) -> bool:
    """Whether *nodes* assign a context to an attribute named *attr*."""
    return any(
        isinstance(node, ast.Assign)
        and is_context_maker(node.value)
        and any(
            isinstance(t, ast.Attribute) and t.attr == attr
            for t in node.targets
        )
        for node in nodes
    )
