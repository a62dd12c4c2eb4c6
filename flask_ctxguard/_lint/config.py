"""
The ``[tool.flask_ctxguard.lint]`` table of the nearest ``pyproject.toml``.

Keys: ``select`` and ``ignore`` (lists of codes or code prefixes, like
``"CG20"``), ``exclude`` (glob patterns of paths to skip),
``respect-gitignore`` (default true) and ``flask-version`` (the Flask the
project runs on, like ``"3.2"``; default: the installed one). Read with
`tomllib` (Python 3.11+) or ``tomli`` when installed; on Python 3.10
without ``tomli`` a small reader takes the table's plain keys, strings,
booleans and string lists.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path
from typing import Any

__all__ = ["ConfigError", "LintConfig", "find_pyproject", "load_config"]

_KEYS = frozenset(
    {"select", "ignore", "exclude", "respect-gitignore", "flask-version"}
)


class ConfigError(Exception):
    """The configuration cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True, slots=True)
class LintConfig:
    """The settings of a lint run."""

    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    respect_gitignore: bool = True
    #: The Flask version the project runs on, as written, or "".
    flask_version: str = ""
    #: Where the settings came from, or "".
    source: str = ""


def find_pyproject(start: Path) -> Path | None:
    """The nearest ``pyproject.toml`` in *start* or a directory above it."""
    start = start.resolve()
    if start.is_file():
        start = start.parent
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(pyproject: Path | None) -> LintConfig:
    """
    The settings of *pyproject*'s table (defaults without one).

    Raises:
        ConfigError: The file does not parse, or a key or value is wrong.
    """
    if pyproject is None:
        return LintConfig()
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError as error:
        msg = f"cannot read {pyproject}: {error.strerror or error}"
        raise ConfigError(msg) from None
    table = _table(text, pyproject)
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        msg = (
            f"{pyproject}: unknown key {unknown[0]!r} in"
            " [tool.flask_ctxguard.lint]; the keys are "
            + ", ".join(sorted(_KEYS))
        )
        raise ConfigError(msg)
    gitignore = table.get("respect-gitignore", True)
    if not isinstance(gitignore, bool):
        msg = f"{pyproject}: 'respect-gitignore' must be true or false"
        raise ConfigError(msg)
    flask_version = table.get("flask-version", "")
    if not isinstance(flask_version, str):
        msg = f"{pyproject}: 'flask-version' must be a string, like \"3.2\""
        raise ConfigError(msg)
    return LintConfig(
        select=_strings(table, "select", pyproject),
        ignore=_strings(table, "ignore", pyproject),
        exclude=_strings(table, "exclude", pyproject),
        respect_gitignore=gitignore,
        flask_version=flask_version,
        source=str(pyproject),
    )


def _strings(table: dict[str, Any], key: str, path: Path) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(item, str) for item in value
    ):
        msg = f"{path}: {key!r} must be a list of strings"
        raise ConfigError(msg)
    return tuple(value)


def _table(text: str, path: Path) -> dict[str, Any]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
        except ModuleNotFoundError:
            return _small_table(text, path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        msg = f"{path} does not parse: {error}"
        raise ConfigError(msg) from None
    table = data.get("tool", {}).get("flask_ctxguard", {}).get("lint", {})
    if not isinstance(table, dict):
        msg = f"{path}: [tool.flask_ctxguard.lint] must be a table"
        raise ConfigError(msg)
    return table


_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def _small_table(text: str, path: Path) -> dict[str, Any]:
    """The table's keys, read without a TOML library (Python 3.10)."""
    table: dict[str, Any] = {}
    inside = False
    pending = ""
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header is not None and not pending:
            inside = header.group(1).strip() == "tool.flask_ctxguard.lint"
            continue
        if not inside:
            continue
        pending += (
            " " + line.split("#", 1)[0] if "=" in line or pending else ""
        )
        if not pending.strip():
            continue
        if pending.count("[") > pending.count("]"):
            continue
        key, _, value = pending.partition("=")
        pending = ""
        literal = value.strip()
        literal = {"true": "True", "false": "False"}.get(literal, literal)
        try:
            table[key.strip().strip('"')] = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            msg = f"{path}: cannot read {key.strip()!r} (install 'tomli')"
            raise ConfigError(msg) from None
    return table
