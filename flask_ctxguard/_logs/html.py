"""
The HTML report: ``report --format html``, one self-contained page.

`write_html` writes a summary table of the findings, worst first, then per
finding its timeline (``svg.py``), its sites, the fix and the full
text report. The page loads nothing (no script, font, image or style sheet
from anywhere) and says so in its Content-Security-Policy, so it works
offline and as a CI artifact, and nothing a log holds can run in it: every
text from a log is escaped by `esc`, and no attribute is built from it.
Past `MAX_DRAWN` findings, the rest are listed with their sites and fix
only, without a timeline or the full report, so the page stays small.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TextIO

from flask_ctxguard._core.docs_site import rule_url
from flask_ctxguard._core.violation import RULES
from flask_ctxguard._logs.event_report import iso
from flask_ctxguard._logs.findings import Finding, Findings
from flask_ctxguard._logs.svg import MAX_DRAWN_OCCURRENCES, esc, timeline_svg

__all__ = ["CSP", "MAX_DRAWN", "write_html"]

#: Findings drawn with a timeline; the others are listed.
MAX_DRAWN = 200

#: Nothing but the page's own inline style; no script at all.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; color: #222; margin: 0 auto;
  max-width: 1000px; padding: 1em 1.5em 4em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.2em; margin-top: 2.2em; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; }
th, td { text-align: left; padding: 0.3em 0.6em; vertical-align: top;
  border-bottom: 1px solid #e3e5e8; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, .site { font-family: ui-monospace, monospace; font-size: 0.9em; }
td.site { word-break: break-all; }
pre { background: #f6f7f9; padding: 0.8em; overflow-x: auto;
  white-space: pre-wrap; }
.finding { border-top: 2px solid #e3e5e8; }
figure { margin: 1em 0; overflow-x: auto; }
figcaption, .note { color: #555; font-size: 0.9em; }
dl { display: grid; grid-template-columns: max-content auto;
  gap: 0.2em 1em; } dt { font-weight: 600; } dd { margin: 0; }
"""


def write_html(
    findings: Findings, out: TextIO, *, max_drawn: int = MAX_DRAWN
) -> None:
    """
    Write the HTML report of *findings* to *out*.

    Args:
        findings: the findings read from the logs.
        out: where the page goes.
        max_drawn: how many findings, worst first, get a timeline.
    """
    for part in _page(findings, max_drawn):
        out.write(part)


def _page(findings: Findings, max_drawn: int) -> Iterator[str]:
    ordered = findings.ordered()
    counter = findings.counter
    title = f"flask_ctxguard report: {_plural(len(ordered), 'finding')}"
    yield (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n'
        '<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width">\n'
        f"<title>{esc(title)}</title>\n<style>{_STYLE}</style>\n"
        "</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n"
    )
    total = sum(finding.count for finding in ordered)
    yield (
        f'<p class="summary">{_plural(total, "occurrence")}, from'
        f" {_plural(counter.events, 'contamination event')}"
        f" ({_plural(counter.skipped, 'other line')} skipped).</p>\n"
    )
    if findings.sample_rates:
        rates = ", ".join(f"{r:g}" for r in sorted(findings.sample_rates))
        yield (
            f'<p class="note">Sampled: CTXGUARD_SAMPLE_RATE {esc(rates)}.'
            " Counts are of the sampled requests only; divide by the rate to"
            " estimate how often each bug happened.</p>\n"
        )
    if not ordered:
        yield "<p>No findings.</p>\n</body>\n</html>\n"
        return
    yield from _summary(ordered)
    if len(ordered) > max_drawn:
        yield (
            f'<p class="note limit">Timelines are drawn for the first'
            f" {max_drawn} findings; the other {len(ordered) - max_drawn}"
            " are listed without one.</p>\n"
        )
    for number, finding in enumerate(ordered, 1):
        yield from _finding(number, finding, drawn=number <= max_drawn)
    yield "</body>\n</html>\n"


