"""
Per-thread state that a request sets and the next request on the thread
inherits: CG203 (``ContextVar.set`` and structlog's ``bind_contextvars``
without a reset) and CG204 (a module-level ``threading.local`` or
Werkzeug ``Local`` written with request data and never reset).

A reset can live in another module (a ``teardown_request`` in the app
factory), so findings name the facts that would clear them ("reset:var",
"clear:structlog"), and `facts` lists the facts each module provides.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.flow import (
    Flow,
    contextvars_of,
    local_names,
    thread_locals_of,
)
from flask_ctxguard._lint.names import call_name, last_name
from flask_ctxguard._lint.scope import Function, Module

__all__ = ["check_contextvars", "check_thread_locals", "facts"]

_BIND = frozenset(
    {"structlog.contextvars.bind_contextvars", "structlog.contextvars.bind"}
)
_CLEAR = "structlog.contextvars.clear_contextvars"
_UNDO = frozenset(
    {
        "structlog.contextvars.clear_contextvars",
        "structlog.contextvars.reset_contextvars",
        "structlog.contextvars.unbind_contextvars",
    }
)
#: Roles of functions that run at every request's start or end.
_EVERY_REQUEST = frozenset({"before", "after", "teardown"})


def _is_hookish(function: Function, connected: set[str]) -> bool:
    """Runs for every request: a hook, a WSGI middleware, a signal handler."""
    if function.role in _EVERY_REQUEST or function.name == "__call__":
        return True
    return function.name in connected or any(
        call_name(d) in {"connect", "connect_via"}
        for d in function.node.decorator_list
    )


def _connected(module: Module) -> set[str]:
    return {
        node.args[0].id
        for node in module.nodes
        if isinstance(node, ast.Call)
        and call_name(node) == "connect"
        and node.args
        and isinstance(node.args[0], ast.Name)
    }


def facts(module: Module) -> set[str]:  # noqa: PLR0912 - one per fact
    """What this module does for every request, for every module's sake."""
    provided = {f"contextvar:{name}" for name in contextvars_of(module)}
    for node in module.nodes:
        if isinstance(node, ast.Call) and call_name(node) in {
            "LocalManager",
            "release_local",
        }:
            for argument in ast.walk(node):
                name = last_name(argument)
                if name is not None:
                    provided.add(f"reset:{name}")
    connected = _connected(module)
    for function in module.functions:
        if not _is_hookish(function, connected):
            continue
        for node in function.body:
            if isinstance(node, ast.Call):
                undo = module.imports.qualify(node.func)
                if undo == _CLEAR:
                    provided.add("clear:structlog")
                elif undo in _UNDO:
                    provided.add("reset:structlog")
                if call_name(node) == "reset":
                    provided.add("reset:*")
                if isinstance(node.func, ast.Attribute) and node.func.attr in {
                    "set",
                    "reset",
                    "clear",
                }:
                    name = last_name(node.func.value)
                    if node.func.attr == "clear" and name == "__dict__":
                        owner = node.func.value
                        assert isinstance(owner, ast.Attribute)
                        name = last_name(owner.value)
                    if name is not None:
                        provided.add(f"reset:{name}")
            targets: list[ast.expr] = []
            if isinstance(node, (ast.Assign, ast.Delete)):
                targets = node.targets
            for target in targets:
                if isinstance(target, ast.Attribute):
                    name = last_name(target.value)
                    if name is not None:
                        provided.add(f"reset:{name}")
    return provided


def _finally_nodes(function: Function) -> set[int]:
    inside: set[int] = set()
    for node in function.body:
        if isinstance(node, ast.Try):
            for statement in node.finalbody:
                inside.update(id(n) for n in ast.walk(statement))
    return inside


def _every_request(function: Function, node: ast.AST) -> bool:
    """An unconditional statement at the start of a before_request hook."""
    if function.role != "before":
        return False
    for statement in function.node.body:
        if any(n is node for n in ast.walk(statement)):
            return not isinstance(
                statement, (ast.If, ast.For, ast.While, ast.Try, ast.With)
            )
        if any(isinstance(n, ast.Return) for n in ast.walk(statement)):
            return False
    return False


def check_contextvars(module: Module, flow: Flow) -> Iterator[LintFinding]:
    """CG203 over every request function of *module*."""
    del flow
    variables = contextvars_of(module)
    for function in module.request_functions():
        if function.role in {"after", "teardown"}:
            continue
        finals = _finally_nodes(function)
        calls = [n for n in function.body if isinstance(n, ast.Call)]
        dropped = {
            id(n.value) for n in function.body if isinstance(n, ast.Expr)
        }
        local = local_names(function)
        for call in calls:
            if _every_request(function, call):
                continue
            if module.imports.qualify(call.func) in _BIND:
                finding = _bind(module, function, call, calls, finals)
            else:
                finding = _set(
                    module,
                    call,
                    calls,
                    finals=finals,
                    variables=variables,
                    local=local,
                )
            if finding is not None and id(call) not in dropped:
                # The token is kept: a reset elsewhere may use it.
                kept = (
                    "reset:structlog"
                    if "clear:structlog" in finding.unless
                    else "reset:*"
                )
                finding = dataclasses.replace(
                    finding, unless=finding.unless | {kept}
                )
            if finding is not None:
                yield finding


