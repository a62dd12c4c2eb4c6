"""
Rule links: every event's ``docs`` is a URL on the docs site (or the one
``CTXGUARD_DOCS_URL`` names), the README links resolve from an index page,
and every page the README links ships in the sdist.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra installs tomli on Python 3.10
    import tomli as tomllib
from flask import Flask
from structlog.testing import capture_logs

from flask_ctxguard import ConfigurationError, CtxGuard
from flask_ctxguard._core.docs_site import DOCS_URL, rule_url
from tests.helpers import KEPT, add_keep_route

ROOT = Path(__file__).resolve().parent.parent


def _leaky(**config: object) -> Flask:
    app = Flask("linked")
    app.config.update(SECRET_KEY="k", **config)
    add_keep_route(app)
    return app


def _events(app: Flask) -> list[dict[str, object]]:
    """A request kept by its view and read after it ended: CG102, on
    every supported Flask."""
    with capture_logs() as logs:
        app.test_client().get("/keep/alice")
        kept_request = KEPT[-1][0]
        assert "alice" == kept_request.view_args["name"]
    return [e for e in logs if e["event"] == "contamination"]


class TestEventDocs:
    def test_docs_field_is_the_rules_page_on_the_docs_site(self):
        """A logged event links its rule's page under the docs site."""
        app = _leaky(CTXGUARD_MODE="log")
        guard = CtxGuard(app)

        events = _events(app)

        assert [DOCS_URL + "rules/cg102.html"] == [e["docs"] for e in events]
        assert (
            f"  docs: {DOCS_URL}rules/cg102.html (offline: 'python -m"
            " flask_ctxguard explain CG102')"
        ) in str(guard.violations[0]).splitlines()

    def test_docs_url_points_at_a_company_copy(self):
        """CTXGUARD_DOCS_URL replaces the base of every rule link."""
        app = _leaky(
            CTXGUARD_MODE="log", CTXGUARD_DOCS_URL="https://docs.example/cg"
        )
        CtxGuard(app)

        events = _events(app)

        assert ["https://docs.example/cg/rules/cg102.html"] == [
            e["docs"] for e in events
        ]

    @pytest.mark.parametrize(
        "value",
        ["docs/rules.md", "ftp://x/", "https://", "https://x/?q=1", 3, None],
    )
    def test_bad_docs_url_names_key_value_and_form(self, value):
        """A docs URL that is not an absolute http(s) URL fails init_app."""
        app = Flask("bad")
        app.config["CTXGUARD_DOCS_URL"] = value

        with pytest.raises(ConfigurationError) as info:
            CtxGuard(app)

        assert str(info.value).startswith(
            "CTXGUARD_DOCS_URL must be an absolute http:// or https:// URL,"
        )
        assert f"got {value!r}." in str(info.value)

    def test_no_rule_link_in_the_package_is_repository_relative(self):
        """No package module writes a 'docs/...md' link into a report."""
        package = ROOT / "flask_ctxguard"
        found = [
            f"{path.relative_to(ROOT)}:{number}"
            for path in sorted(package.rglob("*.py"))
            for number, line in enumerate(
                path.read_text(encoding="utf-8").splitlines(), 1
            )
            if re.search(r"[\"']docs/\w+\.md", line)
        ]

        assert [] == found

    def test_rule_url_form(self):
        """A rule's page is '<base>rules/<code lower>.html'."""
        assert (
            "https://flask-ctxguard.readthedocs.io/en/latest/rules/cg106.html"
            == rule_url("CG106")
        )


class TestReadme:
    def test_readme_rule_links_are_absolute(self):
        """The README links rules to their pages on the docs site."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")

        for code in ("CG101", "CG102", "CG103", "CG104", "CG105", "CG106"):
            assert f"[{code}]({rule_url(code)})" in readme

    def test_readme_links_are_absolute(self):
        """
        Every README link is an absolute URL or an anchor of the README,
        so it works on a package index page.
        """
        readme = (ROOT / "README.md").read_text(encoding="utf-8")

        assert [] == [
            target
            for target in re.findall(r"\]\(([^)]*)\)", readme)
            if not target.startswith(("https://", "http://", "#"))
        ]

    def test_repository_files_the_readme_links_are_in_the_sdist(self):
        """Files of the repository that the README links ship in the sdist."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        pyproject = tomllib.loads(
            (ROOT / "pyproject.toml").read_text(encoding="utf-8")
        )
        included = pyproject["tool"]["flit"]["sdist"]["include"]
        repository = "https://github.com/flask-ctxguard/flask-ctxguard/"
        paths = re.findall(
            re.escape(repository) + r"(?:tree|blob)/main/([^)#]+)", readme
        )

        assert paths
        assert [] == [
            path
            for path in paths
            if not any(
                path.rstrip("/").startswith(entry.rstrip("/"))
                for entry in included
            )
        ]

    def test_every_page_the_readme_links_is_in_the_sdist(self):
        """Each docs page the README links is under the sdist's includes."""
        readme = (ROOT / "README.md").read_text(encoding="utf-8")
        pyproject = tomllib.loads(
            (ROOT / "pyproject.toml").read_text(encoding="utf-8")
        )
        included = pyproject["tool"]["flit"]["sdist"]["include"]
        pages = set(
            re.findall(re.escape(DOCS_URL) + r"([\w/.-]+)\.html", readme)
        )

        assert pages
        missing = [
            page
            for page in sorted(pages)
            if not (
                (ROOT / "docs" / f"{page}.md").exists()
                or (ROOT / "docs" / page / "index.md").exists()
                or page.startswith("rules/")
            )
            or not any(
                f"docs/{page}".startswith(entry.rstrip("/"))
                or entry.rstrip("/") == "docs"
                for entry in included
            )
        ]
        assert [] == missing
