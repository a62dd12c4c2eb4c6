"""
Check every internal link of the built HTML site, without the network.

``python docs/_ext/check_links.py docs/_build/html`` reads each page, and
fails, listing them, on links to a page that was not built or to an
anchor (``id``) the page does not have. External links (``http:``,
``https:``, ``mailto:``) are not followed: the build has no network.
Sphinx's nitpicky mode and MyST's cross-reference warnings (errors under
``-W``) check the links in the sources; this checks what was written.
"""

from __future__ import annotations

import html.parser
import sys
import urllib.parse
from pathlib import Path

_EXTERNAL = ("http:", "https:", "mailto:", "data:", "javascript:")


class _Page(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag != "script":
                self.links.append(value)


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def broken_links(root: Path) -> list[str]:
    """Every internal link under *root* that leads nowhere."""
    pages = {path: _parse(path) for path in root.rglob("*.html")}
    broken = []
    for path, page in sorted(pages.items()):
        for link in page.links:
            if link.startswith(_EXTERNAL):
                continue
            address, _, anchor = link.partition("#")
            address = urllib.parse.unquote(address.partition("?")[0])
            target = (path.parent / address).resolve() if address else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.relative_to(root)}: {link}")
                continue
            anchor = urllib.parse.unquote(anchor)
            if anchor and target.suffix == ".html":
                ids = pages[target].ids if target in pages else set()
                if anchor not in ids:
                    broken.append(f"{path.relative_to(root)}: {link}")
    return broken


def main(argv: list[str]) -> int:
    """Check the site built in ``argv[0]``; 1 if a link is broken."""
    root = Path(argv[0]).resolve()
    broken = broken_links(root)
    for line in broken:
        print(f"broken link: {line}")
    pages = len(list(root.rglob("*.html")))
    print(f"{pages} pages, {len(broken)} broken internal links")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
