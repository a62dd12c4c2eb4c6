"""
The pytest plugin's run state, imported only once the plugin is enabled.

`pytest_plugin` holds the hooks and stays light (no Flask, no structlog);
this module holds what a guarded run keeps: the guard of every app, each
test's violations (through `summaries.capture_violations`),
the checks at the end of a test, and the ``ctxguard`` fixture's object.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from contextvars import Context
from typing import Any

import pytest

from flask_ctxguard._pytest import harness as _harness
from flask_ctxguard._reporting import summaries
from flask_ctxguard._reporting.violations import RULES, Violation
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
    taken: int = 0
    absorbed: set[int] = dataclasses.field(default_factory=set)

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
        self.auto = _harness.AutoGuard()
        self.lock = threading.Lock()
        self.current: TestRun | None = None
        self._overridden = 0
        self._previous = _harness.RunOverride()
        # Contexts and ContextVars of fixtures broader than a test, until
        # their finalizer runs: not leaks of the test that set them up.
        self.exempt: dict[int, Any] = {}
        if mode != "off":
            self._guard()

    def _guard(self) -> None:
        # The run's option wins over each app's own mode: no guard raises
        # (the plugin decides the outcome), and guards the app did not
        # configure stay out of structlog unless --ctxguard-log.
        self.auto.activate()
        self._overridden += 1
        if self._overridden == 1:
            # Restored at the end: a pytester run inside a guarded run
            # must not end the outer run's override.
            self._previous = _harness.override_run(
                "log", quiet=not self.log, full_stacks=self.full_stacks
            )

    def _unguard(self) -> None:
        self.auto.deactivate()
        self._overridden -= 1
        if self._overridden == 0:
            previous = self._previous
            _harness.override_run(
                previous.mode,
                quiet=previous.quiet,
                full_stacks=previous.full_stacks,
            )

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
        found = stack.enter_context(summaries.capture_violations())
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

    # -- fixtures broader than a test ---------------------------------------

    def note_fixture(
        self, fixturedef: object, before: set[int], left: Any
    ) -> None:
        """*fixturedef* was set up: exempt what it pushed and left."""
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
            pytest.fail(summaries.failure_text(violations), pytrace=False)
