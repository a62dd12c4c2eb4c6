"""
``python -m flask_ctxguard explain``: the rules page in the terminal, from
the one text shipped in the package.
"""

from __future__ import annotations

import email.parser
import importlib.resources
import io
import os
import re
import runpy
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from flask_ctxguard import _cli
from flask_ctxguard._core.violation import RULES
from flask_ctxguard._lint import LINT_RULES
from flask_ctxguard._terminal import render_markdown, render_rule, slug

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "rules.md"


def section(code: str) -> str:
    """The section of *code* in docs/rules.md, read directly."""
    text = DOCS.read_text(encoding="utf-8")
    start = text.index(f"\n## {code}\n") + 1
    end = text.find("\n## ", start)
    return text[start:end].rstrip() + "\n"


class TestExplain:
    def test_explain_prints_the_rules_section(self, capsys):
        """'explain CG106' prints docs/rules.md's CG106 section and its URL."""
        status = _cli.main(["explain", "CG106"])

        out = capsys.readouterr().out
        assert 0 == status
        assert out.startswith("CG106\n=====\n\n`contextvar-leak`: ")
        assert "\nFix\n---\n" in out
        assert "Sanctioned patterns" not in out
        assert "](" not in out  # every link resolved
        assert "\x1b" not in out  # not a terminal: plain text
        assert out.endswith(
            "\nOnline: https://flask-ctxguard.readthedocs.io/en/latest"
            "/rules/cg106.html\n"
        )

    @pytest.mark.parametrize("name", ["cg101", "g-leak", " CG101 "])
    def test_codes_and_slugs_in_any_case(self, capsys, name):
        """A rule is found by its code in any case or by its slug."""
        status = _cli.main(["explain", name])

        assert 0 == status
        assert capsys.readouterr().out.startswith("CG101\n=====\n")

    def test_unknown_rule_exits_2(self, capsys):
        """An unknown code exits 2 with one line listing the codes."""
        status = _cli.main(["explain", "CG199"], prog="ctxguard")

        err = capsys.readouterr().err
        assert 2 == status
        assert (
            "ctxguard explain: error: unknown rule 'CG199'; the rules are"
            " CG101, CG102, CG103, CG104, CG105, CG106, CG201, CG202, CG203,"
            " CG204, CG205, CG206, CG207\n"
        ) == err

    def test_without_a_code_lists_the_rules(self, capsys):
        """'explain' alone lists every code, runtime and static."""
        status = _cli.main(["explain"])

        out = capsys.readouterr().out.splitlines()
        rules = {**RULES, **LINT_RULES}
        width = max(len(rule.kind) for rule in rules.values())
        assert 0 == status
        assert [
            f"{code}  {rule.kind:<{width}}  {rule.title}"
            for code, rule in sorted(rules.items())
        ] == out[:13]

    def test_every_rule_has_a_section_with_its_slug(self):
        """Every code has a section headed by its slug, in the shipped text."""
        for code, rule in {**RULES, **LINT_RULES}.items():
            page = _cli.rule_page(code)

            assert page.startswith(f"## {code}\n\n**`{rule.kind}`**: ")

    @pytest.mark.parametrize("name", ["CG203", "contextvar-not-reset"])
    def test_static_rules_are_explained(self, capsys, name):
        """'explain' prints a static rule's page, by code or slug."""
        status = _cli.main(["explain", name])

        out = capsys.readouterr().out
        assert 0 == status
        assert out.startswith("CG203\n=====\n\n`contextvar-not-reset`: ")
        assert "](" not in out  # every link resolved
        assert out.endswith(
            "\nOnline: https://flask-ctxguard.readthedocs.io/en/latest"
            "/rules/cg203.html\n"
        )

    def test_package_text_is_the_docs_page(self):
        """The package's rules.md is docs/rules.md itself, not a copy."""
        shipped = importlib.resources.files("flask_ctxguard") / "rules.md"

        assert DOCS.read_text(encoding="utf-8") == shipped.read_text(
            encoding="utf-8"
        )
        assert (ROOT / "flask_ctxguard" / "rules.md").is_symlink()


class Terminal(io.StringIO):
    """Standard output that is a terminal."""

    def isatty(self) -> bool:
        return True


