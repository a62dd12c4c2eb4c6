"""
CG206 for contexts that tests get from elsewhere: a pytest fixture that
yields inside the app context it pushed (a ``with`` block, or ``push()``
before the ``yield``), and a ``setUp`` that pushes one on ``self``; the
tests that make several test-client requests in it, and the fixture.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.names import last_name
from flask_ctxguard._lint.roles import is_context_maker
from flask_ctxguard._lint.scope import Function, Module
from flask_ctxguard._lint.sharing import (
    assigned_context,
    client_names,
    is_client,
    test_requests,
    walk,
)

__all__ = ["check_fixtures", "fixture_facts"]


def check_fixtures(module: Module) -> Iterator[LintFinding]:
    """Requests sharing the context a fixture or ``setUp`` pushed."""
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
        clients = client_names(module.body_of(function.node))
        if any(is_client(value, clients) for value in yielded):
            what = "yields a test client inside"
            requires: frozenset[str] = frozenset()
        else:
            what = "yields inside"
            requires = frozenset({f"requested:{name}"})
        yield LintFinding(
            "CG206",
            where.lineno,
            where.col_offset + 1,
            f"the fixture '{name}' {what} the '{pushed}' it pushed, and"
            " tests that use it make their test-client requests in that"
            " context, so on Flask 3.1 and earlier they share one 'g';"
            " push the context for the set-up only, and yield outside it",
            requires=requires,
            shared_g=True,
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
        if function.name.startswith("test") and test_requests(
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
        for node in walk(statement)
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
) -> Iterator[LintFinding]:
    """A test method that runs in the context its class's setUp pushed."""
    cls = function.cls
    if cls is None:
        return
    names = [cls.name] + [b.id for b in cls.bases if isinstance(b, ast.Name)]
    pushed = next((set_up[n] for n in names if n in set_up), None)
    if pushed is None:
        return
    lines = test_requests(module, function)
    if lines:
        yield LintFinding(
            "CG206",
            function.node.lineno,
            function.node.col_offset + 1,
            f"'{function.name}' runs in the context that set-up pushed"
            f" ('{pushed}'), and its test-client requests (line"
            f" {', '.join(lines)}) share it, so on Flask 3.1 and earlier"
            " they share one 'g' (Flask-Login's user among it); push the"
            " context around the set-up work only",
            shared_g=True,
        )


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
) -> Iterator[LintFinding]:
    """A test that takes a fixture's pushed context and makes requests."""
    args = function.node.args
    names = [a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)]
    if not names:
        return
    lines = test_requests(module, function)
    if not lines:
        return
    for name in names:
        yield LintFinding(
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
            shared_g=True,
        )
