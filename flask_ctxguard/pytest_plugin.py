"""
The pytest plugin: ``pytest --ctxguard`` finds contamination in any Flask
test suite without changing it.

Registered through the ``pytest11`` entry point; importing it has no side
effects and installing it changes nothing until the user opts in with
``--ctxguard``, the ini key ``ctxguard``, the ``ctxguard`` fixture or the
``ctxguard_allow`` marker.

While active, every Flask app that pushes a context or handles a request
gets a guard in ``log`` mode (an app with its own `CtxGuard` keeps it), and
every violation is attributed to the test during which it happened. The
plugin is a thin layer over `flask_ctxguard.testing`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import threading
import weakref
from collections.abc import Generator, Iterator
from typing import Any

import pytest
from flask import Flask, appcontext_pushed, request_started

from ._contexts import context_leak
from ._extension import EXTENSION_KEY, CtxGuard
from ._flaskcompat import (
    app_ctx_var,
    is_request_context,
    leaked_roots,
    pushed_contexts,
    request_ctx_var,
)
from ._lifecycle import arm_request
from ._signals import contamination_detected
from ._state import AppState
from ._violations import RULES, Violation
from .exceptions import ContaminationError
from .testing import format_violations

__all__ = ["CtxGuardFixture"]

MODES = ("strict", "warn", "off")


def _looks_like_a_path(value: str) -> bool:
    return (
        value.endswith(".py")
        or "/" in value
        or "::" in value
        or os.path.exists(value)
    )


def _mode(value: str) -> str:
    if value in MODES or _looks_like_a_path(value):
        # A path after a bare --ctxguard is given back to pytest by
        # pytest_load_initial_conftests before the final parse.
        return value
    msg = (
        "must be one of 'strict', 'warn', 'off' (or no value for 'strict');"
        f" got {value!r}"
    )
    raise argparse.ArgumentTypeError(msg)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    # `pytest --ctxguard tests/`: an option with an optional value would
    # take the path as its value. Make the bare option explicit.
    for index, arg in enumerate(args):
        if arg == "--":
            break
        following = args[index + 1] if index + 1 < len(args) else None
        if arg == "--ctxguard" and following not in MODES:
            args[index] = "--ctxguard=strict"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(
        "ctxguard", "request-context contamination (flask_ctxguard)"
    )
    group.addoption(
        "--ctxguard",
        action="store",
        dest="ctxguard",
        nargs="?",
        const="strict",
        default=None,
        type=_mode,
        metavar="MODE",
        help=(
            "guard every Flask app the tests use. 'strict' (the default"
            " with no value): a test during which contamination happened"
            " fails; 'warn': tests keep their outcome and violations are"
            " listed at the end; 'off'."
        ),
    )
    parser.addini(
        "ctxguard",
        "flask_ctxguard mode when --ctxguard is not given: strict, warn or"
        " off (default).",
        default="off",
    )


@dataclasses.dataclass
class _TestRun:
    """The violations of one test, as they arrive."""

    nodeid: str
    allowed: frozenset[str] = frozenset()
    forced: bool = False
    activated: bool = False
    pending: list[Violation] = dataclasses.field(default_factory=list)
    reported: list[Violation] = dataclasses.field(default_factory=list)
    absorbed: list[Violation] = dataclasses.field(default_factory=list)
    contexts_at_start: set[int] = dataclasses.field(default_factory=set)
    leaked_contexts: set[int] = dataclasses.field(default_factory=set)

    @property
    def violations(self) -> list[Violation]:
        return [*self.reported, *self.pending]


class _Plugin:
    """The plugin's state for one pytest run, kept in ``config.stash``."""

    def __init__(self, mode: str, source: str) -> None:
        self.mode = mode
        self.source = source
        self.guard = CtxGuard()
        self.lock = threading.Lock()
        self.current: _TestRun | None = None
        self.results: dict[str, list[Violation]] = {}
        self.problems: list[str] = []
        self.unguardable: weakref.WeakSet[Flask] = weakref.WeakSet()
        self._active = 0
        # Contexts pushed by fixtures broader than a test, until their
        # finalizer runs: not leaks of the test that happened to set them up.
        self.exempt: dict[int, Any] = {}

    # -- connecting to Flask ------------------------------------------------

    def activate(self) -> None:
        with self.lock:
            self._active += 1
            if self._active > 1:
                return
        appcontext_pushed.connect(self._on_context_pushed, weak=False)
        request_started.connect(self._on_request_started, weak=False)
        contamination_detected.connect(self._on_violation, weak=False)

    def deactivate(self) -> None:
        with self.lock:
            self._active -= 1
            if self._active > 0:
                return
        appcontext_pushed.disconnect(self._on_context_pushed)
        request_started.disconnect(self._on_request_started)
        contamination_detected.disconnect(self._on_violation)

    def ensure_guarded(self, app: Flask) -> AppState | None:
        state: AppState | None = app.extensions.get(EXTENSION_KEY)
        if state is not None:
            return state
        if app in self.unguardable:
            return None
        try:
            return self.guard._install(app, auto=True)
        except Exception as exc:  # noqa: BLE001 - never break the suite
            # A bad CTXGUARD_* value, or an app the guard cannot take:
            # said once per app, in the terminal summary.
            self.unguardable.add(app)
            self.problems.append(f"app {app.name!r} not guarded: {exc}")
            return None

    # Flask calls these from inside the app's own code: they must never
    # raise, or a test would fail because of the plugin.

    def _on_context_pushed(self, sender: Flask, **_: Any) -> None:
        self.ensure_guarded(sender)

    def _on_request_started(self, sender: Flask, **_: Any) -> None:
        state = self.ensure_guarded(sender)
        if state is None or not state.auto:
            return
        if state.settings.mode != "off":
            arm_request(state)

    def _on_violation(
        self, sender: Any, violation: Violation, **_: Any
    ) -> None:
        with self.lock:
            run = self.current
            if run is not None and violation.code not in run.allowed:
                run.pending.append(violation)

    # -- contexts (CG105) ---------------------------------------------------

    def report_leaked_contexts(
        self, run: _TestRun, known: set[int], site: str, *, pop: bool
    ) -> None:
        leaked = [
            ctx
            for ctx in pushed_contexts()
            if id(ctx) not in known
            and id(ctx) not in self.exempt
            and id(ctx) not in run.leaked_contexts
        ]
        run.leaked_contexts.update(id(ctx) for ctx in leaked)
        for ctx in leaked_roots(leaked):
            state = self.ensure_guarded(ctx.app)
            if state is None or state.settings.mode == "off":
                continue
            violation = context_leak(state, ctx, site)
            if violation is not None:
                state.reporter.report(violation, raise_now=False)
        if pop:
            _pop_all(leaked)

    def is_strict(self, run: _TestRun) -> bool:
        return self.mode == "strict" or (run.forced and self.mode != "warn")


