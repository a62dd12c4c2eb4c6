"""
Fixtures of the scenario corpus; its machinery is in ``tests/helpers.py``.
"""

from __future__ import annotations

import pytest
import structlog.testing


@pytest.fixture(autouse=True)
def _no_guard_failure():
    """
    The guard never fails internally: it would log an 'internal-error'
    event and carry on, which no scenario may provoke.
    """
    with structlog.testing.capture_logs() as events:
        yield
    failures = [e for e in events if e["event"] == "internal-error"]

    assert [] == failures


@pytest.fixture(autouse=True)
def _no_thread_left(no_thread_left):
    """A scenario leaves no server, pool or worker thread running."""
