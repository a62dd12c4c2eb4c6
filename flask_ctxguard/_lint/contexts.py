"""
CG206: contexts pushed and never popped (the test-client requests that
share one are in ``sharing`` and ``fixtures``), and the facts of both.

Sanctioned, and silent: a context pushed and popped in the same function
(a fixture that yields and then pops), a context kept on ``self`` and
popped in ``tearDown`` (also of a base class in another module), a
context returned to the caller or handed on.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.fixtures import check_fixtures, fixture_facts
from flask_ctxguard._lint.flow import Flow
from flask_ctxguard._lint.roles import is_context_maker
from flask_ctxguard._lint.scope import Module
from flask_ctxguard._lint.sharing import assigned_context, check_sharing

__all__ = ["check_contexts", "context_facts"]


def check_contexts(module: Module, flow: Flow) -> Iterator[LintFinding]:
    """CG206 over every scope of *module*."""
    del flow
    scopes: list[ast.AST] = [module.tree, *(f.node for f in module.functions)]
    for scope in scopes:
        yield from _pushes(module, scope)
    yield from check_sharing(module)
    yield from check_fixtures(module)


def context_facts(module: Module) -> set[str]:
    """
    "pop:ATTR" for each ``x.ATTR.pop`` (a context kept on ``self`` and
    popped in ``tearDown``), and the fixtures of `fixture_facts`.
    """
    found = {
        f"pop:{node.value.attr}"
        for node in module.nodes
        if isinstance(node, ast.Attribute)
        and node.attr == "pop"
        and isinstance(node.value, ast.Attribute)
    }
    return found | fixture_facts(module)


def _pushes(module: Module, scope: ast.AST) -> Iterator[LintFinding]:
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
            # Closures count: pytest-flask pops in a nested teardown()
            # that it hands to request.addfinalizer.
            if not _escapes(list(ast.walk(scope)), owner.id):
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
            and assigned_context(nodes, owner.attr)
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


def _unpopped(node: ast.Call, shape: str) -> LintFinding:
    return LintFinding(
        "CG206",
        node.lineno,
        node.col_offset + 1,
        f"{shape}: every later test in this thread runs inside it, and on"
        " Flask 3.1 and earlier every request shares its 'g'; use 'with"
        " app.app_context():', or pop it (in a fixture: 'yield', then pop)",
    )
