"""
The pytest plugin's run state, imported only once the plugin is enabled.

`flask_ctxguard.pytest_plugin` holds the hooks and stays light (no Flask,
no structlog); this module holds what a guarded run keeps: the guard of
every app, the override it imposes on every guard
(`flask_ctxguard._core.override`), the contexts its fixtures pushed, each
test's violations (through
`flask_ctxguard._reporting.capture.capture_violations`), the checks at the
end of a test, and the ``ctxguard`` fixture's object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterable, Iterator
from contextvars import Context
from typing import Any

import pytest

from flask_ctxguard._core.flaskcompat import unsupported_reason
from flask_ctxguard._core.override import RunOverride, overriding
from flask_ctxguard._core.violation import RULES, Violation
from flask_ctxguard._pytest import harness as _harness
from flask_ctxguard._pytest.contexts import HarnessContexts, fixture_label
from flask_ctxguard._pytest.outcome import (
    apply_strict,
    failure,
    findings_payload,
)
from flask_ctxguard._reporting.capture import capture_violations
from flask_ctxguard.exceptions import ContaminationError

__all__ = ["CtxGuardFixture", "PluginRun", "TestRun"]


@dataclasses.dataclass
class TestRun:
    """One guarded test: its violations as they arrive, and its start."""

    __test__ = False  # not a test class, whatever pytest collects

    nodeid: str
    site: str
    found: list[Violation]
    stack: contextlib.ExitStack
    contexts_at_start: set[int]
    left_at_start: _harness.LeftBehind
    snapshot: Context
    allowed: frozenset[str] = frozenset()
    forced: bool = False
    activated: bool = False
    #: Began when the test asked for the fixture late
    #: (``request.getfixturevalue``), not with the test.
    late: bool = False
    taken: int = 0
    absorbed: set[int] = dataclasses.field(default_factory=set)
    #: Violations a failure of the test already shows (assert_clean).
    shown: set[int] = dataclasses.field(default_factory=set)

    def allow(self, markers: Iterable[pytest.Mark]) -> None:
        """Allow the codes of the ``ctxguard_allow`` *markers*."""
        codes: set[str] = set()
        for marker in markers:
            codes |= _allowed_codes(*marker.args, **marker.kwargs)
        self.allowed = frozenset(codes)

    def kept(self, violations: list[Violation]) -> list[Violation]:
        """*violations* without the allowed and the absorbed."""
        return [
            v
            for v in violations
            if v.code not in self.allowed and id(v) not in self.absorbed
        ]

    @property
    def violations(self) -> list[Violation]:
        """Every violation of this test so far, oldest first."""
        return self.kept(list(self.found))


class PluginRun:
    """What a guarded pytest run keeps, in ``config.stash``."""

    def __init__(self, mode: str, *, log: bool, full_stacks: bool) -> None:
        self.mode = mode
        self.log = log
        self.full_stacks = full_stacks
        #: Why the run guards nothing (a Flask the guard cannot run on).
        self.inactive_reason = unsupported_reason()
        self.auto = _harness.AutoGuard()
        self.contexts = HarnessContexts()
        self.lock = threading.Lock()
        self.current: TestRun | None = None
        self._overridden = 0
        self._override = contextlib.ExitStack()
        self._said_guarded = False
        # Contexts and ContextVars of fixtures broader than a test, until
        # their finalizer runs: not leaks of the test that set them up.
        self.exempt: dict[int, Any] = {}
        if mode != "off":
            self._guard()

    def _guard(self) -> None:
        # The run's option wins over each app's own mode: no guard raises
        # (the plugin decides the outcome), and guards stay out of
        # structlog unless --ctxguard-log or the app asked for log mode.
        # On a Flask it cannot guard, apps' own guards follow the run too
        # (none raises), but nothing is installed.
        if self.inactive_reason is None:
            self.auto.activate()
        self._overridden += 1
        if self._overridden == 1:
            # Undone at the end: a pytester run inside a guarded run gives
            # the outer run's override back.
            self._override.enter_context(
                overriding(
                    RunOverride(
                        mode="log",
                        quiet=not self.log,
                        full_stacks=self.full_stacks,
                        harness=self.contexts.describe,
                    )
                )
            )

    def _unguard(self) -> None:
        if self.inactive_reason is None:
            self.auto.deactivate()
        self._overridden -= 1
        if self._overridden == 0:
            self._override.close()

    def close(self) -> None:
        """End of the run."""
        if self.mode != "off":
            self._unguard()

    def is_strict(self, run: TestRun) -> bool:
        """Whether *run*'s violations fail it."""
        return self.mode == "strict" or (run.forced and self.mode != "warn")

    # -- one test ------------------------------------------------------------

    def begin(self, nodeid: str, site: str) -> TestRun:
        """Start collecting the violations of the test *nodeid*."""
        stack = contextlib.ExitStack()
        found = stack.enter_context(capture_violations())
        run = TestRun(
            nodeid=nodeid,
            site=site,
            found=found,
            stack=stack,
            contexts_at_start=_harness.pushed_context_ids(),
            left_at_start=_harness.left_behind(),
            snapshot=_harness.snapshot(),
        )
        with self.lock:
            self.current = run
        return run

    def end(self, run: TestRun) -> None:
        """Stop collecting for *run*."""
        with self.lock:
            if self.current is run:
                self.current = None
        run.stack.close()
        if run.activated:
            self._unguard()

    def force(self, run: TestRun) -> None:
        """Guard *run* because it asked for the fixture."""
        run.forced = True
        if self.mode == "off" and not run.activated:
            run.activated = True
            self._guard()

    def check_end(self, run: TestRun) -> None:
        """
        After every fixture's teardown: report the contexts (CG105) and
        the ContextVars (CG106) the test left behind; in strict mode pop
        and restore them, so later tests run as if it had cleaned up.
        """
        strict = self.is_strict(run)
        exempt = set(self.exempt)
        known = run.contexts_at_start | exempt
        _harness.report_leaked_contexts(self.auto, known, run.site, pop=strict)

        def reported(subject: str, token: str) -> bool:
            return any(
                v.code == "CG106"
                and v.subject == subject
                and v.origin is not None
                and v.origin.token == token
                for v in list(run.found)
            )

        _harness.report_contextvars_left(
            run.left_at_start,
            run.snapshot,
            f"the end of {run.nodeid}",
            restore=strict,
            reported=reported,
        )

    def take(self, run: TestRun) -> list[Violation]:
        """The violations that arrived since the last call."""
        found = list(run.found)
        new, run.taken = found[run.taken :], len(found)
        return run.kept(new)

    def annotate(self, run: TestRun, report: pytest.TestReport) -> None:
        """
        Put on *report* what arrived since the last report of *run*: its
        findings (in strict mode failing it), the apps that could not be
        guarded, and whether an app was guarded at all; plain data, so
        that it reaches the controller of pytest-xdist.
        """
        problems = self.auto.take_problems()
        if problems:
            report.ctxguard_problems = problems  # type: ignore[attr-defined]
        if self.auto.guarded_any and not self._said_guarded:
            self._said_guarded = True
            report.ctxguard_guarded = True  # type: ignore[attr-defined]
        found = self.take(run)
        if not found:
            return
        report.ctxguard = findings_payload(found)  # type: ignore[attr-defined]
        unshown = [v for v in found if id(v) not in run.shown]
        if unshown and self.is_strict(run):
            apply_strict(report, unshown)

    # -- fixtures ------------------------------------------------------------

    def before_fixture(
        self, fixturedef: pytest.FixtureDef[Any]
    ) -> tuple[set[int], Any]:
        """What `note_fixture` compares with, taken before its setup."""
        left = (
            None if fixturedef.scope == "function" else _harness.left_behind()
        )
        return _harness.pushed_context_ids(), left

    def note_fixture(
        self, fixturedef: pytest.FixtureDef[Any], before: set[int], left: Any
    ) -> None:
        """
        *fixturedef* was set up: name the contexts it pushed after it; if
        it is broader than a test, exempt them and what it left set.
        """
        module = getattr(fixturedef.func, "__module__", None) or ""
        self.contexts.note(before, fixture_label(fixturedef.argname, module))
        if fixturedef.scope == "function":
            return
        for key in _harness.pushed_context_ids() - before:
            self.exempt[key] = fixturedef
        _harness.adopt_left_behind(left)

    def forget_fixture(self, fixturedef: object) -> None:
        """*fixturedef* was finalized."""
        for key, owner in list(self.exempt.items()):
            if owner is fixturedef:
                del self.exempt[key]

    def fixture(self, run: TestRun) -> CtxGuardFixture:
        """The ``ctxguard`` fixture's object for *run*."""
        self.force(run)
        return CtxGuardFixture(run)