_PLUGIN = pytest.StashKey[_Plugin]()


def _pop_all(leaked: list[Any]) -> None:
    # Innermost first (request contexts, then app contexts); a request
    # context also pops the app context it pushed for itself. Only a
    # context that is on top can be popped.
    for ctx in leaked:
        var = request_ctx_var if is_request_context(ctx) else app_ctx_var
        if var.get(None) is ctx:
            with contextlib.suppress(Exception):
                ctx.pop()


def _site(item: pytest.Item) -> str:
    path, line, name = item.location
    return f"{path}:{(line or 0) + 1} in {name}"


def _plugin(config: pytest.Config) -> _Plugin:
    return config.stash[_PLUGIN]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ctxguard_allow(*codes): violations of these codes (such as"
        " 'CG101') do not fail the test and are not reported.",
    )
    option = config.getoption("ctxguard", None)
    if option is not None:
        mode, source = option, f"--ctxguard={option}"
    else:
        mode = str(config.getini("ctxguard") or "off").strip()
        if mode not in MODES:
            msg = (
                "the ini key 'ctxguard' must be one of 'strict', 'warn',"
                f" 'off'; got {mode!r}."
            )
            raise pytest.UsageError(msg)
        source = f"ini ctxguard = {mode}"
    plugin = _Plugin(mode, source)
    config.stash[_PLUGIN] = plugin
    if mode != "off":
        plugin.activate()


def pytest_unconfigure(config: pytest.Config) -> None:
    plugin = config.stash.get(_PLUGIN, None)
    if plugin is not None and plugin.mode != "off":
        plugin.deactivate()


def pytest_report_header(config: pytest.Config) -> str | None:
    plugin = _plugin(config)
    if plugin.mode == "off":
        return None
    return f"ctxguard: {plugin.mode} (reproduce with --ctxguard={plugin.mode})"


def _known_codes(where: str, codes: tuple[str, ...]) -> frozenset[str]:
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


def _allowed_codes(*codes: str) -> frozenset[str]:
    return _known_codes("@pytest.mark.ctxguard_allow", codes)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    plugin = _plugin(item.config)
    run = _TestRun(nodeid=item.nodeid)
    run.contexts_at_start = {id(ctx) for ctx in pushed_contexts()}
    with plugin.lock:
        plugin.current = run
    try:
        yield
    finally:
        with plugin.lock:
            plugin.current = None
        if run.activated:
            plugin.deactivate()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    plugin = _plugin(item.config)
    run = plugin.current
    if run is None:  # pragma: no cover - always set by the protocol
        return
    codes: set[str] = set()
    for marker in item.iter_markers("ctxguard_allow"):
        codes |= _allowed_codes(*marker.args, **marker.kwargs)
    run.allowed = frozenset(codes)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    plugin = _plugin(item.config)
    run = plugin.current
    yield
    if run is not None and (plugin.mode != "off" or run.forced):
        # After every fixture's teardown: what the test or its fixtures
        # pushed and did not pop.
        plugin.report_leaked_contexts(
            run, run.contexts_at_start, _site(item), pop=plugin.is_strict(run)
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, None, None]:
    before = {id(ctx) for ctx in pushed_contexts()}
    yield
    if fixturedef.scope == "function":
        return
    plugin = _plugin(request.config)
    for ctx in pushed_contexts():
        if id(ctx) not in before:
            plugin.exempt[id(ctx)] = fixturedef


