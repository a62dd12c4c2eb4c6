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

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.flow import Flow, reads_proxy
from flask_ctxguard._lint.scope import Function, Module
from flask_ctxguard._lint.starts import (
    Start,
    assigned,
    find_start,
    streamed,
    unawaited_calls,
)

__all__ = ["check_threads", "handoff_facts"]

_ALL = {"request", "session", "g", "current_user"}
_COPIERS = frozenset(
    {
        "flask.copy_current_request_context",
        "flask.ctx.copy_current_request_context",
        "flask.stream_with_context",
        "flask.helpers.stream_with_context",
    }
)


def check_threads(module: Module, flow: Flow) -> Iterator[LintFinding]:
    """CG202 over every request function of *module*."""
    for function in module.request_functions():
        loose = unawaited_calls(function)
        for node in function.body:
            if (
                isinstance(node, ast.Return)
                and function.role == "view"
                and isinstance(node.value, ast.Call)
            ):
                # A view may return the generator itself (Flask streams it).
                start = streamed(module, function, node.value, node.value)
            elif isinstance(node, ast.Call):
                start = find_start(module, function, node, loose)
            else:
                continue
            if start is None:
                continue
            finding = _judge(module, flow, function, start)
            if finding is not None:
                yield dataclasses.replace(
                    finding, requires=start.requires, unless=start.unless
                )
        yield from _handed_to_other_modules(module, flow, function)


def handoff_facts(module: Module, flow: Flow) -> set[str]:
    """
    What the module's functions do with work that leaves the request, for
    callers in other modules: "hands-off:F:N" (function F passes its
    parameter N, by position or name, to such work) and "leaves:F" (F
    starts work that reads the request's proxies).
    """
    found = set()
    for function in module.functions:
        if function.outer is not None or function.cls is not None:
            continue
        args = function.node.args
        parameters = [a.arg for a in (*args.posonlyargs, *args.args)]
        loose = unawaited_calls(function)
        for node in function.body:
            if not isinstance(node, ast.Call):
                continue
            start = find_start(module, function, node, loose)
            target = (
                None if start is None else _target(module, function, start)
            )
            if start is None or target is None:
                continue
            for argument in start.args:
                if (
                    isinstance(argument, ast.Name)
                    and argument.id in parameters
                ):
                    index = parameters.index(argument.id)
                    found.add(f"hands-off:{function.name}:{index}")
                    found.add(f"hands-off:{function.name}:{argument.id}")
            reads = _target_reads(module, flow, function, target)
            if reads is not None and reads.startswith("reads"):
                found.add(f"leaves:{function.name}")
    return found


def _handed_to_other_modules(
    module: Module, flow: Flow, function: Function
) -> Iterator[LintFinding]:
    """Calls of another module's function that takes the work outside."""
    for node in function.body:
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in module.imports.aliases
            and module.resolve(node.func, function) is None
        ):
            continue
        name = node.func.id
        given = [(str(i), a) for i, a in enumerate(node.args)]
        given += [(k.arg, k.value) for k in node.keywords if k.arg]
        for key, argument in given:
            found = flow.describe(argument, function)
            if found is not None:
                yield LintFinding(
                    "CG202",
                    node.lineno,
                    node.col_offset + 1,
                    f"'{found}' is handed to '{name}()', which passes it to"
                    " work that runs outside the request: pass plain values"
                    " (request.args['q'], the user id), or wrap that work"
                    " with 'flask.copy_current_request_context'",
                    requires=frozenset({f"hands-off:{name}:{key}"}),
                )
        yield LintFinding(
            "CG202",
            node.lineno,
            node.col_offset + 1,
            f"'{name}()' starts work that runs outside the request and reads"
            " the request's objects there: pass it plain values, or wrap"
            " that work with 'flask.copy_current_request_context'",
            requires=frozenset({f"leaves:{name}"}),
        )


def _target(
    module: Module, function: Function, start: Start
) -> ast.expr | None:
    """The function *start* runs, unwrapped from ``functools.partial``;
    `None` when it runs in a copied context."""
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
    return target


def _judge(
    module: Module, flow: Flow, function: Function, start: Start
) -> LintFinding | None:
    target = _target(module, function, start)
    if target is None:
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
            return LintFinding(
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
        return LintFinding(
            "CG202",
            start.node.lineno,
            start.node.col_offset + 1,
            f"a streamed response's generator '{_short(shown)}' {reason}; it"
            " runs after the view returned, outside the request: wrap it"
            " with 'flask.stream_with_context', or read the values before"
            " streaming",
        )
    return LintFinding(
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
        # Evaluated at once, in the request: a lambda's defaults and a
        # generator expression's first iterable.
        eager = (
            target.args
            if isinstance(target, ast.Lambda)
            else target.generators[0].iter
        )
        skip = {id(n) for n in ast.walk(eager)}
        for node in ast.walk(target):
            if id(node) in own or id(node) in skip:
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
