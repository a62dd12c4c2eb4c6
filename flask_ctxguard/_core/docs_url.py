"""
The docs site: where rule links point, and ``CTXGUARD_DOCS_URL``.

Every ``contamination`` event, report and failure names its rule's page as
an absolute URL, ``<base>rules/<code>.html``, so that the link works from an
installed package, a package index page or a log pipeline. The base is the
project's docs site unless an app points ``CTXGUARD_DOCS_URL`` at its own
copy (a company's intranet mirror).
"""

from __future__ import annotations

import urllib.parse

__all__ = ["DOCS_URL", "normalized_docs_url", "rule_url"]

#: The project's docs site: the default of ``CTXGUARD_DOCS_URL``.
DOCS_URL = "https://flask-ctxguard.readthedocs.io/en/latest/"


def rule_url(code: str, base: str = DOCS_URL) -> str:
    """
    The page of the rule *code* under the docs site *base*.

    >>> rule_url("CG106")
    'https://flask-ctxguard.readthedocs.io/en/latest/rules/cg106.html'
    """
    return f"{base}rules/{code.lower()}.html"


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