def _set(
    module: Module,
    call: ast.Call,
    calls: list[ast.Call],
    *,
    finals: set[int],
    variables: set[str],
    local: set[str],
) -> LintFinding | None:
    func = call.func
    if not (
        isinstance(func, ast.Attribute)
        and func.attr == "set"
        and len(call.args) == 1
        and not call.keywords
    ):
        return None
    name = last_name(func.value)
    if name is None:
        return None
    requires: frozenset[str] = frozenset()
    if isinstance(func.value, ast.Name) and name in local:
        return None
    if not (isinstance(func.value, ast.Name) and name in variables):
        owner = func.value
        imported = (
            isinstance(owner, ast.Name) and owner.id in module.imports.aliases
        ) or (
            isinstance(owner, ast.Attribute)
            and isinstance(owner.value, ast.Name)
            and module.imports.imports_module(owner.value.id)
        )
        if not imported:
            return None
        requires = frozenset({f"contextvar:{name}"})
    resets = [
        c
        for c in calls
        if isinstance(c.func, ast.Attribute)
        and c.func.attr == "reset"
        and last_name(c.func.value) == name
    ]
    if any(id(c) in finals for c in resets):
        return None
    if resets:
        shape = (
            f"'{name}.set()' is reset at line {resets[0].lineno}, but not in"
            " a 'finally': an exception or 'abort()' skips the reset and the"
            " value stays on the thread for its next request; reset it in a"
            " 'finally' or a teardown_request function"
        )
    else:
        shape = (
            f"'{name}.set()' in request code is never reset: the value stays"
            " on the server thread for its next request; keep the token and"
            f" call '{name}.reset(token)' in a 'finally' or a"
            " teardown_request function"
        )
    return LintFinding(
        "CG203",
        call.lineno,
        call.col_offset + 1,
        shape,
        unless=frozenset({f"reset:{name}"}),
        requires=requires,
    )


def _bind(
    module: Module,
    function: Function,
    call: ast.Call,
    calls: list[ast.Call],
    finals: set[int],
) -> LintFinding | None:
    undo = [c for c in calls if module.imports.qualify(c.func) in _UNDO]
    for other in undo:
        if id(other) in finals:
            return None
        if module.imports.qualify(other.func) == _CLEAR and (
            other.lineno,
            other.col_offset,
        ) < (call.lineno, call.col_offset):
            return None
    del function
    later = [c for c in undo if c.lineno > call.lineno]
    if later:
        shape = (
            "'bind_contextvars()' is undone at line"
            f" {later[0].lineno}, but not in a 'finally': an exception or"
            " 'abort()' skips it and the binding stays on the thread for its"
            " next request; use 'with bound_contextvars(...):'"
        )
    else:
        shape = (
            "'bind_contextvars()' in request code, and no"
            " 'clear_contextvars()' at the start of every request: the"
            " binding stays on the server thread and is logged by its next"
            " request; clear in a before_request function, or use"
            " 'with bound_contextvars(...):'"
        )
    return LintFinding(
        "CG203",
        call.lineno,
        call.col_offset + 1,
        shape,
        unless=frozenset({"clear:structlog"}),
    )


def check_thread_locals(module: Module, flow: Flow) -> Iterator[LintFinding]:
    """CG204 over every request function of *module*."""
    names = thread_locals_of(module)
    if not names:
        return
    for function in module.request_functions():
        if function.role in {"after", "teardown"}:
            continue
        local = local_names(function)
        finals = _finally_nodes(function)
        reset_here = {
            last_name(t.value)
            for n in function.body
            if id(n) in finals and isinstance(n, (ast.Assign, ast.Delete))
            for t in n.targets
            if isinstance(t, ast.Attribute)
        }
        for node in function.body:
            written = _written_local(node, names, local)
            if written is None or written in reset_here:
                continue
            value = node.value if isinstance(node, ast.Assign) else None
            if isinstance(node, ast.Call):
                value = node.args[2] if len(node.args) > 2 else None
            if value is None or not flow.is_data(value, function):
                continue
            if _every_request(function, node):
                continue
            assert isinstance(node, (ast.stmt, ast.expr))
            yield LintFinding(
                "CG204",
                node.lineno,
                node.col_offset + 1,
                f"the module-level thread-local '{written}' is written with"
                " request data and never reset: a pooled server thread shows"
                " it to the next user it serves; keep it in 'g', the session"
                " or the database, or reset it in a teardown_request"
                " function",
                unless=frozenset({f"reset:{written}"}),
            )


def _written_local(
    node: ast.AST, names: set[str], local: set[str]
) -> str | None:
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "setattr"
        and node.args
    ):
        targets = [ast.Attribute(value=node.args[0], attr="?")]
    for target in targets:
        if (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id in names
            and target.value.id not in local
        ):
            return target.value.id
    return None
