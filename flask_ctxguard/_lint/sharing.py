"""
CG206's second shape: test-client requests that share one pushed
application context, and so one ``g`` on Flask 3.1 and earlier: inside
``with app.app_context():``, inside a fixture that yields in one, or in a
test method whose class's ``setUp`` pushed one.

Sanctioned, and silent: ``with app.app_context():`` around work that makes
no request (or one), a block that sets ``g`` values itself (a test that
injects a fake on purpose).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from .catalog import Finding
from .names import last_name
from .scope import Function, Module, is_context_maker

__all__ = ["assigned_context", "check_sharing", "fixture_facts"]

_REQUESTS = frozenset(
    {"get", "post", "put", "delete", "patch", "head", "options", "open"}
)
_CLIENT_NAMES = frozenset({"client", "test_client"})


def check_sharing(module: Module) -> Iterator[Finding]:
    """The shared-context shapes of CG206 in *module*."""
    scopes: list[ast.AST] = [module.tree, *(f.node for f in module.functions)]
    for scope in scopes:
        yield from _shared(module, scope)
    set_up = _set_up_contexts(module)
    for function in module.functions:
        if function.name.startswith("test"):
            yield from _in_fixture_context(module, function)
            yield from _in_set_up_context(module, function, set_up)
        name = _fixture_name(function)
        found = None if name is None else _yielding_block(function)
        if found is None:
            continue
        where, pushed, yielded = found
        clients = _client_names(module.body_of(function.node))
        if any(_is_client(value, clients) for value in yielded):
            what = "yields a test client inside"
            requires: frozenset[str] = frozenset()
        else:
            what = "yields inside"
            requires = frozenset({f"requested:{name}"})
        yield Finding(
            "CG206",
            where.lineno,
            where.col_offset + 1,
            f"the fixture '{name}' {what} the '{pushed}' it pushed, and"
            " tests that use it make their test-client requests in that"
            " context, so on Flask 3.1 and earlier they share one 'g';"
            " push the context for the set-up only, and yield outside it",
            requires=requires,
        )


def fixture_facts(module: Module) -> set[str]:
    """
    "ctx-fixture:NAME" for each pytest fixture of the module that yields
    inside an app or request context it opened; and, for a fixture that
    takes another, "implies:ctx-fixture:TAKEN->ctx-fixture:NAME" (a
    'client' fixture over such an 'app' keeps its context too).
    """
    found: set[str] = set()
    takes: dict[str, set[str]] = {}
    for function in module.functions:
        args = function.node.args
        parameters = {a.arg for a in (*args.posonlyargs, *args.args)}
        if function.name.startswith("test") and _test_requests(
            module, function
        ):
            found.update(f"requested:{p}" for p in parameters)
        name = _fixture_name(function)
        if name is None:
            continue
        takes[name] = parameters
        if _yielding_block(function) is not None:
            found.add(f"ctx-fixture:{name}")
    # A fixture that takes one keeps its context too, wherever it is; and
    # the requests of a test that takes it are made through what it takes.
    for name, parameters in takes.items():
        for parameter in parameters:
            found.add(f"implies:ctx-fixture:{parameter}->ctx-fixture:{name}")
            found.add(f"implies:requested:{name}->requested:{parameter}")
    return found


def _yielding_block(
    function: Function,
) -> tuple[ast.stmt, str, list[ast.expr]] | None:
    """
    Where a fixture pushes the context it yields in (a ``with`` block, or
    a ``push()`` before the ``yield`` and its pop), what it pushes, and
    what it yields.
    """
    for node in function.body:
        if isinstance(node, (ast.With, ast.AsyncWith)):
            makers = [i.context_expr for i in node.items]
            yields = _yields(node.body)
            if yields and any(is_context_maker(m) for m in makers):
                maker = next(m for m in makers if is_context_maker(m))
                return node, ast.unparse(maker), yields
    contexts = {
        t.id: node.value
        for node in function.body
        if isinstance(node, ast.Assign) and is_context_maker(node.value)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    body = function.node.body
    for index, statement in enumerate(body):
        pushed = _pushed(statement, contexts)
        if pushed is not None:
            yields = _yields(body[index + 1 :])
            if yields:
                return statement, pushed, yields
    return None


def _pushed(statement: ast.stmt, contexts: dict[str, ast.expr]) -> str | None:
    """What *statement* pushes ('x.push()' of a context), if anything."""
    if not (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Call)
        and isinstance(statement.value.func, ast.Attribute)
        and statement.value.func.attr == "push"
    ):
        return None
    owner = statement.value.func.value
    if is_context_maker(owner):
        return ast.unparse(owner)
    if isinstance(owner, ast.Name) and owner.id in contexts:
        return ast.unparse(contexts[owner.id])
    return None


def _yields(statements: list[ast.stmt]) -> list[ast.expr]:
    """What *statements* yield (a bare 'yield' yields a None constant)."""
    return [
        node.value if node.value is not None else ast.Constant(None)
        for statement in statements
        for node in _walk(statement)
        if isinstance(node, (ast.Yield, ast.YieldFrom))
    ]


_SET_UPS = frozenset({"setUp", "asyncSetUp", "setup_method", "setUpClass"})


def _set_up_contexts(module: Module) -> dict[str, str]:
    """Classes whose set-up pushes a context kept on self: name -> what."""
    found = {}
    for function in module.functions:
        if function.cls is None or function.name not in _SET_UPS:
            continue
        for node in function.body:
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "push"
                and isinstance(node.func.value, ast.Attribute)
                and assigned_context(function.body, node.func.value.attr)
            ):
                found[function.cls.name] = ast.unparse(node.func.value)
    return found


def _in_set_up_context(
    module: Module, function: Function, set_up: dict[str, str]
) -> Iterator[Finding]:
    """A test method that runs in the context its class's setUp pushed."""
    cls = function.cls
    if cls is None:
        return
    names = [cls.name] + [b.id for b in cls.bases if isinstance(b, ast.Name)]
    pushed = next((set_up[n] for n in names if n in set_up), None)
    if pushed is None:
        return
    lines = _test_requests(module, function)
    if lines:
        yield Finding(
            "CG206",
            function.node.lineno,
            function.node.col_offset + 1,
            f"'{function.name}' runs in the context that set-up pushed"
            f" ('{pushed}'), and its test-client requests (line"
            f" {', '.join(lines)}) share it, so on Flask 3.1 and earlier"
            " they share one 'g' (Flask-Login's user among it); push the"
            " context around the set-up work only",
        )


def _test_requests(module: Module, function: Function) -> list[str]:
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
        outside, _client_names(module.body_of(function.node))
    )
    return [] if lines == ["yield"] else lines


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
    lines = _test_requests(module, function)
    if not lines:
        return
    for name in names:
        yield Finding(
            "CG206",
            function.node.lineno,
            function.node.col_offset + 1,
            f"'{function.name}' takes the fixture '{name}', which keeps an"
            " app context pushed for the whole test, and its test-client"
            " requests"
            f" (line {', '.join(lines)}) run inside it, so on Flask 3.1 and"
            " earlier they share one 'g'; make the requests without that"
            " fixture, or push the context for the set-up only",
            requires=frozenset({f"ctx-fixture:{name}"}),
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
