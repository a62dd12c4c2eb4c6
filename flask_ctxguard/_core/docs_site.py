"""
The docs site's addresses: its home, each rule's page, the links of the
Markdown docs resolved against it, and ``CTXGUARD_DOCS_URL``.

Every ``contamination`` event, report and failure names its rule's page as
an absolute URL, ``<base>rules/<code>.html``, so that the link works from an
installed package, a package index page or a log pipeline. The base is the
project's docs site unless an app points ``CTXGUARD_DOCS_URL`` at its own
copy (a company's intranet mirror).

The site is built from ``docs/`` with Sphinx; every rule has a page of its
own at ``rules/<code in lower case>.html``. `resolve_link` turns a link as
written in ``docs/*.md`` (``rules.md#cg106``, ``configuration.md#x``) into
its absolute address on the site, so the terminal (``explain``) and the
HTML report point where the docs are.
"""

from __future__ import annotations

import re
import urllib.parse

__all__ = [
    "DOCS_URL",
    "REPOSITORY_URL",
    "normalized_docs_url",
    "resolve_link",
    "rule_url",
]

#: The public home of the docs site; every other address is under it.
DOCS_URL = "https://flask-ctxguard.readthedocs.io/en/latest/"

#: Files outside ``docs/`` (the README) are linked on the repository.
REPOSITORY_URL = "https://github.com/flask-ctxguard/flask-ctxguard/blob/main/"

_CODE = re.compile(r"CG\d{3}", re.IGNORECASE)
_PAGE = re.compile(r"(?P<page>[A-Za-z0-9_./-]*?)\.md(?P<anchor>#.*)?")


def rule_url(code: str, base: str = DOCS_URL) -> str:
    """
    The page of rule *code* (such as ``CG106``) under *base*.

    A *code* that is not a rule code gets the rules page itself: a code
    read from a log never becomes part of an address.
    """
    if _CODE.fullmatch(code) is None:
        return f"{base}rules.html"
    return f"{base}rules/{code.lower()}.html"


def resolve_link(
    target: str, page: str = "rules", base: str = DOCS_URL
) -> str:
    """
    The absolute address of *target*, a link written in ``docs/<page>.md``.

    Absolute addresses are returned as they are; ``#anchor`` is on *page*,
    and an anchor naming a rule code (``#cg106``, ``rules.md#cg106``) is
    that rule's page; ``../README.md`` is on the repository.
    """
    if "://" in target or target.startswith("mailto:"):
        return target
    if target.startswith("#"):
        target = f"{page}.md{target}"
    if target.startswith("../"):
        return REPOSITORY_URL + target[3:]
    match = _PAGE.fullmatch(target)
    if match is None:
        return base + target
    name, anchor = match.group("page"), match.group("anchor") or ""
    if name == "rules" and _CODE.fullmatch(anchor[1:]):
        return rule_url(anchor[1:], base)
    return f"{base}{name}.html{anchor}"


def normalized_docs_url(value: object) -> str | None:
    """
    *value* as the base of the rules' pages, ending with ``/``, or `None`
    unless it is an absolute http(s) URL with a host and without a query
    or fragment (`read_settings` then names the key, value and form).
    """
    if not isinstance(value, str):
        return None
    url = value.strip()
    parts = urllib.parse.urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.query
        or parts.fragment
        or not url.isprintable()
    ):
        return None
    return url if url.endswith("/") else url + "/"