class TestTerminalText:
    def test_links_resolve_to_the_docs_site(self):
        """Links to rules, pages and the rule's own headings become URLs."""
        text = render_rule(
            "## CG106\n\n[CG101](#cg101),"
            " [ignore](configuration.md#ctxguard_ignore),"
            " [limits](#what-it-can-tell), [safe](#sanctioned-patterns)\n"
            "### What it can tell\n",
            "CG106",
            color=False,
        )

        site = "https://flask-ctxguard.readthedocs.io/en/latest/"
        assert (
            f"CG101 ({site}rules/cg101.html),"
            f" ignore ({site}configuration.html#ctxguard_ignore),"
            f" limits ({site}rules/cg106.html#what-it-can-tell),"
            f" safe ({site}rules.html#sanctioned-patterns)"
        ) in text

    def test_plain_text(self):
        """Without colour: underlined headings, indented code, no bold."""
        text = render_markdown(
            "## Title\n\n**`g-leak`**: x\n\n```python\ng.user = 1\n```\n"
            "### Sub\n",
            resolve=str,
            color=False,
        )

        assert (
            "Title\n=====\n\n`g-leak`: x\n\n    g.user = 1\nSub\n---\n" == text
        )

    def test_colour_on_a_terminal(self, monkeypatch):
        """On a terminal, headings are bold and code is coloured."""
        monkeypatch.delenv("NO_COLOR", raising=False)
        out = Terminal()

        _cli._explain("CG101", out)

        text = out.getvalue()
        assert text.startswith("\x1b[1m\x1b[4mCG101\x1b[0m\n")
        assert "\x1b[36m    " in text  # a code block
        assert "```" not in text

    def test_no_color_is_respected(self, monkeypatch):
        """NO_COLOR turns colour off, even on a terminal."""
        monkeypatch.setenv("NO_COLOR", "1")
        out = Terminal()

        _cli._explain("CG101", out)

        assert "\x1b" not in out.getvalue()

    @pytest.mark.parametrize(
        ("heading", "anchor"),
        [
            (
                "What the guard can tell, and what it cannot",
                "what-the-guard-can-tell-and-what-it-cannot",
            ),
            ("`CTXGUARD_MODE`", "ctxguard_mode"),
            ("CG101", "cg101"),
        ],
    )
    def test_slugs_match_the_site(self, heading, anchor):
        """Heading anchors are made as MyST and GitHub make them."""
        assert anchor == slug(heading)


@pytest.fixture(name="wheel", scope="module")
def _wheel(tmp_path_factory):
    """The wheel flit builds from this checkout."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, flit_core.buildapi as b; b.build_wheel(sys.argv[1])",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        timeout=120,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


class TestWheel:
    def test_wheel_ships_the_rules_text(self, wheel):
        """The wheel has rules.md as a file with the docs page's text."""
        with zipfile.ZipFile(wheel) as archive:
            shipped = archive.read("flask_ctxguard/rules.md")

        assert DOCS.read_bytes() == shipped

    def test_wheel_metadata(self, wheel):
        """
        The wheel declares the console script, the otel extra and the URLs.
        """
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
            (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
            (points,) = [
                n for n in names if n.endswith(".dist-info/entry_points.txt")
            ]
            metadata = email.parser.Parser().parsestr(
                archive.read(meta).decode()
            )
            entry_points = archive.read(points).decode()

        assert "ctxguard=flask_ctxguard._cli:main" in entry_points.replace(
            " ", ""
        )
        assert "otel" in metadata.get_all("Provides-Extra")
        assert any(
            re.match(r"opentelemetry-api.*extra == .otel.", requirement)
            for requirement in metadata.get_all("Requires-Dist")
        )
        labels = {url.split(",")[0] for url in metadata.get_all("Project-URL")}
        assert {"Source", "Documentation", "Rules", "Changelog"} <= labels

    def test_explain_from_the_installed_wheel(self, wheel, tmp_path):
        """An unpacked wheel, without the repository, explains a rule."""
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(tmp_path)

        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import flask_ctxguard, sys; print(flask_ctxguard.__file__);"
                " from flask_ctxguard._cli import main;"
                " sys.exit(main(['explain', 'CG105']))",
            ],
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert 0 == result.returncode, result.stderr
        where, _, page = result.stdout.partition("\n")
        assert where.startswith(str(tmp_path))
        assert page.startswith(
            render_rule(section("CG105"), "CG105", color=False)
        )


class TestEntryPoint:
    def test_python_dash_m(self, capsys, monkeypatch):
        """'python -m flask_ctxguard' runs the command line and exits."""
        monkeypatch.setattr(sys, "argv", ["__main__.py", "explain", "CG102"])

        main = Path(_cli.__file__).with_name("__main__.py")

        with pytest.raises(SystemExit) as info:
            # run_path: pytest's import hook does not let run_module load a
            # module of a package it imported as a plugin.
            runpy.run_path(str(main), run_name="__main__")

        assert 0 == info.value.code
        assert capsys.readouterr().out.startswith("CG102\n=====\n")
