"""
The ``report`` command's text output: a table of findings, then each one.

`write_text` prints the findings worst first: a table that fits a terminal
100 columns wide, with each finding's origin and access sites under its
row, then each finding in full (where and when it happened, the requests,
threads and sites it reached, and the report of its first occurrence).
Every logged text is escaped (`flask_ctxguard._core.escape.escape`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from flask_ctxguard._core.escape import escape
from flask_ctxguard._logs.event_report import iso
from flask_ctxguard._logs.findings import MAX_OCCURRENCES, Finding, Findings

__all__ = ["WIDTH", "format_findings", "write_text"]

#: The table fits a terminal this wide.
WIDTH = 100
# Items listed per line of a finding's details before "... and N more".
_LISTED = 6


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
    for line in table(ordered):
        out.write(line.rstrip() + "\n")
    out.write(
        "\ncount: the highest 'repeats' each process logged, summed over"
        " processes; a lower\nbound, as repeats are logged at the 1st, 2nd,"
        " 4th, 8th... occurrence.\n"
    )
    for number, finding in enumerate(ordered, 1):
        out.write("\n")
        for line in details(number, finding):
            out.write(line + "\n")


def table(ordered: list[Finding]) -> Iterator[str]:
    """
    The table of *ordered*: a row per finding, its origin and access sites
    on the two lines under it.
    """
    number_width = max(1, len(str(len(ordered))))
    count_width = max(len("count"), len(str(ordered[0].count)))
    events_width = max(len("events"), *(len(str(f.events)) for f in ordered))
    head = (
        f"{'#':>{number_width}}  {'count':>{count_width}}"
        f"  {'events':>{events_width}}  code   "
    )
    indent = " " * len(head)
    subject_width = WIDTH - len(head)
    site_width = WIDTH - len(indent) - len("origin: ")
    yield head + "subject / origin site / access site"
    for number, finding in enumerate(ordered, 1):
        yield (
            f"{number:>{number_width}}  {finding.count:>{count_width}}"
            f"  {finding.events:>{events_width}}"
            f"  {escape(finding.code)[:5]:<5}  "
            + _clip_end(escape(finding.subject), subject_width)
        )
        origin = escape(finding.origin_site or "-")
        yield f"{indent}origin: {_clip_start(origin, site_width)}"
        access = _access_sites(finding)
        yield f"{indent}access: {_clip_start(access, site_width)}"


def _access_sites(finding: Finding) -> str:
    sites = finding.access_sites
    if not sites:
        return escape(finding.access_site or "-")
    first = max(sites, key=lambda s: (sites[s], s == finding.access_site))
    more = len(sites) - 1
    shown = escape(first)
    return f"{shown} (+{more} more)" if more else shown


def details(number: int, finding: Finding) -> Iterator[str]:
    """The full text of one finding, numbered *number*."""
    by = (
        "origin site (where the value was set or kept)"
        if finding.origin_site
        else "access site (no origin site was logged)"
    )
    yield (
        f"[{number}] {escape(finding.code)} {escape(finding.kind)}"
        f" on '{escape(finding.subject)}':"
        f" {_plural(finding.count, 'time')} in"
        f" {_plural(finding.events, 'event')}"
    )
    yield f"    grouped by: {by}"
    first, last = iso(finding.first_seen), iso(finding.last_seen)
    if first is not None:
        seen = first if first == last else f"{first} to {last}"
        yield f"    seen: {seen}"
    yield f"    apps: {_names(finding.apps)}"
    yield f"    origin endpoints: {_names(finding.origin_endpoints)}"
    yield f"    accessor endpoints: {_names(finding.accessor_endpoints)}"
    yield f"    requests: {_requests(finding)}"
    yield f"    threads: {_counted(finding.threads)}"
    yield f"    access sites: {_counted(finding.access_sites)}"
    if finding.locations:
        where = ", ".join(escape(s) for s in finding.locations[:3])
        if finding.events > 3:
            where += f" ... ({_plural(finding.events, 'event')} in all)"
        yield f"    read at: {where}"
    elif finding.events > MAX_OCCURRENCES:
        yield f"    kept: the first {MAX_OCCURRENCES} occurrences"
    # The report escapes the logged text itself, keeping its own lines.
    for line in finding.report().split("\n"):
        yield "    " + line


def format_findings(findings: list[Finding]) -> str:
    """
    *findings* as a test's or ``hammer``'s report: each finding's first
    report once, then where else it happened.
    """
    blocks = []
    for finding in findings:
        lines = [finding.report()]
        if finding.events > 1:
            lines.append(
                f"  ({_plural(finding.events, 'occurrence')}; requests:"
                f" {_requests(finding)}; access sites:"
                f" {_counted(finding.access_sites)})"
            )
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _requests(finding: Finding) -> str:
    entries = sorted(
        finding.requests.items(), key=lambda i: (-i[1].events, i[0])
    )
    shown = []
    for name, entry in entries[:_LISTED]:
        methods = "/".join(sorted(entry.methods))
        text = f"{escape(name)}"
        if methods:
            text += f" ({escape(methods)})"
        text += f" x{entry.events}"
        paths = sorted(entry.paths, key=lambda p: (-entry.paths[p], p))
        if paths and (len(paths) > 1 or name.startswith("(")):
            text += ": " + ", ".join(escape(p) for p in paths[:3])
            if len(paths) > 3:
                text += ", ..."
        shown.append(text)
    if len(entries) > _LISTED:
        shown.append(f"... and {len(entries) - _LISTED} more")
    return "; ".join(shown) or "-"


def _counted(counts: dict[str, int]) -> str:
    ranked = sorted(counts, key=lambda i: (-counts[i], i))
    shown = [f"{escape(i)} x{counts[i]}" for i in ranked[:_LISTED]]
    if len(ranked) > _LISTED:
        shown.append(f"... and {len(ranked) - _LISTED} more")
    return ", ".join(shown) or "-"


def _names(names: set[str]) -> str:
    return ", ".join(escape(name) for name in sorted(names)) or "-"


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def _clip_end(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _clip_start(text: str, width: int) -> str:
    # The end of a site (file:line in function) says most.
    return text if len(text) <= width else "..." + text[-(width - 3) :]
