"""
The pytest plugin's terminal summary of the crossovers `hammer` found.

`hammer` records each result's crossovers under the running test's id
(`record_for_summary`); the plugin writes, at the end of the session,
those of its own tests (`write_crossover_summary`).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from flask_ctxguard._hammer.result import (
    Crossover,
    HammerResult,
    format_crossovers,
)

# Crossovers found during pytest tests, by test id, for the plugin's
# terminal summary. Bounded; the summary takes only its own session's.
_MAX_RECORDED = 256
_recorded: collections.OrderedDict[str, list[Crossover]] = (
    collections.OrderedDict()
)
_recorded_lock = threading.Lock()


def record_for_summary(result: HammerResult) -> None:
    test = os.environ.get("PYTEST_CURRENT_TEST")
    if not test or not result.crossovers:
        return
    nodeid = test.rpartition(" (")[0] or test
    with _recorded_lock:
        _recorded.setdefault(nodeid, []).extend(result.crossovers)
        while len(_recorded) > _MAX_RECORDED:
            _recorded.popitem(last=False)


class _TerminalReporter(Protocol):
    stats: Mapping[str, Sequence[Any]]

    def section(self, title: str, sep: str = ..., **kwargs: Any) -> None: ...

    def write_line(self, line: str, **kwargs: Any) -> None: ...


def write_crossover_summary(terminalreporter: _TerminalReporter) -> None:
    """
    For the pytest plugin: a terminal summary section listing, per test of
    this session, the crossovers `hammer` found during it.
    """
    nodeids = {
        getattr(report, "nodeid", None)
        for reports in terminalreporter.stats.values()
        for report in reports
    }
    with _recorded_lock:
        mine = [(n, c) for n, c in _recorded.items() if n in nodeids]
        for nodeid, _ in mine:
            del _recorded[nodeid]
    if not mine:
        return
    terminalreporter.section("ctxguard hammer crossovers")
    for nodeid, crossovers in mine:
        terminalreporter.write_line(nodeid)
        for line in format_crossovers(crossovers).splitlines():
            terminalreporter.write_line(f"  {line}" if line else "")
