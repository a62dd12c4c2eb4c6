"""
Which files a lint run reads: the Python files under the given paths,
without virtual environments, caches, VCS folders and what the
``.gitignore`` files along the way exclude.

Inside a git repository (as git does), the ``.gitignore`` matcher reads
the ``.gitignore`` of each directory it walks and of the directories above
the path up to the repository's top, unless those exclude the path itself
(it was named on purpose); it understands plain names, ``*``/``?``/``[...]``
globs, ``**``, a leading or inner ``/`` anchoring a pattern to its
directory, a trailing ``/`` for directories and ``!`` re-inclusion. It
does not read ``.git/info/exclude`` or the global excludes file. A file
named on the command line is always read.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["GitIgnore", "python_files"]

#: Directories never walked into.
SKIPPED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".tox",
        ".nox",
        ".venv",
        "venv",
        ".eggs",
        "__pycache__",
        "node_modules",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        "site-packages",
        "build",
        "dist",
    }
)


class _Rule:
    __slots__ = ("base", "directory_only", "negated", "pattern")

    def __init__(self, base: Path, line: str) -> None:
        self.base = base
        self.negated = line.startswith("!")
        if self.negated:
            line = line[1:]
        self.directory_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        regex = _glob_to_regex(line)
        if not anchored:
            regex = f"(?:.*/)?{regex}"
        self.pattern = re.compile(f"{regex}(?:/.*)?$")

    def matches(self, relative: str, is_dir: bool) -> bool:
        match = self.pattern.match(relative)
        if match is None:
            return False
        if self.directory_only and not is_dir:
            # 'build/' matches the directory and so everything under it.
            return relative != match.group(0) or "/" in relative
        return True


def _glob_to_regex(glob: str) -> str:
    out = []
    index = 0
    while index < len(glob):
        char = glob[index]
        if glob.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if glob.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = glob.find("]", index)
            if end == -1:
                out.append(re.escape(char))
            else:
                out.append(fnmatch.translate(glob[index : end + 1])[4:-3])
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


class GitIgnore:
    """The ``.gitignore`` rules met so far, checked in order."""

    __slots__ = ("rules",)

    def __init__(self) -> None:
        self.rules: list[_Rule] = []

    def read(self, directory: Path) -> None:
        """Add the rules of *directory*'s ``.gitignore``, if any."""
        try:
            text = (directory / ".gitignore").read_text(
                encoding="utf-8", errors="replace"
            )
        except OSError:
            return
        for raw in text.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                self.rules.append(_Rule(directory, line))

    def ignores(self, path: Path, *, is_dir: bool) -> bool:
        """Whether the rules exclude *path*; the last matching rule wins."""
        ignored = False
        for rule in self.rules:
            try:
                relative = path.relative_to(rule.base).as_posix()
            except ValueError:
                continue
            if relative and rule.matches(relative, is_dir):
                ignored = not rule.negated
        return ignored


def _repository_top(start: Path) -> Path | None:
    for directory in (start, *start.parents):
        if (directory / ".git").exists():
            return directory
    return None


def python_files(
    paths: Sequence[str],
    *,
    exclude: Sequence[str] = (),
    gitignore: bool = True,
) -> Iterator[str]:
    """
    The Python files under *paths*, sorted within each directory.

    Raises:
        FileNotFoundError: A path does not exist.
    """
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(given)
        if path.is_file():
            yield given
            continue
        ignore = GitIgnore()
        # As git does, .gitignore files count inside a repository only.
        top = _repository_top(path.resolve()) if gitignore else None
        if top is not None:
            _read_above(path.resolve(), top, ignore)
        yield from _walk(path, ignore, exclude, gitignore=top is not None)


def _read_above(root: Path, top: Path, ignore: GitIgnore) -> None:
    """The rules of the repository above *root*, unless they exclude it."""
    for directory in reversed(root.parents):
        if directory == top or top in directory.parents:
            ignore.read(directory)
    if ignore.ignores(root, is_dir=True):
        # A directory named on the command line is read, even if ignored.
        ignore.rules.clear()
    ignore.read(root)


def _walk(
    root: Path, ignore: GitIgnore, exclude: Sequence[str], *, gitignore: bool
) -> Iterator[str]:
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        if gitignore and here != root:
            ignore.read(here)
        absolute = here.resolve()
        kept = []
        for name in sorted(dirs):
            if name in SKIPPED_DIRS or name.endswith(".egg-info"):
                continue
            if (here / name / "pyvenv.cfg").exists():
                continue  # a virtual environment under any name
            if _excluded(here / name, exclude) or ignore.ignores(
                absolute / name, is_dir=True
            ):
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(files):
            if not name.endswith((".py", ".pyi")) or name.endswith(".pyi"):
                continue
            if _excluded(here / name, exclude) or ignore.ignores(
                absolute / name, is_dir=False
            ):
                continue
            yield str(here / name)


def _excluded(path: Path, exclude: Sequence[str]) -> bool:
    text = path.as_posix()
    return any(
        fnmatch.fnmatch(text, pattern)
        or fnmatch.fnmatch(path.name, pattern)
        or fnmatch.fnmatch(text, f"*/{pattern}")
        for pattern in exclude
    )
