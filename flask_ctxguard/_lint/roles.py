"""
How Flask code says "run this in a request": the route decorators
(``route``, ``get``, ``post``...), the request hooks (``before_request``,
``teardown_request``...) and the class-based view bases; and how it opens
a context of its own (``app.app_context()``, ``ctx.push()``).
"""

from __future__ import annotations

import ast

__all__ = [
    "CONTEXT_MAKERS",
    "HOOKS",
    "VIEW_BASES",
    "decorator_role",
    "hook_role",
    "is_context_maker",
    "pushes_context",
]

ROUTES = frozenset({"route", "get", "post", "put", "delete", "patch"})
BEFORE = frozenset({"before_request", "before_app_request"})
AFTER = frozenset({"after_request", "after_app_request"})
TEARDOWN = frozenset(
    {"teardown_request", "teardown_app_request", "teardown_appcontext"}
)
OTHER_HOOKS = frozenset(
    {
        "errorhandler",
        "app_errorhandler",
        "register_error_handler",
        "context_processor",
        "app_context_processor",
        "url_value_preprocessor",
        "app_url_value_preprocessor",
        "url_defaults",
        "app_url_defaults",
    }
)
HOOKS = BEFORE | AFTER | TEARDOWN | OTHER_HOOKS
VIEW_BASES = frozenset(
    {
        "flask.views.View",
        "flask.views.MethodView",
        "flask_restful.Resource",
        "flask_restx.Resource",
        "flask_smorest.MethodView",
    }
)


def decorator_role(decorator: ast.expr) -> str:
    """
    The role a decorator gives: "view", "before", "after", "teardown",
    "hook", or "" for none.
    """
    call = decorator if isinstance(decorator, ast.Call) else None
    func = call.func if call is not None else decorator
    if not isinstance(func, ast.Attribute):
        return ""
    attr = func.attr
    if attr in ROUTES and call is not None:
        if attr == "route" or (
            call.args
            and isinstance(call.args[0], (ast.Constant, ast.JoinedStr))
            and _looks_like_rule(call.args[0])
        ):
            return "view"
        return ""
    if attr in HOOKS:
        return hook_role(attr)
    return ""


def _looks_like_rule(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str) and node.value.startswith("/")
    return True


def hook_role(attr: str) -> str:
    """The role of a hook registered through *attr*."""
    if attr in BEFORE:
        return "before"
    if attr in AFTER:
        return "after"
    if attr in TEARDOWN:
        return "teardown"
    return "hook"


#: Calls that open a context of their own: reads inside are not leaks.
CONTEXT_MAKERS = frozenset(
    {"app_context", "test_request_context", "request_context"}
)


def pushes_context(body: list[ast.AST]) -> bool:
    """Whether *body* pushes a context (``ctx.push()``) itself."""
    contexts = {
        target.id
        for node in body
        if isinstance(node, ast.Assign) and is_context_maker(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return any(
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "push"
        and (
            is_context_maker(node.func.value)
            or (
                isinstance(node.func.value, ast.Name)
                and node.func.value.id in contexts
            )
        )
        for node in body
    )


def is_context_maker(node: ast.AST) -> bool:
    """Whether *node* is ``x.app_context()``, ``x.test_request_context()``."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CONTEXT_MAKERS
    )
