"""
Running the rules: one source text into findings (with ``# noqa``
applied), and many files, in parallel when there are many, into one
run with the project-wide facts settled.
"""

from __future__ import annotations

import ast
import concurrent.futures
import dataclasses
import multiprocessing
import os
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

from flask_ctxguard._lint.caches import check_caches
from flask_ctxguard._lint.catalog import LintFinding
from flask_ctxguard._lint.contexts import check_contexts, context_facts
from flask_ctxguard._lint.flow import Flow
from flask_ctxguard._lint.module_globals import check_globals
from flask_ctxguard._lint.perthread import (
    check_contextvars,
    check_thread_locals,
    facts,
)
from flask_ctxguard._lint.scope import Module
from flask_ctxguard._lint.starts import executor_facts
from flask_ctxguard._lint.storage import check_stored
from flask_ctxguard._lint.threads import check_threads, handoff_facts

__all__ = ["FileResult", "Run", "check_paths", "check_source", "settle"]

Check = Callable[[Module, Flow], Iterator[LintFinding]]
CHECKS: tuple[Check, ...] = (
    check_stored,
    check_threads,
    check_contextvars,
    check_thread_locals,
    check_caches,
    check_contexts,
    check_globals,
)
_NOQA = re.compile(
    r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?",
    re.IGNORECASE,
)
_LINE_BREAKS = re.compile(r"\r\n|\r|\n")
#: Below this many files, a process pool costs more than it saves.
PARALLEL_FROM = 64


@dataclasses.dataclass(frozen=True, slots=True)
class FileResult:
    """What checking one file gave."""

    path: str
    findings: tuple[LintFinding, ...] = ()
    facts: frozenset[str] = frozenset()
    lines: int = 0
    #: Why the file could not be checked, or "".
    error: str = ""


@dataclasses.dataclass(frozen=True, slots=True)
class Run:
    """Every file of one run: the findings left after the facts."""

    findings: tuple[LintFinding, ...]
    errors: tuple[tuple[str, str], ...]
    files: int
    lines: int


def check_source(source: str | bytes, path: str = "<source>") -> FileResult:
    """Check one module's source text; a syntax error is the result's error."""
    try:
        tree = ast.parse(source, filename=path)
    except (SyntaxError, ValueError, UnicodeDecodeError) as error:
        line = getattr(error, "lineno", None)
        where = f" (line {line})" if line else ""
        return FileResult(
            path, error=f"{type(error).__name__}: {_first_line(error)}{where}"
        )
    except RecursionError:
        return FileResult(path, error="too deeply nested to parse")
    name = os.path.basename(path)
    module = Module(
        tree,
        is_test=name.startswith("test_")
        or name.endswith("_test.py")
        or name == "conftest.py",
    )
    flow = Flow(module)
    text = (
        source.decode("utf-8", "replace")
        if isinstance(source, bytes)
        else source
    )
    # As Python counts lines: not at form feeds, as str.splitlines() would.
    lines = _LINE_BREAKS.split(text)
    findings: dict[tuple[int, str, frozenset[str]], LintFinding] = {}
    for check in CHECKS:
        for finding in check(module, flow):
            key = (finding.line, finding.code, finding.requires)
            if key in findings or _suppressed(lines, finding):
                continue
            findings[key] = dataclasses.replace(
                finding,
                path=path,
                column=_characters(lines, finding.line, finding.column),
            )
    return FileResult(
        path,
        tuple(sorted(findings.values(), key=lambda f: (f.line, f.column))),
        frozenset(
            facts(module)
            | context_facts(module)
            | executor_facts(module)
            | handoff_facts(module, flow)
        ),
        len(lines),
    )


def _characters(lines: list[str], line: int, column: int) -> int:
    """
    The 1-based character column of a 1-based UTF-8 byte column: `ast`
    counts bytes, editors and SARIF count characters.
    """
    if not 0 < line <= len(lines):
        return column
    encoded = lines[line - 1].encode("utf-8")
    return len(encoded[: column - 1].decode("utf-8", "replace")) + 1


def _first_line(error: BaseException) -> str:
    text = getattr(error, "msg", None) or str(error)
    return str(text).splitlines()[0] if text else type(error).__name__


def _suppressed(lines: list[str], finding: LintFinding) -> bool:
    if not 0 < finding.line <= len(lines):
        return False
    match = _NOQA.search(lines[finding.line - 1])
    if match is None:
        return False
    codes = match.group("codes")
    if codes is None:
        return True
    return finding.code in re.split(r"[\s,]+", codes.upper())


def check_file(path: str) -> FileResult:
    """Check the file at *path*."""
    try:
        source = Path(path).read_bytes()
    except OSError as error:
        return FileResult(path, error=error.strerror or str(error))
    return check_source(source, path)


def check_paths(files: Sequence[str], jobs: int = 0) -> Run:
    """
    Check *files*; *jobs* processes (0: one per CPU when there are many
    files, 1: in this process).
    """
    workers = jobs or min(os.cpu_count() or 1, 8)
    if workers > 1 and len(files) >= (PARALLEL_FROM if not jobs else 2):
        results = _in_pool(files, workers)
    else:
        results = [check_file(path) for path in files]
    provided = settle(fact for result in results for fact in result.facts)
    findings: dict[tuple[str, int, str], LintFinding] = {}
    for result in results:
        for finding in result.findings:
            if finding.unless & provided or not finding.requires <= provided:
                continue
            findings.setdefault(
                (finding.path, finding.line, finding.code), finding
            )
    return Run(
        tuple(findings.values()),
        tuple((r.path, r.error) for r in results if r.error),
        sum(1 for r in results if not r.error),
        sum(r.lines for r in results),
    )


def settle(facts: Iterable[str]) -> set[str]:
    """
    The facts of a run, with the implications among them ("implies:A->B":
    B holds if A does) followed to the end.
    """
    provided = set(facts)
    rules = [
        fact.removeprefix("implies:").split("->", 1)
        for fact in provided
        if fact.startswith("implies:")
    ]
    grew = True
    while grew:
        grew = False
        for given, then in rules:
            if given in provided and then not in provided:
                provided.add(then)
                grew = True
    return provided


def _in_pool(files: Sequence[str], workers: int) -> list[FileResult]:
    # 'spawn' (not 'fork'): the caller may have threads, and forking them
    # is unsafe (Python 3.12 warns about it).
    context = multiprocessing.get_context("spawn")
    chunk = max(1, len(files) // (workers * 4))
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context
    ) as pool:
        return list(pool.map(check_file, files, chunksize=chunk))
