"""
The command line: ``python -m flask_ctxguard`` (or ``ctxguard``).

``report`` turns the JSON logs of any number of workers into findings,
``explain`` prints a rule's page, ``lint`` is ``_lint``'s. Exit statuses
follow linters: 0 nothing
found, 1 findings, 2 usage error or unreadable input, each error on one
line of standard error.
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
from typing import IO, NoReturn, TextIO

from . import _lint
from ._findings import Finding, Findings, iso, printable
from ._violations import RULES, Rule

__all__ = ["main", "rule_page"]

EXIT_CLEAN = 0
EXIT_FOUND = 1
EXIT_USAGE = 2

#: The table fits a terminal this wide.
WIDTH = 100
_SUBJECT_WIDTH = 30


class UsageError(Exception):
    """A mistake on the command line or an unreadable input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of the command.
        msg = f"{message}; see '{self.prog} --help'"
        raise UsageError(msg)


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description=(
            "Catch request-context contamination in Flask: tools for"
            " flask_ctxguard's logs and rules."
        ),
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version()}"
    )
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    report = commands.add_parser(
        "report",
        help="group 'contamination' events of JSON logs into findings",
        description=(
            "Read JSON lines (plain or gzipped; files, or standard input"
            " for '-' or no file), keep flask_ctxguard's 'contamination'"
            " events, also when nested in a pipeline's 'log' or 'message'"
            " field, and group them by code, subject and sites, worst"
            " first. Exit 0 when there is no finding, 1 when there is, 2 on"
            " a usage error or an unreadable file."
        ),
    )
    report.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help=(
            "'text' (default): a table and each finding's report; 'json':"
            " one object (schema in docs/logs.md)"
        ),
    )
    report.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="JSON log files, plain or .gz; '-' or none: standard input",
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
            return _report(args.files, args.format, stdout)
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


def _version() -> str:
    try:
        return importlib.metadata.version("flask-ctxguard")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "(not installed)"


def _safe_stream(stream: TextIO) -> TextIO:
    # A terminal that cannot show a character of a logged path gets an
    # escape, not a UnicodeEncodeError.
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="backslashreplace")
    return stream


# -- report -------------------------------------------------------------------


def _report(files: Sequence[str], output: str, out: TextIO) -> int:
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
                findings.read(stream)
            except (OSError, EOFError) as error:
                raise UsageError(_unreadable(name, error)) from None
    status = EXIT_FOUND if findings.ordered() else EXIT_CLEAN
    try:
        if output == "json":
            # ASCII: valid JSON whatever the encoding of standard output.
            json.dump(findings.to_dict(), out)
            out.write("\n")
        else:
            write_text(findings, out)
        out.flush()
    except BrokenPipeError:
        # The reader went away ('| head'): not an error of ours. Point
        # stdout at devnull so the interpreter's final flush is quiet.
        devnull = os.open(os.devnull, os.O_WRONLY)
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return status


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


def _unreadable(name: str, error: BaseException) -> str:
    shown = "standard input" if name == "-" else repr(name)
    reason = getattr(error, "strerror", None) or str(error) or "read error"
    return f"cannot read {printable(shown)}: {printable(reason)}"


def write_text(findings: Findings, out: TextIO) -> None:
    """
    The human report: a table of findings, worst first, then each one's
    details and full report.
    """
    ordered = findings.ordered()
    counter = findings.counter
    events = _plural(counter.events, "contamination event")
    skipped = _plural(counter.skipped, "other line")
    if not ordered:
        out.write(f"No findings: {events}, {skipped} skipped.\n")
        return
    total = sum(finding.count for finding in ordered)
    out.write(
        f"{_plural(len(ordered), 'finding')},"
        f" {_plural(total, 'occurrence')},"
        f" from {events} ({skipped} skipped).\n\n"
    )
    if findings.sample_rates:
        rates = ", ".join(f"{r:g}" for r in sorted(findings.sample_rates))
        out.write(
            f"Sampled: CTXGUARD_SAMPLE_RATE {rates}. Counts are of the"
            " sampled requests only;\ndivide by the rate to estimate how"
            " often each bug happened.\n\n"
        )
    for line in _table(ordered):
        out.write(line.rstrip() + "\n")
    out.write(
        "\ncount: the highest 'repeats' each process logged, summed over"
        " processes; a lower\nbound, as repeats are logged at the 1st, 2nd,"
        " 4th, 8th... occurrence.\n"
    )
    for number, finding in enumerate(ordered, 1):
        out.write("\n")
        for line in _details(number, finding):
            out.write(line + "\n")


