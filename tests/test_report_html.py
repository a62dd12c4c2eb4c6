"""
``report --format html``: one self-contained page, a timeline per finding,
every text from the log escaped.
"""

from __future__ import annotations

import html.parser
import io
import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request

from flask_ctxguard import CtxGuard, _cli
from flask_ctxguard._core.docs_site import DOCS_URL, resolve_link, rule_url
from flask_ctxguard._logs.findings import MAX_SAMPLES, Findings
from flask_ctxguard._logs.html import CSP, write_html

HOSTILE_PATHS = [
    "/<script>document.title='pwned'</script>",
    "/x\" onerror=\"document.title='pwned'",
    "/<img src=x onerror=document.body.appendChild("
    "document.createElement('pwned'))>",
    "/</text></svg><script>document.title='pwned'</script>",
]


def side(token: str, path: str = "/notes", **extra: Any) -> dict[str, Any]:
    """One side (origin or accessor) of an event, as the guard logs it."""
    return {
        "token": token,
        "method": "GET",
        "path": path,
        "endpoint": "notes.show",
        "thread": extra.pop("thread", "worker-1"),
        "thread_id": 1,
        "started": extra.pop("started", 1795639973.5),
        **extra,
    }


def event(code: str = "CG103", **fields: Any) -> dict[str, Any]:
    """A ``contamination`` event; *fields* replace the defaults."""
    return {
        "event": "contamination",
        "code": code,
        "kind": "cross-request-access",
        "subject": "request",
        "message": "'request' was used.",
        "origin": side("aaaa0001-1"),
        "accessor": side("aaaa0001-2", started=1795639973.6),
        "origin_site": "app/views.py:10 in show",
        "access_site": "app/views.py:12 in show",
        "hint": "never share request objects.",
        "docs": "docs/rules.md#cg103",
        "app": "notes",
        "timestamp": "2026-11-25T20:52:53.700000Z",
        **fields,
    }


def page_of(*events: dict[str, Any], **options: Any) -> str:
    """The HTML report of *events*."""
    findings = Findings()
    for one in events:
        findings.add(one)
    out = io.StringIO()
    write_html(findings, out, **options)
    return out.getvalue()


