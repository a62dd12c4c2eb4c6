"""
``python -m flask_ctxguard lint``: static rules (CG2xx) for the shapes of
request-context contamination in Python source.

Built on the standard library's `ast`: it imports nothing of the code it
reads and runs none of it. `main` is the command; `check_source` checks
one text (for tests and editors); `LINT_RULES` is the rule table.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

from flask_ctxguard._core.commands import (
    EXIT_CLEAN,
    EXIT_FOUND,
    EXIT_USAGE,
    Parser,
    UsageError,
    installed_version,
    reader_gone,
)
from flask_ctxguard._lint.catalog import LINT_RULES, LintFinding, LintRule
from flask_ctxguard._lint.config import (
    ConfigError,
    LintConfig,
    find_pyproject,
    load_config,
)
from flask_ctxguard._lint.files import python_files
from flask_ctxguard._lint.output import FORMATS, write_report
from flask_ctxguard._lint.runner import check_paths, check_source

__all__ = ["LINT_RULES", "LintFinding", "LintRule", "check_source", "main"]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description=(
            "Check Python source for the shapes of request-context"
            " contamination (rules CG201-CG207), without importing or"
            " running it. Exit 0 when clean, 1 with findings, 2 on a usage"
            " error. Settings: [tool.flask_ctxguard.lint] in the nearest"
            " pyproject.toml."
        ),
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="files or directories to check (default: '.')",
    )
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="'text' (default): path:line:col: CODE message; 'json'; 'sarif'",
    )
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="CODES",
        help="only these codes or prefixes, comma-separated (CG201,CG203)",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="CODES",
        help="leave out these codes or prefixes, comma-separated",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="also skip paths matching this glob (repeatable)",
    )
    parser.add_argument(
        "--flask-version",
        default="",
        metavar="X.Y",
        help=(
            "the Flask the checked code runs on (default: the installed"
            " one); on 3.2 and later test-client requests never share a"
            " pushed context's g, so CG206 leaves that shape out"
        ),
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the report to FILE instead of standard output",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=0,
        metavar="N",
        help="processes to use (default: one per CPU for large trees)",
    )
    return parser


def main(argv: Sequence[str], prog: str = "flask_ctxguard lint") -> int:
    """
    Run ``lint`` with *argv* (the arguments after ``lint``).

    Returns:
        The exit status: 0 clean, 1 findings, 2 usage error.
    """
    try:
        args = _parser(prog).parse_args(list(argv))
        return _lint(args)
    except UsageError as error:
        sys.stderr.write(f"{prog}: error: {error}\n")
        return EXIT_USAGE


def _lint(args: argparse.Namespace) -> int:
    paths: list[str] = args.paths or ["."]
    try:
        config = load_config(find_pyproject(Path(paths[0])))
    except ConfigError as error:
        raise UsageError(str(error)) from None
    select = _codes(args.select, "--select") or _codes(
        list(config.select), f"'select' in {config.source}"
    )
    ignore = _codes(args.ignore, "--ignore") + _codes(
        list(config.ignore), f"'ignore' in {config.source}"
    )
    shares_g = _shares_g(args.flask_version, config)
    if args.jobs < 0:
        msg = f"--jobs must be 0 or more; got {args.jobs}"
        raise UsageError(msg)
    try:
        files = list(
            python_files(
                paths,
                exclude=[*config.exclude, *args.exclude],
                gitignore=config.respect_gitignore,
            )
        )
    except FileNotFoundError as error:
        msg = f"no such file or directory: {error.args[0]!r}"
        raise UsageError(msg) from None
    run = check_paths(files, args.jobs)
    findings = sorted(
        (
            f
            for f in run.findings
            if _wanted(f.code, select, ignore) and (shares_g or not f.shared_g)
        ),
        key=lambda f: (f.path, f.line, f.column, f.code),
    )
    for path, message in run.errors:
        sys.stderr.write(f"{path}: cannot parse, skipped: {message}\n")
    try:
        with _opened(args.output) as out:
            write_report(
                findings,
                out,
                args.format,
                files=run.files,
                errors=run.errors,
                version=installed_version() or "",
            )
            out.flush()
    except BrokenPipeError:
        reader_gone()
    if findings:
        return EXIT_FOUND
    if run.errors and not run.files:
        return EXIT_USAGE
    return EXIT_CLEAN


def _codes(values: Sequence[str], where: str) -> list[str]:
    codes = [
        part.strip().upper()
        for value in values
        for part in value.split(",")
        if part.strip()
    ]
    for code in codes:
        if not any(known.startswith(code) for known in LINT_RULES):
            msg = (
                f"{where}: unknown code {code!r}; the codes are "
                + ", ".join(sorted(LINT_RULES))
            )
            raise UsageError(msg)
    return codes


def _shares_g(given: str, config: LintConfig) -> bool:
    """
    Whether test-client requests in one pushed app context share its ``g``
    in the Flask the code runs on: the option's, the configuration's or the
    installed one's version below 3.2, or no version known.
    """
    if given:
        version, where = given, "--flask-version"
    elif config.flask_version:
        version = config.flask_version
        where = f"'flask-version' in {config.source}"
    else:
        version, where = installed_version("flask") or "", ""
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    if match is None:
        if where:
            msg = (
                f"{where}: a Flask version looks like '3.1' or '3.2.0';"
                f" got {version!r}"
            )
            raise UsageError(msg)
        return True
    return (int(match[1]), int(match[2])) < (3, 2)


def _wanted(code: str, select: list[str], ignore: list[str]) -> bool:
    if select and not any(code.startswith(s) for s in select):
        return False
    return not any(code.startswith(i) for i in ignore)


@contextlib.contextmanager
def _opened(path: str | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    try:
        stream = open(path, "w", encoding="utf-8")  # noqa: SIM115
    except OSError as error:
        msg = f"cannot write {path!r}: {error.strerror or error}"
        raise UsageError(msg) from None
    with stream:
        yield stream
