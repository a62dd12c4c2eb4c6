"""
Write the local intersphinx inventories (``<name>.inv``) from ``<name>.txt``.

The docs build has no network, so it cannot download each project's
``objects.inv``; these files hold only the targets the docs reference, with
their real addresses. Each line of ``<name>.txt`` is::

    <name> <domain>:<role> <address relative to the project's docs root>

Run ``python docs/_inventories/build.py`` after editing a list.
"""

from __future__ import annotations

import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECTS = {
    "python": ("Python", "3"),
    "flask": ("Flask", "stable"),
    "werkzeug": ("Werkzeug", "stable"),
    "structlog": ("structlog", "stable"),
    "pytest": ("pytest", "stable"),
    "blinker": ("Blinker", "stable"),
}


def inventory(project: str, version: str, lines: list[str]) -> bytes:
    """An ``objects.inv`` (version 2) holding *lines*."""
    entries = []
    for line in lines:
        name, role, address = line.split()
        entries.append(f"{name} {role} 1 {address} -\n")
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        f"# Version: {version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    return header.encode() + zlib.compress("".join(entries).encode())


def main() -> None:
    """Write every inventory."""
    for name, (project, version) in PROJECTS.items():
        source = HERE / f"{name}.txt"
        lines = [
            line
            for line in source.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        (HERE / f"{name}.inv").write_bytes(
            inventory(project, version, sorted(lines))
        )


if __name__ == "__main__":
    main()
