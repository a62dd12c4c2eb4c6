"""
What makes two violations one finding: the grouping key, in one place.

A finding is a root cause: one code, one subject, and the site that made
the contamination possible. That is the origin site (the line that set or
kept the value, or the view of the request the data belongs to) where the
violation has one, else the access site. One ``bind_contextvars`` line
whose value eight endpoints later held is one finding; two different bugs
hit from the same endpoints are two.

Where a site is not a line but the request something happened during
(``"GET /login/alice (endpoint 'login')"``, as CG106 names the requests
when it knows no line), the key keeps only the endpoint
(``"(endpoint 'login')"``; ``"(no route)"`` for a request no route
matched): the path holds user data (names, ids, canaries) and would split
one bug into one finding per URL.

`finding_key` is the key; `violation_key` and `event_key` take it from a
`Violation` or from a logged ``contamination`` event. The ``report``
command, ``hammer``'s report, the pytest plugin's closing section and the
OpenTelemetry span events all group with it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Protocol

__all__ = [
    "FindingKey",
    "Sited",
    "event_key",
    "finding_key",
    "key_site",
    "violation_key",
]

# A request as `sites.during` names it: "GET /path (endpoint 'name')", or
# "GET /path" when no route matched.
_DURING = re.compile(r"[A-Z]+ (/.*?)(?: \(endpoint ('.*'|\".*\")\))?")

#: ``(code, subject, origin site, access site)``, with exactly one of the
#: two sites set (or neither, when the violation has no site at all).
FindingKey = tuple[str, str, str | None, str | None]


def finding_key(
    code: str,
    subject: str,
    origin_site: str | None,
    access_site: str | None,
) -> FindingKey:
    """
    The finding a violation belongs to.

    Args:
        code: The rule code, such as ``"CG106"``.
        subject: What was touched, such as ``"ContextVar tenant"``.
        origin_site: Where the value was set or kept, if known.
        access_site: Where the data was touched, if known.

    Returns:
        ``(code, subject, origin_site, None)`` when there is an origin
        site, else ``(code, subject, None, access_site)``.
    """
    if origin_site:
        return (code, subject, key_site(origin_site), None)
    return (
        code,
        subject,
        None,
        key_site(access_site) if access_site else None,
    )


@functools.lru_cache(maxsize=4096)
def key_site(site: str) -> str:
    """
    *site* as a finding's key holds it: a code site (``"app.py:12 in
    login"``) as it is, a request (``"GET /login/alice (endpoint
    'login')"``) as its endpoint only (``"(endpoint 'login')"``, or
    ``"(no route)"``).
    """
    match = _DURING.fullmatch(site)
    if match is None:
        return site
    endpoint = match.group(2)
    return f"(endpoint {endpoint})" if endpoint else "(no route)"


class Sited(Protocol):
    """What a key is taken from: a `Violation`, or any object like it."""

    @property
    def code(self) -> str: ...

    @property
    def subject(self) -> str: ...

    @property
    def origin_site(self) -> str | None: ...

    @property
    def access_site(self) -> str | None: ...


def violation_key(violation: Sited) -> FindingKey:
    """The `finding_key` of *violation* (a `Violation`)."""
    return finding_key(
        violation.code,
        violation.subject,
        violation.origin_site,
        violation.access_site,
    )


def event_key(event: Mapping[str, object]) -> FindingKey:
    """
    The `finding_key` of a ``contamination`` event, as logged.

    Fields of the wrong type count as absent; *event* must carry string
    ``code`` and ``subject`` values.
    """
    # Once per event of a gigabyte of logs: no call that is not needed.
    code, subject = str(event["code"]), str(event["subject"])
    site = event.get("origin_site")
    if site.__class__ is str and site:
        return (code, subject, key_site(site), None)
    site = event.get("access_site")
    if site.__class__ is str and site:
        return (code, subject, None, key_site(site))
    return (code, subject, None, None)
