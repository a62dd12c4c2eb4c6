"""
Helpers: check a snippet of source as one module, or a tree of files as
one run, and list what was found.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from flask_ctxguard._lint.runner import check_paths, check_source, settle


def found(source: str, *, name: str = "app.py") -> list[tuple[int, str]]:
    """(line, code) of every finding in *source*, its own facts settled."""
    result = check_source(textwrap.dedent(source), name)
    assert "" == result.error
    facts = settle(result.facts)
    return [
        (finding.line, finding.code)
        for finding in result.findings
        if not finding.unless & facts and finding.requires <= facts
    ]


def messages(source: str) -> list[str]:
    """The messages of every finding in *source*."""
    result = check_source(textwrap.dedent(source), "app.py")
    facts = settle(result.facts)
    return [
        finding.message
        for finding in result.findings
        if not finding.unless & facts and finding.requires <= facts
    ]


def found_in_tree(
    root: Path, files: dict[str, str]
) -> list[tuple[str, int, str]]:
    """Write *files* under *root* and check them as one run."""
    paths = []
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        paths.append(str(path))
    run = check_paths(sorted(paths), jobs=1)
    return sorted(
        (Path(f.path).relative_to(root).as_posix(), f.line, f.code)
        for f in run.findings
    )


def marked(source: str) -> list[tuple[int, str]]:
    """(line, code) of each line of *source* marked ``# <- CODE``."""
    expected = []
    for number, line in enumerate(textwrap.dedent(source).splitlines(), 1):
        if "# <- " in line:
            expected.append((number, line.rsplit("# <- ", 1)[1].strip()))
    return expected