def _summary(ordered: list[Finding]) -> Iterator[str]:
    yield (
        '<table class="findings">\n<thead><tr><th>#</th><th>count</th>'
        "<th>events</th><th>code</th><th>subject</th><th>set or kept at</th>"
        "<th>read at</th></tr></thead>\n<tbody>\n"
    )
    for number, finding in enumerate(ordered, 1):
        yield (
            f'<tr><td class="number"><a href="#finding-{number}">{number}'
            f'</a></td><td class="number">{finding.count}</td>'
            f'<td class="number">{finding.events}</td>'
            f"<td>{_code_link(finding.code)}</td>"
            f"<td><code>{esc(finding.subject)}</code></td>"
            f'<td class="site">{esc(finding.origin_site or "-")}</td>'
            f'<td class="site">{esc(finding.access_site or "-")}</td></tr>\n'
        )
    yield (
        "</tbody>\n</table>\n"
        '<p class="note">count: the highest <code>repeats</code> each'
        " process logged, summed over processes; a lower bound, as repeats"
        " are logged at the 1st, 2nd, 4th, 8th... occurrence.</p>\n"
    )


def _code_link(code: str) -> str:
    # The address comes from the code only if it is a known rule's; a
    # code read from a log is text, never part of an attribute.
    if code in RULES:
        return f'<a href="{rule_url(code)}">{code}</a>'
    return f"<code>{esc(code)}</code>"


def _finding(number: int, finding: Finding, *, drawn: bool) -> Iterator[str]:
    heading = (
        f"[{number}] {finding.code} {finding.kind} on '{finding.subject}'"
    )
    yield (
        f'<section class="finding" id="finding-{number}">\n'
        f"<h2>{esc(heading)}</h2>\n"
    )
    if drawn and finding.samples:
        shown = min(len(finding.samples), MAX_DRAWN_OCCURRENCES)
        yield (
            f"<figure>\n{timeline_svg(finding, title=heading)}\n"
            f"<figcaption>The first {_plural(shown, 'event')} of"
            f" {finding.events}: threads as lanes, requests as bars (method,"
            " path, request token), the dot where the value was set or kept,"
            " the arrow to where it was read. The axis is the order of"
            " events, with times from the first.</figcaption>\n</figure>\n"
        )
    first, last = iso(finding.first_seen), iso(finding.last_seen)
    rule = RULES.get(finding.code)
    rows = [
        ("set or kept at", finding.origin_site or "(unknown)"),
        ("read at", finding.access_site or "(unknown)"),
        ("times", f"{finding.count} in {_plural(finding.events, 'event')}"),
    ]
    if first is not None:
        rows.append(("seen", first if first == last else f"{first} to {last}"))
    if drawn:
        rows += [
            ("apps", _names(finding.apps)),
            ("origin endpoints", _names(finding.origin_endpoints)),
            ("accessor endpoints", _names(finding.accessor_endpoints)),
        ]
    yield "<dl>\n"
    for name, value in rows:
        yield f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>\n"
    hint = finding.example.get("hint")
    if not isinstance(hint, str) and rule is not None:
        hint = rule.hint
    if isinstance(hint, str):
        yield f"<dt>fix</dt><dd>{esc(hint)}</dd>\n"
    if rule is not None:
        url = rule_url(finding.code)
        yield f'<dt>docs</dt><dd><a href="{url}">{url}</a></dd>\n'
    yield "</dl>\n"
    # Past the limit, the sites and the fix only: the page stays small.
    if drawn:
        yield (
            "<details><summary>Full report</summary>"
            f"<pre>{esc_lines(finding.report())}</pre></details>\n"
        )
    yield "</section>\n"


def esc_lines(text: str) -> str:
    """*text* escaped line by line, its line breaks kept."""
    return "\n".join(esc(line) for line in text.split("\n"))


def _names(names: set[str]) -> str:
    return ", ".join(sorted(names)) or "-"


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")
