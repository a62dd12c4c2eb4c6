"""
Tallies inside a finding, each bounded: names, counts and endpoints.

Request data from a gigabyte of logs must not grow memory: every tally
keeps at most `MAX_NAMES` distinct names and counts the rest under
`OTHERS`; `Endpoint` keeps the requests of one endpoint with a few example
paths. `process_of` tells the process that logged an event from its
request token.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask_ctxguard._logs.event_report import NO_REQUEST, NO_ROUTE

__all__ = [
    "MAX_NAMES",
    "MAX_PATHS",
    "OTHERS",
    "Endpoint",
    "bounded_add",
    "process_of",
    "ranked",
    "tally",
]

#: Bound of the apps, endpoints, threads and access sites kept per
#: finding: request data from a gigabyte of logs must not grow memory.
#: Beyond it, the rest are counted under ``"(others)"``.
MAX_NAMES = 64
#: Example paths kept per endpoint (and for the ``(no route)`` entry).
MAX_PATHS = 8
#: The name the rest are counted under, beyond the bound.
OTHERS = "(others)"


@dataclasses.dataclass(slots=True)
class Endpoint:
    """The requests of one endpoint (or `NO_ROUTE`) that met a finding."""

    events: int = 0
    methods: set[str] = dataclasses.field(default_factory=set)
    #: Example paths, with how many events each.
    paths: dict[str, int] = dataclasses.field(default_factory=dict)

    def to_dict(self, name: str) -> dict[str, Any]:
        """This entry as ``report --format json`` prints it."""
        return {
            "endpoint": None if name in (NO_ROUTE, NO_REQUEST) else name,
            "name": name,
            "events": self.events,
            "methods": sorted(self.methods),
            "paths": sorted(self.paths, key=lambda p: (-self.paths[p], p)),
        }


def ranked(counts: dict[str, int], name: str) -> list[dict[str, Any]]:
    """*counts* as a list of ``{name: item, "events": n}``, most first."""
    return [
        {name: item, "events": counts[item]}
        for item in sorted(counts, key=lambda i: (-counts[i], i))
    ]


def process_of(side: dict[str, Any]) -> str | None:
    """The process of a side's request token (its prefix), if any."""
    token = side.get("token")
    if token.__class__ is str:
        prefix, dash, _ = token.rpartition("-")
        if dash:
            return prefix
    return None


def bounded_add(names: set[str], name: str) -> None:
    """Add *name* to *names* unless `MAX_NAMES` are there."""
    if len(names) < MAX_NAMES or name in names:
        names.add(name)


def tally(counts: dict[str, int], name: str) -> None:
    """Count *name*, or `OTHERS` once `MAX_NAMES` are counted."""
    if name in counts:
        counts[name] += 1
    elif len(counts) < MAX_NAMES:
        counts[name] = 1
    else:
        counts[OTHERS] = counts.get(OTHERS, 0) + 1
