"""
CG207: a module global, a module's or class's attribute, a fixed slot of a
module-level container or an attribute of an object created at import,
assigned request data in request code.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.flow import (
    Flow,
    contextvars_of,
    globals_declared,
    local_names,
    thread_locals_of,
)
from flask_ctxguard._lint.scope import Function, Module

__all__ = ["check_globals"]


def check_globals(module: Module, flow: Flow) -> Iterator[LintFinding]:
    """CG207: module globals (re)assigned request data in request code."""
    if module.is_test:
        # A test's views that note request data in module globals do so
        # for the test's asserts: the app is the test's own.
        return
    shared = _shared_objects(module)
    for function in module.request_functions():
        declared = globals_declared(function)
        for node in function.body:
            if not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            if node.value is None or not flow.is_data(node.value, function):
                continue
            if flow.is_raw(node.value, function):
                continue  # CG201's
            targets = (
                node.targets if isinstance(node, ast.Assign) else [node.target]
            )
            for target in targets:
                where = _global_target(
                    module, target, declared, function
                ) or _shared_slot(target, shared, function)
                if where is not None:
                    yield LintFinding(
                        "CG207",
                        node.lineno,
                        node.col_offset + 1,
                        f"{where} is assigned request data in request code:"
                        " every request and thread of the process sees the"
                        " last request's value; keep it in 'g', the"
                        " session or a per-user store instead",
                    )
                    break


def _shared_objects(module: Module) -> set[str]:
    """
    Module-level names of objects and containers shared by every request
    (not thread-locals, ContextVars or proxies, which are per thread or
    per request).
    """
    per_thread = thread_locals_of(module) | contextvars_of(module)
    shared = set()
    for name, value in module.globals.items():
        if name in per_thread:
            continue
        if isinstance(value, (ast.Dict, ast.List)):
            shared.add(name)
        elif isinstance(value, ast.Call):
            called = module.imports.qualify(value.func) or ""
            if not called.startswith("werkzeug.local"):
                shared.add(name)
    return shared


def _shared_slot(
    target: ast.AST, shared: set[str], function: Function
) -> str | None:
    """
    A fixed slot of a shared object: 'STATE["user"]', 'state.user', and
    the app's configuration: 'app.config["X"]', 'current_app.config["X"]'.
    """
    owner = (
        target.value
        if isinstance(target, (ast.Subscript, ast.Attribute))
        else None
    )
    if (
        isinstance(target, ast.Subscript)
        and isinstance(owner, ast.Attribute)
        and owner.attr == "config"
        and isinstance(owner.value, ast.Name)
        and (owner.value.id in shared or owner.value.id == "current_app")
        and isinstance(target.slice, ast.Constant)
    ):
        return f"the app's configuration '{ast.unparse(target)}'"
    if not isinstance(owner, ast.Name) or owner.id not in shared:
        return None
    if owner.id in local_names(function):
        return None
    if isinstance(target, ast.Subscript):
        key = target.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return (
                f"the fixed slot '{owner.id}[{key.value!r}]' of a"
                " module-level object"
            )
        return None
    assert isinstance(target, ast.Attribute)
    return (
        f"the attribute '{owner.id}.{target.attr}' of an object created at"
        " import"
    )


def _global_target(
    module: Module, target: ast.AST, declared: set[str], function: Function
) -> str | None:
    if isinstance(target, ast.Name) and target.id in declared:
        return f"the module global '{target.id}' (declared 'global')"
    if isinstance(target, ast.Attribute) and isinstance(
        target.value, ast.Name
    ):
        owner = target.value.id
        if owner in local_names(function):
            return None
        if module.imports.imports_module(owner):
            return f"the module attribute '{owner}.{target.attr}'"
        if owner in module.classes:
            return f"the class attribute '{owner}.{target.attr}'"
    return None