def _table(ordered: list[Finding]) -> Iterator[str]:
    subjects = [printable(finding.subject) for finding in ordered]
    sites = [printable(finding.access_site or "-") for finding in ordered]
    number_width = max(1, len(str(len(ordered))))
    count_width = max(len("count"), len(str(ordered[0].count)))
    events_width = max(len("events"), *(len(str(f.events)) for f in ordered))
    fixed = number_width + count_width + events_width + 17
    # The subject gets what the longest site leaves, within bounds.
    subject_width = min(
        max(len("subject"), *map(len, subjects)),
        max(_SUBJECT_WIDTH, WIDTH - fixed - max(map(len, sites))),
    )
    head = (
        f"{'#':>{number_width}}  {'count':>{count_width}}"
        f"  {'events':>{events_width}}  code   "
        f"{'subject':<{subject_width}}  "
    )
    site_width = max(16, WIDTH - len(head))
    yield head + "access site"
    for number, (finding, subject, site) in enumerate(
        zip(ordered, subjects, sites, strict=True), 1
    ):
        yield (
            f"{number:>{number_width}}  {finding.count:>{count_width}}"
            f"  {finding.events:>{events_width}}"
            f"  {printable(finding.code)[:5]:<5}  "
            f"{_clip_end(subject, subject_width):<{subject_width}}  "
            f"{_clip_start(site, site_width)}"
        )


def _details(number: int, finding: Finding) -> Iterator[str]:
    yield (
        f"[{number}] {printable(finding.code)} {printable(finding.kind)}"
        f" on '{printable(finding.subject)}':"
        f" {_plural(finding.count, 'time')} in"
        f" {_plural(finding.events, 'event')}"
    )
    first, last = iso(finding.first_seen), iso(finding.last_seen)
    if first is not None:
        seen = first if first == last else f"{first} to {last}"
        yield f"    seen: {seen}"
    yield f"    apps: {_names(finding.apps)}"
    yield f"    origin endpoints: {_names(finding.origin_endpoints)}"
    yield f"    accessor endpoints: {_names(finding.accessor_endpoints)}"
    # The report escapes the logged text itself, keeping its own lines.
    for line in finding.report().split("\n"):
        yield "    " + line


def _names(names: set[str]) -> str:
    return ", ".join(printable(name) for name in sorted(names)) or "-"


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _clip_end(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _clip_start(text: str, width: int) -> str:
    # The end of a site (file:line in function) says most.
    return text if len(text) <= width else "..." + text[-(width - 3) :]


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
            f" {_rules_url()}\n"
        )
        return EXIT_CLEAN
    code = _code_of(rule)
    out.write(rule_page(code))
    out.write(f"\nOnline: {_rules_url()}#{code.lower()}\n")
    return EXIT_CLEAN


def _code_of(rule: str) -> str:
    wanted = rule.strip()
    rules = _all_rules()
    for code, (kind, _) in rules.items():
        if wanted.upper() == code or wanted.lower() == kind:
            return code
    known_codes = ", ".join(sorted(rules))
    msg = f"unknown rule {printable(wanted)!r}; the rules are {known_codes}"
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


def _rules_url() -> str:
    # From the package metadata, so the URL is written once (pyproject).
    try:
        urls = importlib.metadata.metadata("flask-ctxguard").get_all(
            "Project-URL"
        )
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        urls = None
    for entry in urls or ():
        label, _, url = str(entry).partition(",")
        if label.strip().lower() == "rules":
            return url.strip()
    return "docs/rules.md"  # pragma: no cover
