"""
The package's shape: layers without import cycles, rooms of a readable size.

Every import counts here, also those under ``if TYPE_CHECKING:`` and those
inside functions: a cycle that only type checkers or lazy imports follow
is still a cycle a reader has to untangle.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import flask_ctxguard

PACKAGE = Path(flask_ctxguard.__file__).parent
ROOT = Path(__file__).resolve().parent.parent
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


#: The layers, top down: a module may import from its own layer and the
#: layers below it, never from one above.
LAYERS = (
    ("flask_ctxguard", "flask_ctxguard.pytest_plugin", "flask_ctxguard._cli"),
    (
        "flask_ctxguard.testing",
        "flask_ctxguard._pytest",
        "flask_ctxguard._lint",
    ),
    (
        "flask_ctxguard._hammer",
        "flask_ctxguard._logs",
        "flask_ctxguard._terminal",
    ),
    ("flask_ctxguard._guard",),
    ("flask_ctxguard._rules",),
    ("flask_ctxguard._reporting",),
    ("flask_ctxguard._core", "flask_ctxguard.exceptions"),
)


def layer_of(module: str) -> int:
    """The index in `LAYERS` of *module*'s layer (the longest match)."""
    best, found = -1, -1
    for index, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(f"{prefix}.")) and len(
                prefix
            ) > best:
                best, found = len(prefix), index
    return found


def _fields_set_by(cls: type) -> set[str]:
    """The attributes *cls*'s own methods set on ``self``."""
    tree = ast.parse(inspect.getsource(cls))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.ctx, ast.Store)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
    }


class TestShape:
    def test_no_import_cycle(self):
        """No two package modules import each other, even through others,
        counting imports under TYPE_CHECKING and inside functions."""
        assert [] == cycles(import_graph())

    def test_imports_point_down_the_layers(self):
        """A module imports only from its own layer and the ones below."""
        upward = [
            f"{module} -> {target}"
            for module, targets in sorted(import_graph().items())
            for target in sorted(targets)
            if layer_of(target) < layer_of(module)
        ]

        assert [] == upward

    def test_every_module_is_in_a_layer(self):
        """A new module is placed in a layer, so the layering covers it."""
        assert [] == [m for m in package_modules() if layer_of(m) < 0]

    def test_no_module_over_400_lines(self):
        """Each module is one room a reader can hold in their head."""
        long = {
            name: count
            for name, path in package_modules().items()
            if (count := len(path.read_text("utf-8").splitlines())) > MAX_LINES
        }

        assert {} == long

    def test_violations_are_constructed_in_one_module(self):
        """Only the violation model's module calls Violation(...)."""
        callers = set()
        for name, path in package_modules().items():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "Violation"
                ):
                    callers.add(name)

        assert {"flask_ctxguard._core.violation"} == callers

    def test_request_records_change_only_through_their_methods(self):
        """No module outside _rules/records.py sets a field of a
        RequestRecord (a name holding one is called '...record...'), and
        none outside _guard/state.py sets a field of an AppState
        ('state'): each is changed where it is declared."""
        from flask_ctxguard._guard.state import AppState
        from flask_ctxguard._rules.records import RequestRecord

        owners = {
            "record": (
                "flask_ctxguard._rules.records",
                set(RequestRecord.__slots__),
            ),
            "state": ("flask_ctxguard._guard.state", _fields_set_by(AppState)),
        }
        writes = []
        for name, path in package_modules().items():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, (ast.AugAssign, ast.AnnAssign))
                    else []
                )
                for target in targets:
                    if not (
                        isinstance(target, ast.Attribute)
                        and isinstance(target.value, ast.Name)
                    ):
                        continue
                    for word, (home, fields) in owners.items():
                        if (
                            word in target.value.id
                            and target.attr in fields
                            and name != home
                        ):
                            writes.append(
                                f"{name}:{node.lineno}"
                                f" {target.value.id}.{target.attr}"
                            )

        assert [] == writes

    def test_architecture_page_lists_every_module(self):
        """docs/architecture.md names every module, so it cannot fall
        behind the code unnoticed."""
        page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
        unlisted = [
            str(path.relative_to(PACKAGE))
            for path in package_modules().values()
            if path.name != "__init__.py" or path.parent == PACKAGE
            if f"`{path.relative_to(PACKAGE)}`" not in page
        ]

        assert [] == unlisted

    def test_one_finding_type(self):
        """One class is called Finding: the report's, hammer's and the
        plugin's findings are all of it."""
        homes = [
            name
            for name, path in package_modules().items()
            for node in ast.walk(ast.parse(path.read_text("utf-8")))
            if isinstance(node, ast.ClassDef) and node.name == "Finding"
        ]

        assert ["flask_ctxguard._logs.findings"] == homes

    def test_no_tracker_numbers_in_code(self):
        """Comments and docstrings link what a reader can open, never an
        issue number of a tracker only the team has."""
        pattern = re.compile(r"\bissues? #?\d+\b|\(#\d+\)", re.IGNORECASE)
        found = [
            f"{name}:{number}"
            for name, path in package_modules().items()
            for number, line in enumerate(
                path.read_text("utf-8").splitlines(), 1
            )
            if pattern.search(line) and "github.com" not in line
        ]

        assert [] == found


if __name__ == "__main__":  # pragma: no cover - a tool for refactoring
    graph = import_graph()
    for component in cycles(graph):
        print("cycle:", " ".join(component))
    for name, path in package_modules().items():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            print("long:", name, lines)