def pytest_fixture_post_finalizer(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    plugin = request.config.stash.get(_PLUGIN, None)
    if plugin is None or not plugin.exempt:
        return
    for key, owner in list(plugin.exempt.items()):
        if owner is fixturedef:
            del plugin.exempt[key]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    plugin = _plugin(item.config)
    run = plugin.current
    if run is None:
        return
    with plugin.lock:
        found, run.pending = run.pending, []
        run.reported.extend(found)
    if not found:
        return
    plugin.results.setdefault(item.nodeid, []).extend(found)
    if not plugin.is_strict(run) or report.skipped:
        return
    text = _failure_text(found)
    if report.passed:
        report.outcome = "failed"
        report.longrepr = text
    else:
        report.sections.append(("ctxguard", text))


def _failure_text(violations: list[Violation]) -> str:
    count = len(violations)
    noun = "violation" if count == 1 else "violations"
    return (
        f"flask_ctxguard: {count} request-context contamination {noun}"
        f" during this test:\n\n{format_violations(violations)}"
    )


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    plugin = config.stash.get(_PLUGIN, None)
    if plugin is None:
        return
    if plugin.mode == "off" and not plugin.results:
        return
    write = terminalreporter.write_line
    if plugin.results or plugin.problems:
        terminalreporter.section("ctxguard")
    for nodeid, violations in plugin.results.items():
        write(nodeid)
        for line in format_violations(violations).splitlines():
            write(f"  {line}" if line else "")
    for problem in plugin.problems:
        write(f"problem: {problem}")
    total = sum(len(v) for v in plugin.results.values())
    tests = len(plugin.results)
    write(
        f"ctxguard: {total} violation{'' if total == 1 else 's'} in"
        f" {tests} test{'' if tests == 1 else 's'}"
    )

    # hammer's crossovers, in their own section (issue 13).
    from ._hammer import write_crossover_summary

    write_crossover_summary(terminalreporter)


class CtxGuardFixture:
    """
    The ``ctxguard`` fixture: guards the current test, even without
    ``--ctxguard``.

    .. versionadded:: 0.1.0
    """

    def __init__(self, plugin: _Plugin, run: _TestRun) -> None:
        self._plugin = plugin
        self._run = run

    def __repr__(self) -> str:
        return (
            f"<CtxGuardFixture {self._run.nodeid!r}"
            f" violations={len(self.violations)}>"
        )

    @property
    def violations(self) -> list[Violation]:
        """This test's violations so far, oldest first."""
        with self._plugin.lock:
            return list(self._run.violations)

    @contextlib.contextmanager
    def expect(self, *codes: str) -> Iterator[list[Violation]]:
        """
        Fail unless a violation of one of *codes* happens inside the block;
        absorb those violations so they do not fail the test.

        In raise mode the `ContaminationError` is absorbed as well.

        Yields the list of absorbed violations, filled on exit.
        """
        __tracebackhide__ = True
        wanted = set(_known_codes("ctxguard.expect()", codes) or RULES)
        run = self._run
        with self._plugin.lock:
            start = len(run.pending)
            seen_reported = len(run.reported)
        absorbed: list[Violation] = []
        try:
            yield absorbed
        except ContaminationError as exc:
            if exc.violation.code not in wanted:
                raise
        with self._plugin.lock:
            new_pending = run.pending[start:]
            new_reported = run.reported[seen_reported:]
            absorbed.extend(
                v for v in [*new_reported, *new_pending] if v.code in wanted
            )
            run.pending = run.pending[:start] + [
                v for v in new_pending if v.code not in wanted
            ]
            run.reported = run.reported[:seen_reported] + [
                v for v in new_reported if v.code not in wanted
            ]
            run.absorbed.extend(absorbed)
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
            pytest.fail(_failure_text(violations), pytrace=False)


@pytest.fixture
def ctxguard(request: pytest.FixtureRequest) -> CtxGuardFixture:
    """
    Guard every Flask app this test uses and give access to its violations.
    """
    plugin = _plugin(request.config)
    run = plugin.current
    if run is None:  # pragma: no cover - always set by the protocol
        run = _TestRun(nodeid=request.node.nodeid)
    run.forced = True
    if plugin.mode == "off" and not run.activated:
        # Deactivated at the end of the test's protocol, after the final
        # check for contexts left pushed.
        run.activated = True
        plugin.activate()
    return CtxGuardFixture(plugin, run)
