"""
The pytest plugin: ``pytest --ctxguard`` finds contamination in any Flask
test suite without changing it.

Registered through the ``pytest11`` entry point, so it is loaded in every
pytest run of the environment: importing it has no side effects and imports
neither Flask nor structlog nor the rest of the package. Installing it
changes nothing until the user opts in with ``--ctxguard``, the ini key
``ctxguard`` or the ``ctxguard`` fixture; only then is the run state
(`flask_ctxguard._pytest.run`) imported. This module holds the options, ini
keys, markers, fixture and hooks; the machinery is in
`flask_ctxguard._pytest`.

While active, every Flask app that pushes a context or handles a request
gets a guard, and every violation is attributed to the test during which
it happened. The run's option wins over the apps' own configuration: see
the precedence table in docs/configuration.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the run state imports Flask: only when enabled
    from flask_ctxguard._pytest.run import CtxGuardFixture, PluginRun, TestRun
    from flask_ctxguard._pytest.summary import RunResults

__all__ = ["CtxGuardFixture"]

MODES = ("strict", "warn", "off")


def __getattr__(name: str) -> Any:
    # `flask_ctxguard.pytest_plugin.CtxGuardFixture` for type hints, without
    # importing Flask when the plugin loads.
    if name == "CtxGuardFixture":
        from flask_ctxguard._pytest.run import CtxGuardFixture

        return CtxGuardFixture
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


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
            " fails; 'warn': tests keep their outcome and findings are"
            " listed at the end; 'off': the apps' own configuration"
            " stands."
        ),
    )
    group.addoption(
        "--ctxguard-log",
        action="store_true",
        dest="ctxguard_log",
        default=None,
        help=(
            "also log every violation through structlog, as the app would;"
            " by default the plugin's report is the only channel."
        ),
    )
    group.addoption(
        "--ctxguard-full-stacks",
        action="store_true",
        dest="ctxguard_full_stacks",
        default=None,
        help=(
            "keep every frame in stacks; by default frames of pytest,"
            " pluggy, Flask, Werkzeug and the like are folded."
        ),
    )
    parser.addini(
        "ctxguard",
        "flask_ctxguard mode when --ctxguard is not given: strict, warn or"
        " off (default).",
        default="off",
    )
    parser.addini(
        "ctxguard_log",
        "also log violations through structlog (see --ctxguard-log).",
        type="bool",
        default=False,
    )
    parser.addini(
        "ctxguard_full_stacks",
        "keep every frame in stacks (see --ctxguard-full-stacks).",
        type="bool",
        default=False,
    )


@dataclasses.dataclass
class _Options:
    """The run's choices, known without importing anything heavy."""

    mode: str
    log: bool
    full_stacks: bool
    state: PluginRun | None = None
    #: Why the run guards nothing: the guard cannot run here.
    inactive: str | None = None
    #: What the test reports carried, from every process.
    reported: RunResults | None = None

    def ensure_state(self) -> PluginRun | None:
        """The run state, made on first use; `None` if it cannot be."""
        if self.state is None and self.inactive is None:
            try:
                from flask_ctxguard._pytest.run import PluginRun
            except Exception as exc:  # noqa: BLE001 - say it, don't crash
                self.inactive = f"flask_ctxguard cannot be imported: {exc!r}"
                return None
            self.state = PluginRun(
                self.mode, log=self.log, full_stacks=self.full_stacks
            )
            self.inactive = self.state.inactive_reason
        return self.state

    def results(self) -> RunResults:
        """What the test reports carried so far."""
        if self.reported is None:
            from flask_ctxguard._pytest.summary import RunResults

            self.reported = RunResults()
        return self.reported


_OPTIONS = pytest.StashKey[_Options]()
_TEST: pytest.StashKey[TestRun] = pytest.StashKey()


def _flag(config: pytest.Config, name: str) -> bool:
    option = config.getoption(name, None)
    return bool(config.getini(name) if option is None else option)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "ctxguard_allow(*codes): violations of these codes (such as"
        " 'CG101') do not fail the test and are not reported.",
    )
    option = config.getoption("ctxguard", None)
    if option is not None:
        mode = option
    else:
        mode = str(config.getini("ctxguard") or "off").strip()
        if mode not in MODES:
            msg = (
                "the ini key 'ctxguard' must be one of 'strict', 'warn',"
                f" 'off'; got {mode!r}."
            )
            raise pytest.UsageError(msg)
    options = _Options(
        mode=mode,
        log=_flag(config, "ctxguard_log"),
        full_stacks=_flag(config, "ctxguard_full_stacks"),
    )
    config.stash[_OPTIONS] = options
    config.pluginmanager.register(_Collector(options), "ctxguard-collector")
    if mode != "off":
        options.ensure_state()


