"""
Deselect exactly the tests named in 'COMPAT_DESELECT'.

pytest's own '--deselect' matches node id prefixes: deselecting
'test_fallback_to_memory' would also drop 'test_fallback_to_memory_config'.
This plugin takes whole node ids, one a line, deselects those and nothing
else, and fails the run if one of them is not collected, so that a stale
entry in 'compat/projects.py' is noticed.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Deselect the listed tests, and only them."""
    wanted = {
        line.strip()
        for line in os.environ.get("COMPAT_DESELECT", "").splitlines()
        if line.strip()
    }
    if not wanted:
        return
    keep = [item for item in items if item.nodeid not in wanted]
    dropped = [item for item in items if item.nodeid in wanted]
    missing = wanted - {item.nodeid for item in dropped}
    if missing:
        msg = f"COMPAT_DESELECT names tests that were not collected: {missing}"
        raise pytest.UsageError(msg)
    config.hook.pytest_deselected(items=dropped)
    items[:] = keep
