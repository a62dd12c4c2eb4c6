"""
The HTML report in a real browser: Debian's ``chromium``, headless, loads
the page from a file, draws the timelines, and runs nothing from the log.

Chromium is a requirement of the test suite, not an option: where it is
missing these tests fail and say how to install it (``apt-get install -y
chromium``), rather than skip and let a run go green without them.
"""

from __future__ import annotations

import html.parser
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, g, request

from flask_ctxguard import CtxGuard, _cli
from flask_ctxguard._logs.html import CSP

PWNED = "pwned-by-the-log"
HOSTILE_PATHS = [
    f"/<script>document.title='{PWNED}'</script>",
    f"/x\" onerror=\"document.title='{PWNED}'",
    "/<img src=x onerror=document.body.appendChild("
    f"document.createElement('{PWNED}'))>",
    f"/</text></svg><script>document.title='{PWNED}'</script>",
    f"/<svg onload=document.title='{PWNED}'>",
]


@pytest.fixture(name="chromium", scope="module")
def _chromium() -> str:
    """The chromium executable; the test fails if there is none."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found is not None:
            return found
    pytest.fail(
        "chromium is not installed, and the HTML report's browser tests need"
        " it: run 'apt-get update && apt-get install -y chromium' (Debian,"
        " as root) and run the tests again.",
        pytrace=False,
    )


def headless(chromium: str, profile: Path, *args: str) -> str:
    """Run headless chromium with *args*; its standard output."""
    result = subprocess.run(
        [
            chromium,
            "--headless",
            "--disable-gpu",
            "--no-sandbox",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


class Dom(html.parser.HTMLParser):
    """The elements of a dumped DOM, and the text of its title."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self._in_title = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "title" and not self.title:
            self._in_title += 1

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = 0

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def count(self, cls: str) -> int:
        """How many elements have *cls* among their classes."""
        return sum(
            cls in (attrs.get("class") or "").split() for _, attrs in self.tags
        )


@pytest.fixture(name="report")
def _report(tmp_path, rendered) -> Path:
    """
    The HTML report of a real guarded app's JSON log: requests with hostile
    paths keep the request object in a module cache (CG103 in the next
    one), and a thread reads one request's g after it ended (CG102).
    """
    app = Flask("browser")
    app.config.update(CTXGUARD_MODE="log")
    CtxGuard(app)
    cache: list[Any] = []

    @app.get("/<path:anything>")
    def remember(anything: str) -> str:
        previous = cache[-1].path if cache else ""
        cache[:] = [request._get_current_object()]  # type: ignore[attr-defined]
        g.user = anything
        return previous

    client = app.test_client()
    for path in ["/first", *HOSTILE_PATHS]:
        client.get(path)
    kept = cache[-1]
    # A thread reads the last request after it ended.
    reader = threading.Thread(target=lambda: kept.path, name=HOSTILE_PATHS[0])
    reader.start()
    reader.join(timeout=10)
    log = tmp_path / "app.log"
    log.write_text("".join(f"{line}\n" for line in rendered), "utf-8")
    out = tmp_path / "report.html"

    status = _cli.main(
        ["report", "--format", "html", "-o", str(out), str(log)]
    )

    assert 1 == status
    return out


class TestInChromium:
    def test_timelines_render_and_nothing_runs(
        self, chromium, report, tmp_path
    ):
        """
        Chromium draws a timeline per finding (lanes, bars, arrows), shows
        the hostile paths as text, and runs none of them.
        """
        dumped = headless(
            chromium, tmp_path / "profile", "--dump-dom", report.as_uri()
        )

        dom = Dom(dumped)
        tags = {tag for tag, _ in dom.tags}
        assert "flask_ctxguard report: 2 findings" == dom.title
        assert 2 == dom.count("timeline")
        assert 3 <= dom.count("lane")
        assert 3 <= dom.count("bar")
        assert 2 <= dom.count("arrow")
        assert set() == tags & {"script", "img", PWNED}
        assert [] == [
            name for _, attrs in dom.tags for name in attrs if name[:2] == "on"
        ]
        assert "&lt;script&gt;document.title='pwned-by-the-log'" in dumped

    def test_screenshot(self, chromium, report, tmp_path):
        """Chromium renders the page to a non-empty PNG."""
        shot = tmp_path / "report.png"

        headless(
            chromium,
            tmp_path / "profile",
            f"--screenshot={shot}",
            "--window-size=1100,1600",
            report.as_uri(),
        )

        data = shot.read_bytes()
        assert b"\x89PNG\r\n\x1a\n" == data[:8]
        assert len(data) > 10_000

    def test_the_browser_runs_scripts_the_policy_allows(
        self, chromium, tmp_path
    ):
        """
        The control: this chromium runs an inline script, unless the
        report's Content-Security-Policy is on the page; so the checks
        above would see a script that ran.
        """
        script = f"<script>document.title = '{PWNED}';</script>"
        bare = tmp_path / "bare.html"
        bare.write_text(f"<title>before</title>{script}", "utf-8")
        guarded = tmp_path / "guarded.html"
        guarded.write_text(
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>before</title>{script}",
            "utf-8",
        )

        ran = Dom(
            headless(chromium, tmp_path / "p1", "--dump-dom", bare.as_uri())
        )
        blocked = Dom(
            headless(chromium, tmp_path / "p2", "--dump-dom", guarded.as_uri())
        )

        assert PWNED == ran.title
        assert "before" == blocked.title
