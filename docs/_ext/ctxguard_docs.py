"""
The docs site's own Sphinx extension: one page per rule, with its figure.

docs/rules.md is the one text of the rules (``explain`` prints its
sections offline from the package's copy). At ``builder-inited`` this
extension writes ``rules/<code>.md`` for every ``## CGxxx`` section of it,
in the order they appear, so a code added to rules.md gets its page with
no change here; a code with a synthetic log in ``crossings.py`` also gets a
figure, drawn by the HTML report's own timeline renderer. At ``source-read``
it rewrites links to the rules so they point to those pages
(``rules.md#cg106`` becomes ``rules/cg106.md``), drops the per-rule
sections from the rules overview, and points links that leave docs/ (the
README) to the repository.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

from flask_ctxguard._core.docs_site import REPOSITORY_URL
from flask_ctxguard._logs.findings import Findings
from flask_ctxguard._logs.svg import timeline_svg

DOCS = Path(__file__).resolve().parent.parent
GENERATED = DOCS / "rules"
_SECTION = re.compile(r"^## (CG\d{3})\b.*$", re.MULTILINE)
_NEXT = re.compile(r"^## ", re.MULTILINE)
_SLUG = re.compile(r"^\*\*`([a-z0-9-]+)`\*\*", re.MULTILINE)
_RULE_LINK = re.compile(r"\]\(((?:\.\./)*)rules\.md#(cg\d{3})\)")
_OWN_RULE = re.compile(r"\]\(#(cg\d{3})\)")
_README = re.compile(r"\]\((?:\.\./)+README\.md")
_LOCAL = re.compile(r"\]\((?!https?:|mailto:|#)([^)\s]+)\)")


def sections(text: str) -> list[tuple[str, str]]:
    """The ``## CGxxx`` sections of *text*: (code, Markdown) in order."""
    found = []
    for match in _SECTION.finditer(text):
        following = _NEXT.search(text, match.end())
        end = following.start() if following else len(text)
        found.append((match.group(1), text[match.start() : end].rstrip()))
    return found


def rule_page(code: str, section: str, anchors: set[str]) -> str:
    """The Markdown of rule *code*'s own page, from its section."""
    heading, _, body = section.partition("\n")
    # '## CG201 some-slug' names itself; '## CG101' has its slug below.
    title = heading.removeprefix("##").strip()
    slug = _SLUG.search(body)
    if title == code and slug:
        title = f"{code} {slug.group(1)}"
    # One level up: ## is the page title, ### its sections.
    body = re.sub(r"^#(##+) ", r"\1 ", body, flags=re.MULTILINE)

    def local(match: re.Match[str]) -> str:
        target = match.group(1)
        if target.startswith("#") or target.endswith(".svg"):
            return match.group(0)
        return f"](../{target})"

    body = _LOCAL.sub(local, body)
    body = _OWN_RULE.sub(lambda m: f"]({m.group(1)}.md)", body)
    # An anchor of another part of rules.md (not this section's).
    body = re.sub(
        r"\]\(#([a-z0-9_-]+)\)",
        lambda m: (
            m.group(0)
            if m.group(1) in anchors
            else f"](../rules.md#{m.group(1)})"
        ),
        body,
    )
    figure = ""
    if (GENERATED / f"{code.lower()}.svg").exists():
        figure = (
            f"\n```{{figure}} {code.lower()}.svg\n"
            f":alt: the timeline of a {code} crossing\n\n"
            f"A {code} crossing, drawn as `report --format html` draws it:"
            " threads as lanes, requests as bars, the dot where the value"
            " was set or kept, the arrow to where it was read.\n```\n"
        )
    return (
        f"<!-- Generated from docs/rules.md by docs/_ext/ctxguard_docs.py;"
        f" edit rules.md. -->\n\n# {title}\n{figure}\n{body}\n"
    )


def _own_anchors(section: str) -> set[str]:
    from flask_ctxguard._terminal import slug

    return {
        slug(line.lstrip("#"))
        for line in section.splitlines()
        if line.startswith("###")
    }


def write_figures() -> None:
    """Draw each crossing of ``crossings.py`` as ``rules/<code>.svg``."""
    from crossings import CROSSINGS  # docs/_ext is on sys.path

    figures = GENERATED
    for code, events in CROSSINGS.items():
        findings = Findings()
        for event in events:
            findings.add(event)
        (finding,) = findings.ordered()
        svg = timeline_svg(finding, title=f"a {code} crossing")
        _write_if_changed(figures / f"{code.lower()}.svg", svg + "\n")


def write_rule_pages(app: Sphinx) -> None:
    """Write ``rules/<code>.md`` for every section of rules.md."""
    GENERATED.mkdir(exist_ok=True)
    write_figures()
    text = (DOCS / "rules.md").read_text(encoding="utf-8")
    wanted = set()
    for code, section in sections(text):
        name = f"{code.lower()}.md"
        wanted.add(name)
        page = rule_page(code, section, _own_anchors(section))
        _write_if_changed(GENERATED / name, page)
    for stale in GENERATED.glob("*.md"):
        if stale.name not in wanted:
            stale.unlink()


def _write_if_changed(path: Path, text: str) -> None:
    # Unchanged files keep their time, so incremental builds stay short.
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def rewrite_links(app: Sphinx, docname: str, source: list[str]) -> None:
    """Point links to rules at their pages, and README links at GitHub."""
    text = source[0]
    if docname == "rules":
        codes = [code for code, _ in sections(text)]
        moved = {}
        for code, section in sections(text):
            text = text.replace(section + "\n", "", 1)
            moved.update(dict.fromkeys(_own_anchors(section), code.lower()))
        text = _OWN_RULE.sub(lambda m: f"](rules/{m.group(1)}.md)", text)
        text = re.sub(
            r"\]\(#([a-z0-9_-]+)\)",
            lambda m: (
                f"](rules/{moved[m.group(1)]}.md#{m.group(1)})"
                if m.group(1) in moved
                else m.group(0)
            ),
            text,
        )
        pages = "\n".join(f"rules/{code.lower()}" for code in codes)
        text += f"\n```{{toctree}}\n:hidden:\n:titlesonly:\n\n{pages}\n```\n"
    text = _RULE_LINK.sub(
        lambda m: f"]({m.group(1)}rules/{m.group(2)}.md)", text
    )
    text = _README.sub(f"]({REPOSITORY_URL}README.md", text)
    source[0] = text


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the rule pages' generation and the link rewriting."""
    app.connect("builder-inited", write_rule_pages)
    app.connect("source-read", rewrite_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