class Elements(html.parser.HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def classes(self, name: str) -> list[dict[str, str | None]]:
        """The elements whose class list holds *name*."""
        return [
            attrs
            for _, attrs in self.tags
            if name in (attrs.get("class") or "").split()
        ]


class TestPage:
    def test_page_is_self_contained(self):
        """The page loads nothing: no script, style sheet, font or image."""
        page = page_of(event())

        elements = Elements(page)
        tags = {tag for tag, _ in elements.tags}
        assert set() == tags & {"script", "link", "img", "iframe", "object"}
        sources = [a for _, a in elements.tags if "src" in a or "srcset" in a]
        assert [] == sources
        hrefs = {a["href"] for _, a in elements.tags if "href" in a}
        assert {"#finding-1", rule_url("CG103")} == hrefs
        assert "@import" not in page
        assert "url(" not in page

    def test_content_security_policy_forbids_scripts(self):
        """A CSP meta tag allows the inline style and nothing else."""
        page = page_of(event())

        metas = [a for t, a in Elements(page).tags if t == "meta"]
        policies = [
            a["content"]
            for a in metas
            if a.get("http-equiv") == "Content-Security-Policy"
        ]
        assert [CSP] == policies
        assert (
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
            == CSP
        )

    def test_timeline_has_lanes_bars_and_an_arrow(self):
        """A crossing between threads draws two lanes, two bars, an arrow."""
        page = page_of(
            event(
                "CG104",
                origin=side("aaaa0001-1", thread="worker-1"),
                accessor=side("aaaa0001-2", thread="worker-2"),
            )
        )

        elements = Elements(page)
        assert 1 == len(elements.classes("timeline"))
        assert 2 == len(elements.classes("lane"))
        assert 2 == len(elements.classes("bar"))
        assert 1 == len(elements.classes("origin-site"))
        assert 1 == len(elements.classes("arrow"))
        assert "GET /notes · aaaa0001-1" in page
        assert "worker-2" in page

    def test_same_thread_crossing_is_one_lane(self):
        """Two requests on one thread share a lane; the arrow arcs along it."""
        page = page_of(event())

        elements = Elements(page)
        assert 1 == len(elements.classes("lane"))
        assert 2 == len(elements.classes("bar"))
        assert 1 == len(elements.classes("arrow"))

    def test_access_outside_a_request_is_a_mark_on_its_thread(self):
        """An access outside any request is marked on its own thread's lane."""
        page = page_of(
            event("CG102", accessor={"thread": "Thread-3 (late)"}),
        )

        elements = Elements(page)
        assert 2 == len(elements.classes("lane"))
        assert 1 == len(elements.classes("bar"))
        assert 1 == len(elements.classes("access-outside"))
        assert 1 == len(elements.classes("arrow"))
        assert "Thread-3 (late)" in page

    def test_no_origin_draws_no_arrow(self):
        """An event without an origin (CG105) has no arrow to draw."""
        page = page_of(
            event(
                "CG105",
                subject="app context",
                origin=None,
                origin_site=None,
                accessor={"thread": "MainThread"},
                timestamp=None,
            )
        )

        elements = Elements(page)
        assert [] == elements.classes("arrow")
        assert 1 == len(elements.classes("access-outside"))
        assert ">?</text>" in page
        assert "set or kept at: " not in page
        assert "read at: app/views.py:12 in show" in page

    def test_occurrences_of_one_finding_share_a_figure(self):
        """Repeats of one finding are drawn in one figure, at most four."""
        events = [
            event(
                accessor=side(f"aaaa0001-{n}", started=1795639973.5 + n),
                timestamp=None,
            )
            for n in range(2, 12)
        ]

        page = page_of(*events)

        elements = Elements(page)
        assert 1 == len(elements.classes("timeline"))
        assert 4 == len(elements.classes("arrow"))
        assert "The first 4 events of 10" in page

    def test_findings_past_the_limit_are_listed(self):
        """Past the limit, findings are listed without a timeline."""
        events = [
            event(subject=f"g.name{n}", origin_site=f"a.py:{n} in f")
            for n in range(3)
        ]

        page = page_of(*events, max_drawn=1)

        elements = Elements(page)
        assert 1 == len(elements.classes("timeline"))
        assert 3 == len(elements.classes("finding"))
        assert 1 == page.count("<summary>Full report</summary>")
        assert (
            "Timelines are drawn for the first 1 findings; the other 2 are"
            " listed without one."
        ) in page

    def test_no_findings(self):
        """A log without findings says so."""
        findings = Findings()
        findings.read(io.BytesIO(b'{"event": "hello"}\n'))
        out = io.StringIO()

        write_html(findings, out)

        page = out.getvalue()
        assert "<p>No findings.</p>" in page
        assert "1 other line skipped" in page

    def test_sample_rates_are_shown(self):
        """Counts from a sampled app come with the rate."""
        page = page_of(event(sample_rate=0.01))

        assert "Sampled: CTXGUARD_SAMPLE_RATE 0.01." in page


class TestEscaping:
    @pytest.mark.parametrize("path", HOSTILE_PATHS)
    def test_hostile_paths_stay_text(self, path):
        """A request path with markup adds no element and no attribute."""
        page = page_of(
            event(
                origin=side("aaaa0001-1", path=path, thread=path),
                accessor=side("aaaa0001-2", path=path),
                subject=f"g.{path}",
                origin_site=path,
                access_site=path,
            )
        )

        elements = Elements(page)
        assert set() == {t for t, _ in elements.tags} & {"script", "img"}
        handlers = [
            name for _, a in elements.tags for name in a if name[:2] == "on"
        ]
        assert [] == handlers
        assert "pwned" in page  # as text
        assert path not in page

    def test_code_and_hint_from_the_log_are_text(self):
        """An unknown code is shown as text, never made into a link."""
        page = page_of(
            event(
                code='<a href="javascript:alert(1)">x</a>',
                hint="<b>bold</b>",
                docs="javascript:alert(1)",
            )
        )

        elements = Elements(page)
        hrefs = {a["href"] for _, a in elements.tags if "href" in a}
        assert {"#finding-1"} == hrefs
        assert "&lt;b&gt;bold&lt;/b&gt;" in page
        assert "<b>" not in page

    def test_control_characters_are_shown_escaped(self):
        """Control and reordering characters become visible escapes."""
        page = page_of(
            event(origin=side("aaaa0001-1", path="/a\x1b[31m\u202eb\ud800"))
        )

        assert "/a\\x1b[31m\\u202eb\\ud800" in page
        assert "\x1b" not in page
        assert "\u202e" not in page


class TestFindingSamples:
    def test_samples_are_bounded(self):
        """A finding keeps its first events only, however many follow."""
        findings = Findings()
        for n in range(MAX_SAMPLES * 3):
            findings.add(event(repeats=n + 1))

        (finding,) = findings.ordered()

        assert MAX_SAMPLES == len(finding.samples)
        assert 1 == finding.samples[0][0]["repeats"]


def real_log(tmp_path: Path, rendered: list[str]) -> Path:
    """
    The JSON log of a real guarded app whose requests have hostile paths,
    one of them kept by a module cache and read in the next: CG103.
    """
    app = Flask("hostile")
    app.config.update(CTXGUARD_MODE="log")
    CtxGuard(app)
    cache: list[Any] = []

    @app.get("/<path:anything>")
    def remember(anything: str) -> str:
        previous = cache[-1].path if cache else ""
        cache[:] = [request._get_current_object()]  # type: ignore[attr-defined]
        return previous

    client = app.test_client()
    for path in ["/first", *HOSTILE_PATHS]:
        client.get(path)
    log = tmp_path / "app.log"
    log.write_text("".join(f"{line}\n" for line in rendered), "utf-8")
    return log


class TestCommand:
    def test_html_to_a_file(self, tmp_path, rendered, capsys):
        """'report --format html -o FILE' writes the page and exits 1."""
        log = real_log(tmp_path, rendered)
        out = tmp_path / "report.html"

        status = _cli.main(
            ["report", "--format", "html", "-o", str(out), str(log)]
        )

        page = out.read_text("utf-8")
        assert 1 == status
        assert ("", "") == capsys.readouterr()
        assert page.startswith("<!DOCTYPE html>")
        assert 1 == len(Elements(page).classes("timeline"))
        assert "&lt;script&gt;document.title=&#x27;pwned&#x27;" in page

    def test_html_to_standard_output(self, tmp_path, rendered, capsys):
        """Without -o, the page goes to standard output."""
        log = real_log(tmp_path, rendered)

        status = _cli.main(["report", "--format", "html", str(log)])

        assert 1 == status
        assert capsys.readouterr().out.endswith("</html>\n")

    def test_json_to_a_file(self, tmp_path, rendered):
        """-o takes every format."""
        log = real_log(tmp_path, rendered)
        out = tmp_path / "findings.json"

        status = _cli.main(
            ["report", "--format", "json", "-o", str(out), str(log)]
        )

        assert 1 == status
        assert "CG103" == json.loads(out.read_text())["findings"][0]["code"]

    @pytest.mark.parametrize("output", ["text", "html"])
    def test_lone_surrogates_are_written_escaped(self, tmp_path, output):
        """A lone surrogate in a logged subject is written as an escape."""
        log = tmp_path / "app.log"
        log.write_text(json.dumps(event(subject="g.\ud800")) + "\n")
        out = tmp_path / "report"

        status = _cli.main(
            ["report", f"--format={output}", "-o", str(out), str(log)]
        )

        assert 1 == status
        assert "g.\\ud800" in out.read_text("utf-8")

    def test_unwritable_output_exits_2(self, tmp_path, capsys):
        """An output file that cannot be written is a one-line error."""
        log = tmp_path / "empty.log"
        log.write_text("")
        out = tmp_path / "missing" / "report.html"

        status = _cli.main(
            ["report", "-o", str(out), str(log)], prog="ctxguard"
        )

        assert 2 == status
        assert (
            f"ctxguard report: error: cannot write {str(out)!r}: No such file"
            " or directory\n"
        ) == capsys.readouterr().err


class TestDocsSite:
    @pytest.mark.parametrize(
        ("target", "page", "expected"),
        [
            ("rules.md#cg106", "rules", "rules/cg106.html"),
            ("#cg101", "rules", "rules/cg101.html"),
            ("#cg201", "rules", "rules/cg201.html"),
            (
                "#sanctioned-patterns",
                "rules",
                "rules.html#sanctioned-patterns",
            ),
            ("#fix", "rules/cg106", "rules/cg106.html#fix"),
            (
                "configuration.md#ctxguard_ignore",
                "rules",
                "configuration.html#ctxguard_ignore",
            ),
            ("logs.md", "rules", "logs.html"),
            ("_static/x.svg", "rules", "_static/x.svg"),
        ],
    )
    def test_links_resolve_under_the_site(self, target, page, expected):
        """A link of the Markdown docs resolves to its page on the site."""
        assert DOCS_URL + expected == resolve_link(target, page)

    def test_absolute_and_outside_links(self):
        """Absolute links stay; links out of docs/ go to the repository."""
        assert "https://flask.palletsprojects.com/" == resolve_link(
            "https://flask.palletsprojects.com/"
        )
        assert resolve_link("../README.md#reading-the-logs").endswith(
            "/blob/main/README.md#reading-the-logs"
        )

    def test_rule_url_takes_codes_only(self):
        """What is not a rule code links to the rules page."""
        assert DOCS_URL + "rules.html" == rule_url("javascript:x")
        assert DOCS_URL + "rules/cg104.html" == rule_url("CG104")


class TestBenchmark:
    def test_html_benchmark_runs(self, capsys):
        """The HTML report's benchmark runs and prints both figures."""
        from benchmarks import report_html

        status = report_html.main(["--events", "30", "--runs", "1"])

        out = capsys.readouterr().out.splitlines()
        assert 0 == status
        assert ["few bugs", "many bugs"] == [
            line.split(":")[0] for line in out
        ]