def _allowed_codes(*codes: str) -> frozenset[str]:
    return known_codes("@pytest.mark.ctxguard_allow", codes)


def known_codes(where: str, codes: tuple[str, ...]) -> frozenset[str]:
    """*codes*, checked: a ValueError names *where* and the known codes."""
    for code in codes:
        if code not in RULES:
            known = ", ".join(sorted(RULES))
            msg = (
                f"{where} got {code!r}; pass codes such as 'CG101' (known:"
                f" {known})."
            )
            raise ValueError(msg)
    return frozenset(codes)


class CtxGuardFixture:
    """
    The ``ctxguard`` fixture: guards the current test, even without
    ``--ctxguard``.

    .. versionadded:: 0.1.0
    """

    def __init__(self, run: TestRun) -> None:
        self._run = run

    def __repr__(self) -> str:
        return (
            f"<CtxGuardFixture {self._run.nodeid!r}"
            f" violations={len(self.violations)}>"
        )

    @property
    def violations(self) -> list[Violation]:
        """This test's violations so far, oldest first."""
        return self._run.violations

    @contextlib.contextmanager
    def expect(self, *codes: str) -> Iterator[list[Violation]]:
        """
        Fail unless a violation of one of *codes* happens inside the block;
        absorb those violations so they do not fail the test.

        A `ContaminationError` of such a code is absorbed as well.

        Yields the list of absorbed violations, filled on exit.
        """
        __tracebackhide__ = True
        wanted = set(known_codes("ctxguard.expect()", codes) or RULES)
        run = self._run
        start = len(run.found)
        absorbed: list[Violation] = []
        try:
            yield absorbed
        except ContaminationError as exc:
            if exc.violation.code not in wanted:
                raise
        absorbed.extend(v for v in run.found[start:] if v.code in wanted)
        run.absorbed.update(id(v) for v in absorbed)
        if not absorbed:
            names = ", ".join(sorted(wanted))
            pytest.fail(
                f"ctxguard.expect({names}): no such violation happened inside"
                " the block.",
                pytrace=False,
            )

    def assert_clean(self) -> None:
        """Fail with the full reports if this test saw any violation."""
        __tracebackhide__ = True
        violations = self.violations
        if violations:
            # Shown once, here: not again in a ctxguard section.
            self._run.shown.update(id(v) for v in violations)
            raise failure(violations)
