"""
Concurrent CG106 walks: each keeps its own view of the classes it meets.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from flask_ctxguard._rules import cg106_walk
from flask_ctxguard._rules.cg106_walk import reachable_ids
from tests.helpers import TIMEOUT


class Plan:
    """A plan a registry class hands out."""


class Registry:
    """A class whose attributes a request's code names (``Registry.plan``);
    the test gives it a plan while another walk is under way."""


class Other:
    """A class the second walk meets before the registry."""

    attr = "other"


def uses_other() -> object:
    return Other.attr


def uses_registry() -> object:
    return Registry.plan  # type: ignore[attr-defined]


class TestConcurrentWalks:
    def test_a_walk_never_sees_another_walks_stale_class_state(
        self, monkeypatch: pytest.MonkeyPatch
    ):
        """A walk started after a class changed sees the change, even when
        a walk that began before the change finishes in the middle of it."""
        computed = threading.Event()
        go = threading.Event()
        merge = cg106_walk._merged_class_state
        early: list[threading.Thread] = []

        def switched(cls: type) -> dict[str, Any]:
            state = merge(cls)
            if threading.current_thread() in early and cls is Registry:
                # The early walk has Registry's state from before the
                # change, and pauses before it keeps it.
                computed.set()
                go.wait(TIMEOUT)
            elif threading.current_thread() not in early and cls is Other:
                # The later walk, past its start: let the early one end.
                go.set()
                early[0].join(TIMEOUT)
            return state

        monkeypatch.setattr(cg106_walk, "_merged_class_state", switched)
        plan = Plan()
        thread = threading.Thread(
            target=reachable_ids, args=([uses_registry],)
        )
        early.append(thread)
        thread.start()
        computed.wait(TIMEOUT)
        monkeypatch.setattr(Registry, "plan", plan, raising=False)

        found = reachable_ids([uses_other, uses_registry])
        thread.join(TIMEOUT)

        assert True is (id(plan) in found)
