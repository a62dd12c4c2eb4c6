"""
CG205: a cache (``functools.lru_cache``/``cache``, Flask-Caching's
``memoize``/``cached``) over a function that reads the request or the
current user, so that every later request gets the first one's result.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.flow import Flow, reads_proxy
from flask_ctxguard._lint.scope import Module

__all__ = ["check_caches"]

_CACHES = frozenset({"functools.lru_cache", "functools.cache"})


def check_caches(module: Module, flow: Flow) -> Iterator[LintFinding]:
    """CG205: a cache over a function that reads the request."""
    del flow
    for function in module.functions:
        for decorator in function.node.decorator_list:
            kind = _cache_kind(module, decorator)
            if kind is None:
                continue
            wanted = (
                {"session", "g", "current_user"}
                if kind.endswith(".cached")
                else {"request", "session", "g", "current_user"}
            )
            read = reads_proxy(module, function, wanted)
            if read is None:
                continue
            name, line = read
            yield LintFinding(
                "CG205",
                decorator.lineno,
                max(1, decorator.col_offset),  # the '@'
                f"'@{kind}' caches '{function.name}()', which reads '{name}'"
                f" (line {line}): every later request, of any user, gets"
                " the first request's result; pass the key (the user id)"
                " as an argument, or cache per request on 'g'",
            )
            break


def _cache_kind(module: Module, decorator: ast.expr) -> str | None:
    call = decorator if isinstance(decorator, ast.Call) else None
    func = call.func if call is not None else decorator
    qualified = module.imports.qualify(func)
    if qualified in _CACHES:
        return qualified
    if (
        isinstance(func, ast.Attribute)
        and func.attr in {"memoize", "cached"}
        and isinstance(func.value, ast.Name)
        and _is_flask_cache(module, func.value.id)
    ):
        if func.attr == "cached" and call is not None:
            for keyword in call.keywords:
                if keyword.arg in {"unless", "make_cache_key", "source_check"}:
                    return None
                if keyword.arg == "key_prefix" and not isinstance(
                    keyword.value, ast.Constant
                ):
                    return None
        return f"{func.value.id}.{func.attr}"
    return None


def _is_flask_cache(module: Module, name: str) -> bool:
    value = module.globals.get(name)
    if isinstance(value, ast.Call):
        return module.imports.is_(value.func, "flask_caching.Cache")
    return "cache" in name.lower() and name in module.imports.aliases
