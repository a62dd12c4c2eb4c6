"""
The package's shape: layers without import cycles, rooms of a readable size.

Every import counts here, also those under ``if TYPE_CHECKING:`` and those
inside functions: a cycle that only type checkers or lazy imports follow
is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flask_ctxguard

PACKAGE = Path(flask_ctxguard.__file__).parent
MAX_LINES = 400


def module_name(path: Path) -> str:
    """The dotted name of a package file."""
    parts = [
        "flask_ctxguard",
        *path.relative_to(PACKAGE).with_suffix("").parts,
    ]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    """Every module of the package by its dotted name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported(
    node: ast.AST, here: str, is_package: bool, modules: set[str]
) -> list[str]:
    # As grimp (import-linter) reads imports: ``from a import b`` imports
    # the module a.b where there is one, else the module a.
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    if node.level:
        base = here.split(".")
        if not is_package:
            base.pop()
        base = base[: len(base) - (node.level - 1)]
        module = ".".join([*base, *([node.module] if node.module else [])])
    else:
        module = node.module or ""
    return [
        f"{module}.{alias.name}"
        if f"{module}.{alias.name}" in modules
        else module
        for alias in node.names
    ]


def import_graph() -> dict[str, set[str]]:
    """Which package modules each package module imports, in any way."""
    modules = package_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_package = path.name == "__init__.py"
        graph[name] = {
            target
            for node in ast.walk(tree)
            for target in _imported(node, name, is_package, set(modules))
            if target in modules and target != name
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


if __name__ == "__main__":  # pragma: no cover - a tool for refactoring
    graph = import_graph()
    for component in cycles(graph):
        print("cycle:", " ".join(component))
    for name, path in package_modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            print("long:", name, lines)
