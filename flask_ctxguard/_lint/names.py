"""
Names as a module imports them: which local name is ``flask.request``,
``threading.Thread`` or ``functools.lru_cache``.

Resolution is syntactic: ``from flask import request as req`` makes ``req``
the dotted name ``flask.request``, ``import flask`` makes ``flask.g`` what
it says. Names bound by assignment are not followed here (see ``scope``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

__all__ = ["PROXIES", "Imports", "call_name", "last_name"]

#: The request-bound proxies, by every dotted name they are imported as,
#: mapped to the name a message shows.
PROXIES: dict[str, str] = {
    "flask.request": "request",
    "flask.globals.request": "request",
    "flask.session": "session",
    "flask.globals.session": "session",
    "flask.g": "g",
    "flask.globals.g": "g",
    "flask_login.current_user": "current_user",
    "flask_login.utils.current_user": "current_user",
}


class Imports:
    """
    The import aliases of one module, at any depth (an import inside a
    function counts for the whole module: a slight over-approximation).
    """

    __slots__ = ("aliases",)

    def __init__(self, nodes: Iterable[ast.AST]) -> None:
        self.aliases: dict[str, str] = {}
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname is not None:
                        self.aliases[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".", 1)[0]
                        self.aliases[top] = top
            elif isinstance(node, ast.ImportFrom):
                base = "." * node.level + (node.module or "")
                for alias in node.names:
                    if alias.name == "*":
                        continue
                    local = alias.asname or alias.name
                    self.aliases[local] = f"{base}.{alias.name}".lstrip(".")
                    if node.level:
                        # Relative: kept distinct from absolute names.
                        self.aliases[local] = "." + self.aliases[local]

    def qualify(self, node: ast.AST) -> str | None:
        """The dotted name *node* stands for, if it starts with an import."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        base = self.aliases.get(node.id)
        if base is None:
            return None
        parts.append(base)
        return ".".join(reversed(parts))

    def is_(self, node: ast.AST, *names: str) -> bool:
        """Whether *node* is one of the dotted *names*."""
        return self.qualify(node) in names

    def proxy(self, node: ast.AST) -> str | None:
        """
        ``"request"``, ``"session"``, ``"g"`` or ``"current_user"`` when
        *node* is that proxy, else `None`.
        """
        if not isinstance(node, (ast.Name, ast.Attribute)):
            return None
        name = self.qualify(node)
        return None if name is None else PROXIES.get(name)

    def imports_module(self, local: str) -> bool:
        """Whether *local* was bound by a plain ``import``."""
        target = self.aliases.get(local)
        return target is not None and "." not in target.lstrip(".")


def call_name(node: ast.AST) -> str | None:
    """The attribute or name a call's function ends with: ``x.y.z()``->z."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None


def last_name(node: ast.AST) -> str | None:
    """The last identifier of a name or attribute chain."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return None