def pytest_unconfigure(config: pytest.Config) -> None:
    options = config.stash.get(_OPTIONS, None)
    if options is not None and options.state is not None:
        options.state.close()
    collector = config.pluginmanager.get_plugin("ctxguard-collector")
    if collector is not None:
        config.pluginmanager.unregister(collector)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    options = config.stash[_OPTIONS]
    mode = options.mode
    if mode == "off":
        return None
    lines = [f"ctxguard: {mode} (reproduce with --ctxguard={mode})"]
    if options.inactive is not None:
        lines.append(f"ctxguard: guarding nothing: {options.inactive}")
    return lines


def _site(item: pytest.Item) -> str:
    path, line, name = item.location
    return f"{path}:{(line or 0) + 1} in {name}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    options = item.config.stash[_OPTIONS]
    if options.mode == "off" and "ctxguard" not in getattr(
        item, "fixturenames", ()
    ):
        yield  # not guarded: the plugin costs one check per test
        return
    state = options.ensure_state()
    if state is None or options.inactive is not None:
        yield  # nothing can be guarded; the summary says why
        return
    run = state.begin(item.nodeid, _site(item))
    item.stash[_TEST] = run
    try:
        yield
    finally:
        state.end(run)
        del item.stash[_TEST]


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    run = item.stash.get(_TEST, None)
    if run is not None:
        run.allow(item.iter_markers("ctxguard_allow"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, None, None]:
    yield
    run = item.stash.get(_TEST, None)
    state = item.config.stash[_OPTIONS].state
    if run is not None and state is not None:
        # After every fixture's teardown: what the test or its fixtures
        # left pushed or set.
        state.check_end(run)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> Generator[None, None, None]:
    options = request.config.stash[_OPTIONS]
    state = options.state
    if state is None or options.inactive is not None:
        yield
        return
    before, left = state.before_fixture(fixturedef)
    yield
    state.note_fixture(fixturedef, before, left)


def pytest_fixture_post_finalizer(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> None:
    options = request.config.stash.get(_OPTIONS, None)
    if options is not None and options.state is not None:
        options.state.forget_fixture(fixturedef)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    if call.excinfo is not None and "flask_ctxguard.exceptions" in sys.modules:
        # Only then can the failure be ours: nothing to import before.
        from flask_ctxguard._pytest.crash import shorten_crash

        shorten_crash(outcome.get_result(), call.excinfo)
    run = item.stash.get(_TEST, None)
    state = item.config.stash[_OPTIONS].state
    if run is not None and state is not None:
        state.annotate(run, outcome.get_result())
        if run.late and call.when == "teardown":
            state.end(run)
            del item.stash[_TEST]


class _Collector:
    """Gathers what test reports carry, also from pytest-xdist's workers."""

    def __init__(self, options: _Options) -> None:
        self.options = options

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        found = getattr(report, "ctxguard", None)
        problems = getattr(report, "ctxguard_problems", None)
        guarded = getattr(report, "ctxguard_guarded", False)
        if not (found or problems or guarded):
            return
        results = self.options.results()
        if found:
            results.add(report.nodeid, found)
        if problems:
            results.add_problems(problems)
        results.guarded = results.guarded or bool(guarded)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # A strict run that could guard nothing is not a passing run.
    options = session.config.stash.get(_OPTIONS, None)
    if options is None or options.mode != "strict" or session.exitstatus:
        return
    if options.results().unguarded_reason(options.inactive) is not None:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(
    terminalreporter: Any, exitstatus: int, config: pytest.Config
) -> None:
    options = config.stash.get(_OPTIONS, None)
    if options is None or (options.mode == "off" and options.reported is None):
        return
    from flask_ctxguard._pytest.summary import write_summary

    write_summary(
        terminalreporter.write_line,
        terminalreporter.section,
        mode=options.mode,
        results=options.results(),
        inactive=options.inactive,
    )
    if options.state is None:
        return  # the guard could not be imported: no hammer either
    # hammer's crossovers, in their own section.
    from flask_ctxguard._hammer.hammer import write_crossover_summary

    write_crossover_summary(terminalreporter)


@pytest.fixture
def ctxguard(request: pytest.FixtureRequest) -> CtxGuardFixture:
    """
    Guard every Flask app this test uses and give access to its violations.

    The test follows the run's mode (``--ctxguard=warn``: findings are
    listed, the outcome is the test's own); without the option the fixture
    makes its test strict.
    """
    options = request.config.stash[_OPTIONS]
    state = options.ensure_state()
    if state is None:
        pytest.fail(f"ctxguard: guarding nothing: {options.inactive}")
    node = request.node
    run = node.stash.get(_TEST, None)
    if run is None:  # asked for with request.getfixturevalue()
        run = node.stash[_TEST] = state.begin(node.nodeid, _site(node))
        run.late = True  # ended after its teardown report
    return state.fixture(run)
