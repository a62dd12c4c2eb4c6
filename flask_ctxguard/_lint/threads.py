"""
CG202: work that leaves the request (a thread, an executor, an asyncio
task or loop, a greenlet, a streamed generator) and takes the request's
objects with it.

Sanctioned, and silent: a target wrapped with
``copy_current_request_context`` or run through
``contextvars.copy_context().run``, Flask-Executor (it copies the
context), plain values as arguments, a target that pushes a context of
its own, ``stream_with_context``.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from .catalog import Finding
from .flow import Flow, reads_proxy
from .scope import Function, Module
from .starts import Start, assigned, find_start, unawaited_calls

__all__ = ["check_threads"]

_ALL = {"request", "session", "g", "current_user"}
_COPIERS = frozenset(
    {
        "flask.copy_current_request_context",
        "flask.ctx.copy_current_request_context",
        "flask.stream_with_context",
        "flask.helpers.stream_with_context",
    }
)


def check_threads(module: Module, flow: Flow) -> Iterator[Finding]:
    """CG202 over every request function of *module*."""
    for function in module.request_functions():
        loose = unawaited_calls(function)
        for node in function.body:
            if not isinstance(node, ast.Call):
                continue
            start = find_start(module, function, node, loose)
            if start is None:
                continue
            finding = _judge(module, flow, function, start)
            if finding is not None:
                yield dataclasses.replace(finding, requires=start.requires)


def _judge(
    module: Module, flow: Flow, function: Function, start: Start
) -> Finding | None:
    target = start.target
    if target is None or _is_copied(module, function, target):
        return None
    if isinstance(target, ast.Call) and module.imports.is_(
        target.func, "functools.partial"
    ):
        start.args = [
            *target.args[1:],
            *(k.value for k in target.keywords),
            *start.args,
        ]
        target = target.args[0] if target.args else None
        if target is None or _is_copied(module, function, target):
            return None
    reason = None
    for argument in start.args:
        found = flow.describe(argument, function)
        if found is None:
            continue
        origin = flow.origin(function, argument)
        if origin is not None:
            # The bug is where the request's object is handed on.
            _, call = origin
            return Finding(
                "CG202",
                call.lineno,
                call.col_offset + 1,
                f"'{found}' is handed to '{ast.unparse(call.func)}()', which"
                f" passes it to {start.how} (line {start.node.lineno}) that"
                " runs outside the request: pass plain values"
                " (request.args['q'], the user id), or wrap the function"
                " with 'flask.copy_current_request_context'",
            )
        reason = f"is handed '{found}'"
        break
    if reason is None:
        reason = _target_reads(module, flow, function, target)
    if reason is None:
        return None
    shown = (
        ast.unparse(target)
        if not isinstance(target, ast.Lambda)
        else "a lambda"
    )
    if start.how == "a streamed response":
        return Finding(
            "CG202",
            start.node.lineno,
            start.node.col_offset + 1,
            f"a streamed response's generator '{_short(shown)}' {reason}; it"
            " runs after the view returned, outside the request: wrap it"
            " with 'flask.stream_with_context', or read the values before"
            " streaming",
        )
    return Finding(
        "CG202",
        start.node.lineno,
        start.node.col_offset + 1,
        f"{start.how} runs '{_short(shown)}' outside the request, and it"
        f" {reason}: pass plain values (request.args['q'], the user id), or"
        " wrap the function with 'flask.copy_current_request_context'",
    )


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _target_reads(  # noqa: PLR0911 - one return per shape
    module: Module, flow: Flow, function: Function, target: ast.expr
) -> str | None:
    if isinstance(target, (ast.Lambda, ast.GeneratorExp)):
        own = module.own_context_nodes(target)
        for node in ast.walk(target):
            if id(node) in own:
                continue
            name = module.imports.proxy(node)
            if name is not None and isinstance(node, ast.expr):
                return f"reads '{name}' (line {node.lineno})"
            if isinstance(node, ast.Name) and node.id in flow.bound[function]:
                return f"uses '{node.id}' ({flow.bound[function][node.id]})"
        return None
    callee = module.resolve(target, function)
    if callee is None:
        return None
    if _decorated_copy(module, callee):
        return None
    read = reads_proxy(module, callee, _ALL)
    if read is not None:
        return f"reads '{read[0]}' (line {read[1]})"
    # A nested function that closes over the view's request objects.
    if callee.outer is function:
        bound = flow.bound[function]
        local = {
            n.id
            for n in callee.body
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        for node in callee.body:
            if (
                isinstance(node, ast.Name)
                and node.id in bound
                and node.id not in local
            ):
                return f"uses '{node.id}' ({bound[node.id]})"
    return None


def _is_copied(module: Module, function: Function, target: ast.expr) -> bool:
    if (
        isinstance(target, ast.Call)
        and module.imports.qualify(target.func) in _COPIERS
    ):
        return True
    # contextvars.copy_context().run, or ctx.run with ctx = copy_context()
    if isinstance(target, ast.Attribute) and target.attr == "run":
        owner = target.value
        if isinstance(owner, ast.Name):
            owner = assigned(function, owner.id) or owner
        return isinstance(owner, ast.Call) and module.imports.is_(
            owner.func, "contextvars.copy_context"
        )
    callee = module.resolve(target, function)
    return callee is not None and _decorated_copy(module, callee)


def _decorated_copy(module: Module, function: Function) -> bool:
    return any(
        module.imports.qualify(d) in _COPIERS
        for d in function.node.decorator_list
    )
