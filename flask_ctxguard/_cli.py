"""
The command line: ``python -m flask_ctxguard`` (or ``ctxguard``).

``report`` turns the logs of any number of workers into findings (reading
them is ``_logs``'s), ``explain`` prints a rule's page, ``lint`` is
``_lint``'s. Exit statuses follow linters: 0 nothing found, 1 findings, 2
usage error, unreadable input or an event line that cannot be read, each
error on one line of standard error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.resources
import json
import os
import re
import sys
from collections.abc import Iterator, Sequence
from typing import IO, TextIO

from flask_ctxguard import _lint
from flask_ctxguard._core.commands import (
    EXIT_CLEAN,
    EXIT_FOUND,
    EXIT_USAGE,
    Parser,
    UsageError,
    installed_version,
    reader_gone,
)
from flask_ctxguard._core.docs_site import DOCS_URL, rule_url
from flask_ctxguard._core.escape import escape
from flask_ctxguard._core.violation import RULES, Rule
from flask_ctxguard._logs.events import UnreadableEventError
from flask_ctxguard._logs.findings import Findings
from flask_ctxguard._logs.html import write_html
from flask_ctxguard._logs.text_report import write_text
from flask_ctxguard._terminal import render_rule

__all__ = ["main", "rule_page"]


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = Parser(
        prog=prog,
        description=(
            "Catch request-context contamination in Flask: tools for"
            " flask_ctxguard's logs and rules."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"%(prog)s {installed_version() or '(not installed)'}",
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=Parser
    )
    report = commands.add_parser(
        "report",
        help="group 'contamination' events of logs into findings",
        description=(
            "Read logs (plain or gzipped; files, or standard input for '-'"
            " or no file), keep flask_ctxguard's 'contamination' events"
            " (JSON lines, also after a shipper's prefix or in a pipeline's"
            " 'log' or 'message' field; structlog's console, key=value and"
            " logfmt renderings; standard logging lines around any of"
            " them) and group them into findings, one per root cause:"
            " code, subject and the site that set or kept the value (the"
            " access site where none is logged), worst first. Exit 0 when"
            " there is no finding, 1 when there is, 2 on a usage error, an"
            " unreadable file, or an event line it cannot read."
        ),
    )
    report.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help=(
            "'text' (default): a table and each finding's report; 'json':"
            " one object (schema in docs/logs.md); 'html': one"
            " self-contained page with a timeline per finding"
        ),
    )
    report.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the report to FILE instead of standard output",
    )
    report.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="log files, plain or .gz; '-' or none: standard input",
    )
    commands.add_parser("lint", help="check Python source (rules CG2xx)")
    explain = commands.add_parser(
        "explain",
        help="print a rule's documentation, such as 'explain CG106'",
        description=(
            "Print the documentation of a rule: what it means, why it is"
            " harmful, an example, the fix and how to allow it. Without a"
            " code, list the rules."
        ),
    )
    explain.add_argument(
        "rule",
        nargs="?",
        metavar="CODE",
        help="a code such as CG106, or its slug such as contextvar-leak",
    )
    return parser


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """
    Run the command line with *argv* (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, 1 or 2.
    """
    if prog is None:
        prog = _prog_name()
    stdout = _safe_stream(sys.stdout)
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["lint"]:  # it parses its own options
        return _lint.main(arguments[1:], prog=f"{prog} lint")
    parser = _parser(prog)
    try:
        args = parser.parse_args(arguments)
        if args.command == "report":
            return _report(args.files, args.format, stdout, args.output)
        if args.command == "explain":
            return _explain(args.rule, stdout)
        parser.print_help(stdout)
    except UsageError as error:
        command = f"{prog} {args.command}" if "args" in locals() else prog
        sys.stderr.write(f"{command}: error: {error}\n")
    return EXIT_USAGE


def _prog_name() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv else ""
    if name in {"__main__.py", "-m", "-c", ""}:
        return "python -m flask_ctxguard"
    return name


def _safe_stream(stream: TextIO) -> TextIO:
    # A terminal that cannot show a character of a logged path gets an
    # escape, not a UnicodeEncodeError.
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="backslashreplace")
    return stream


# -- report -------------------------------------------------------------------


def _report(
    files: Sequence[str], output: str, out: TextIO, path: str | None = None
) -> int:
    findings = Findings()
    if not files:
        if sys.stdin is None or sys.stdin.isatty():
            msg = (
                "no input: name JSON log files, or pipe logs in"
                " ('... | ctxguard report' or 'report -')"
            )
            raise UsageError(msg)
        files = ["-"]
    for name in files:
        with _opened(name) as stream:
            try:
                findings.read(stream, name)
            except (OSError, EOFError) as error:
                raise UsageError(_unreadable(name, error)) from None
            except UnreadableEventError as error:
                raise UsageError(_unparsable(name, error)) from None
    status = EXIT_FOUND if findings.ordered() else EXIT_CLEAN
    write = {"json": _write_json, "html": write_html}.get(output, write_text)
    if path is not None:
        try:
            # As on standard output: a character that cannot be written
            # (a lone surrogate from a log) becomes an escape.
            with open(
                path, "w", encoding="utf-8", errors="backslashreplace"
            ) as file:
                write(findings, file)
        except OSError as error:
            raise UsageError(_unreadable(path, error, "write")) from None
        return status
    try:
        write(findings, out)
        out.flush()
    except BrokenPipeError:
        reader_gone()
    return status


def _write_json(findings: Findings, out: TextIO) -> None:
    # ASCII: valid JSON whatever the encoding of standard output. One
    # write: the object is bounded (see MAX_OCCURRENCES), and json.dump's
    # many small writes cost more than its parsing.
    out.write(json.dumps(findings.to_dict()) + "\n")


@contextlib.contextmanager
def _opened(name: str) -> Iterator[IO[bytes]]:
    if name == "-":
        yield sys.stdin.buffer
        return
    try:
        stream = open(name, "rb")  # noqa: SIM115 - closed below
    except OSError as error:
        raise UsageError(_unreadable(name, error)) from None
    with stream:
        yield stream


def _unparsable(name: str, error: UnreadableEventError) -> str:
    shown = "standard input" if name == "-" else name
    return (
        f"{escape(shown)}:{error.line}: cannot read this contamination"
        f" event: {escape(error.reason)}; a report without it would be"
        " wrong (see the formats read in 'report --help')"
    )


def _unreadable(name: str, error: BaseException, verb: str = "read") -> str:
    shown = "standard input" if name == "-" else repr(name)
    reason = getattr(error, "strerror", None) or str(error) or f"{verb} error"
    return f"cannot {verb} {escape(shown)}: {escape(reason)}"


# -- explain ------------------------------------------------------------------

_HEADING = re.compile(r"^## (\S+)", re.MULTILINE)


def _all_rules() -> dict[str, tuple[str, str]]:
    # The runtime rules and the static ones, by code: (slug, title).
    rules: dict[str, Rule | _lint.LintRule] = {**RULES, **_lint.LINT_RULES}
    return {code: (rule.kind, rule.title) for code, rule in rules.items()}


def _explain(rule: str | None, out: TextIO) -> int:
    if rule is None:
        rules = _all_rules()
        width = max(len(kind) for kind, _ in rules.values())
        for code, (kind, title) in sorted(rules.items()):
            out.write(f"{code}  {kind:<{width}}  {title}\n")
        out.write(
            "\nRun 'explain CODE' for a rule's page; all rules:"
            f" {DOCS_URL}rules.html\n"
        )
        return EXIT_CLEAN
    code = _code_of(rule)
    # Colour for a terminal only, and never against NO_COLOR (no-color.org).
    color = out.isatty() and not os.environ.get("NO_COLOR")
    out.write(render_rule(rule_page(code), code, color=color))
    out.write(f"\nOnline: {rule_url(code)}\n")
    return EXIT_CLEAN


def _code_of(rule: str) -> str:
    wanted = rule.strip()
    rules = _all_rules()
    for code, (kind, _) in rules.items():
        if wanted.upper() == code or wanted.lower() == kind:
            return code
    known_codes = ", ".join(sorted(rules))
    msg = f"unknown rule {escape(wanted)!r}; the rules are {known_codes}"
    raise UsageError(msg)


def rule_page(code: str) -> str:
    """
    The section of *code* in the rules page shipped with the package.

    The package's ``rules.md`` is ``docs/rules.md`` itself (a symbolic
    link in the repository, a plain file in the wheel): one text for the
    terminal and the docs.
    """
    text: str = (
        importlib.resources.files("flask_ctxguard")
        .joinpath("rules.md")
        .read_text(encoding="utf-8")
    )
    starts = list(_HEADING.finditer(text))
    for index, heading in enumerate(starts):
        if heading.group(1) == code:
            end = (
                starts[index + 1].start()
                if index + 1 < len(starts)
                else len(text)
            )
            return text[heading.start() : end].rstrip() + "\n"
    # Every code has a section: tests/test_explain.py checks it.
    raise AssertionError(code)  # pragma: no cover
