"""
What a plugin run shows, through pytester: each finding once (in strict
mode at the test that failed, in warn mode at the end with the tests it
occurred in), no structlog copy unless asked, a skipped test's finding,
contexts that fixtures and pytest-flask pushed named as such, and a run
that guarded nothing saying why.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import flask_ctxguard
from tests._compat import needs_shared_g
from tests.pytester_helpers import HEADER, LEAKY, run

#: An app that creates its own guard and sets no CTXGUARD_* key; the
#: second test's app asked for log mode itself.
OWN_GUARD_NO_KEY = """
    from flask_ctxguard import CtxGuard
    from shop import create_app, leak_g


    def test_own_guard():
        app = create_app()
        app.config.update(TESTING=True)
        CtxGuard(app)
        assert b"alice" == leak_g(app)
"""

OWN_GUARD_LOG_MODE = """
    from flask_ctxguard import CtxGuard
    from shop import create_app, leak_g


    def test_log_mode():
        app = create_app()
        app.config.update(CTXGUARD_MODE="log")
        CtxGuard(app)
        assert b"alice" == leak_g(app)
"""

#: One bug (the same 'g' write in shop.py) hit by three tests.
THREE_TESTS = """
    from shop import create_app, leak_g


    def test_one():
        assert b"alice" == leak_g(create_app())


    def test_two():
        assert b"alice" == leak_g(create_app())


    def test_three():
        assert b"alice" == leak_g(create_app())
"""

#: structlog's console line of a logged finding.
LOGGED = "*contamination *code=CG101*"


class TestOutputOnce:
    @needs_shared_g
    @pytest.mark.parametrize("mode", ["strict", "warn"])
    def test_own_guard_without_key_logs_nothing(self, ourtester, mode):
        """An app with its own CtxGuard and no key: the plugin's report is
        the only place the finding appears, even with output uncaptured;
        strict shows it once."""
        ourtester.makepyfile(test_own=OWN_GUARD_NO_KEY)

        result = run(ourtester, f"--ctxguard={mode}", "-s", subprocess=True)

        result.stdout.no_fnmatch_line(LOGGED)
        assert 1 == result.stdout.str().count("CG101 g-leak: 'g.user'")
        if mode == "strict":
            result.assert_outcomes(failed=1)
        else:
            result.assert_outcomes(passed=1)

    @needs_shared_g
    def test_logs_when_asked(self, ourtester):
        """The positive controls: --ctxguard-log, or an app that set
        CTXGUARD_MODE = 'log' itself, also log through structlog."""
        ourtester.makepyfile(test_own=OWN_GUARD_NO_KEY)
        ourtester.makepyfile(test_log=OWN_GUARD_LOG_MODE)

        asked = run(
            ourtester,
            "--ctxguard=warn",
            "--ctxguard-log",
            "-s",
            "test_own.py",
            subprocess=True,
        )
        configured = run(
            ourtester, "--ctxguard=warn", "-s", "test_log.py", subprocess=True
        )

        asked.stdout.fnmatch_lines([LOGGED])
        configured.stdout.fnmatch_lines([LOGGED])

    @needs_shared_g
    def test_warn_lists_one_finding_with_its_tests(self, ourtester):
        """Warn: one bug hit by three tests is one finding, shown in full
        once, with the three tests."""
        ourtester.makepyfile(test_three=THREE_TESTS)

        result = run(ourtester, "--ctxguard=warn")

        result.assert_outcomes(passed=3)
        result.stdout.fnmatch_lines(
            [
                "*= ctxguard =*",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "  in 3 tests: test_three.py::test_one,"
                " test_three.py::test_two, test_three.py::test_three",
                "ctxguard: 1 finding in 3 tests",
            ]
        )
        assert 1 == result.stdout.str().count("CG101 g-leak: 'g.user'")

    @needs_shared_g
    def test_strict_shows_each_tests_finding_once(self, ourtester):
        """Strict: each failing test shows its own finding once; the
        closing section has one line for the finding, naming its tests."""
        ourtester.makepyfile(test_three=THREE_TESTS)

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=3)
        assert 3 == result.stdout.str().count("CG101 g-leak: 'g.user'")
        result.stdout.fnmatch_lines(
            [
                "test_three.py::test_one, test_three.py::test_two,"
                " test_three.py::test_three: CG101 g-leak: g.user from GET"
                " /set/alice into GET /get",
                "ctxguard: 1 finding in 3 tests",
            ]
        )


#: A test that asserts its app is clean after a leak.
ASSERT_CLEAN = """
    from shop import create_app, leak_g


    def test_assert_clean(ctxguard):
        leak_g(create_app())
        ctxguard.assert_clean()
"""

#: An app in raise mode, its own guard, no plugin option.
RAISE_MODE = """
    from flask_ctxguard import CtxGuard
    from shop import create_app, leak_g


    def test_raise_mode():
        app = create_app()
        app.config.update(TESTING=True, CTXGUARD_MODE="raise")
        CtxGuard(app)
        leak_g(app)
"""

#: The short summary line of a test failed by the leak of shop.py.
SHORT_LINE = (
    "FAILED test_*.py::test_* - 1 request-context contamination finding:"
    " CG101 g-leak: g.user from GET /set/alice into GET /get"
)


class TestShortSummary:
    """
    pytest's short test summary gives each failure one line, also on CI,
    where pytest prints a failure's whole message: the full reports are
    shown once, in the failures.
    """

    @needs_shared_g
    @pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["", "xdist"])
    @pytest.mark.parametrize("ci", ["", "true"], ids=["local", "ci"])
    def test_strict_failure_is_one_line(
        self, ourtester, monkeypatch, ci, workers
    ):
        """Three tests failed by strict mode: three full reports, three
        one-line entries in the short summary, with or without xdist."""
        if ci:
            monkeypatch.setenv("CI", ci)
        ourtester.makepyfile(test_three=THREE_TESTS)

        result = run(ourtester, "--ctxguard", "-rf", *workers)

        result.assert_outcomes(failed=3)
        assert 3 == result.stdout.str().count("CG101 g-leak: 'g.user'")
        assert 3 == result.stdout.str().count("  read at: shop.py:20 in get")
        # Off CI pytest cuts the line to the terminal's width.
        line = SHORT_LINE if ci else f"{SHORT_LINE[:60]}*"
        result.stdout.fnmatch_lines([line] * 3, consecutive=True)

    @needs_shared_g
    def test_assert_clean_is_one_line_on_ci(self, ourtester, monkeypatch):
        """The fixture's assert_clean() fails with the full report once
        and one line in the short summary."""
        monkeypatch.setenv("CI", "true")
        ourtester.makepyfile(test_clean=ASSERT_CLEAN)

        result = run(ourtester, "-rf")

        result.assert_outcomes(failed=1)
        assert 1 == result.stdout.str().count("CG101 g-leak: 'g.user'")
        result.stdout.fnmatch_lines(
            ["1 request-context contamination finding:", "", "CG101 *"]
        )
        result.stdout.fnmatch_lines([SHORT_LINE])

    @needs_shared_g
    def test_assert_no_contamination_is_one_line_on_ci(
        self, ourtester, monkeypatch
    ):
        """flask_ctxguard.testing.assert_no_contamination(), without the
        plugin's option: the full report once, one line in the summary."""
        monkeypatch.setenv("CI", "true")
        ourtester.makepyfile(
            test_helper="""
            from flask_ctxguard import CtxGuard
            from flask_ctxguard.testing import assert_no_contamination
            from shop import create_app, leak_g


            def test_helper():
                app = create_app()
                guard = CtxGuard(app)
                leak_g(app)
                assert_no_contamination(guard)
            """
        )

        result = run(ourtester, "-rf")

        result.assert_outcomes(failed=1)
        assert 1 == result.stdout.str().count("CG101 g-leak: 'g.user'")
        result.stdout.fnmatch_lines(
            [SHORT_LINE, "*= 1 failed in *"], consecutive=True
        )

    @needs_shared_g
    def test_contamination_error_keeps_its_first_line_on_ci(
        self, ourtester, monkeypatch
    ):
        """A ContaminationError in raise mode: its traceback shows the full
        report, the short summary its first line only."""
        monkeypatch.setenv("CI", "true")
        ourtester.makepyfile(test_raise=RAISE_MODE)

        result = run(ourtester, "-rf")

        result.assert_outcomes(failed=1)
        assert 1 == result.stdout.str().count("  value: str")
        result.stdout.fnmatch_lines(
            [
                "FAILED test_raise.py::test_raise_mode"
                " - flask_ctxguard.exceptions.ContaminationError: CG101"
                " g-leak: 'g.user' was read during GET /get *",
                "*= 1 failed in *",
            ],
            consecutive=True,
        )


class TestFixtureAskedLate:
    @needs_shared_g
    def test_getfixturevalue_guards_from_then_on(self, ourtester):
        """A test that asks for the ctxguard fixture with
        request.getfixturevalue(), without the option, is guarded from
        then on and fails with its finding."""
        ourtester.makepyfile(
            test_late="""
            from shop import create_app, leak_g


            def test_late(request):
                guard = request.getfixturevalue("ctxguard")
                leak_g(create_app())
                assert 1 == len(guard.violations)
            """
        )

        result = run(ourtester)

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ test_late _*",
                "1 request-context contamination finding:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get *",
            ]
        )


class TestSkippedTest:
    SKIPS = """
        import pytest
        from shop import create_app, leak_g


        def test_skips_itself():
            leak_g(create_app())
            pytest.skip("already logged in")
    """

    @needs_shared_g
    def test_strict_fails_it_with_its_finding(self, ourtester):
        """A test that skips itself after a contamination fails in strict
        mode, with its finding and its skip reason."""
        ourtester.makepyfile(test_skip=self.SKIPS)

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ test_skips_itself _*",
                "1 request-context contamination finding:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "*The test skipped itself after this contamination"
                " (Skipped: already logged in); it fails, since the skip"
                " may come from it.",
            ]
        )

    @needs_shared_g
    def test_warn_reports_it(self, ourtester):
        """Warn: the test stays skipped and its finding is listed with it."""
        ourtester.makepyfile(test_skip=self.SKIPS)

        result = run(ourtester, "--ctxguard=warn")

        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(
            [
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "  in test: test_skip.py::test_skips_itself",
            ]
        )


#: pytest-flask's 'app' fixture, for the shop app.
PYTEST_FLASK_CONFTEST = """
    import pytest
    from shop import create_app


    @pytest.fixture
    def app():
        return create_app()
"""

#: The conftest.py fixture that CG101's fix suggests.
TURNED_OFF = """

    @pytest.fixture(autouse=True)
    def _push_request_context():
        pass
"""


class TestHarnessContexts:
    @pytest.fixture(name="flasktester")
    def _flasktester(self, ourtester):
        """A pytester whose inner run loads pytest-flask."""
        pytest.importorskip("pytest_flask")
        ourtester.makeini(
            "[pytest]\nconsole_output_style = classic\n"
            "addopts = -p no:cacheprovider\n"
        )
        return ourtester

    def test_pytest_flask_context_is_named(self, flasktester):
        """The request of pytest-flask's per-test request context, kept by
        the code under test and read by a test-client request: reports
        name pytest-flask's context, not 'GET /'."""
        flasktester.makeconftest(
            """
            import pytest
            from flask_ctxguard import CtxGuard
            from shop import create_app


            @pytest.fixture
            def app():
                app = create_app()
                CtxGuard(app)
                return app
            """
        )
        flasktester.makepyfile(
            test_flask="""
            from flask import request
            from shop import kept


            def test_cached_request(client):
                kept.append(request._get_current_object())
                client.get("/peek")
                kept.clear()
            """
        )

        result = run(flasktester, "--ctxguard")

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "CG103 cross-request-access: 'request.args' of pytest-flask's"
                " automatic request context (request *, thread 'MainThread')"
                " was used during GET /peek (request *, thread"
                " 'MainThread'), while that request was still in flight.",
                "test_flask.py::test_cached_request: CG103"
                " cross-request-access: request from pytest-flask's automatic"
                " request context into GET /peek",
            ]
        )
        result.stdout.no_fnmatch_line("*GET / (request*")

    @needs_shared_g
    def test_requests_sharing_pytest_flasks_context(self, flasktester):
        """Two test-client requests sharing pytest-flask's context: the fix
        names pytest-flask's context; following it, the test is clean."""
        flasktester.makeconftest(PYTEST_FLASK_CONFTEST)
        flasktester.makepyfile(
            test_flask="""
            def test_two_requests(client):
                client.get("/set/carol")
                client.get("/get")
            """
        )

        shared = run(flasktester, "--ctxguard")
        flasktester.makeconftest(PYTEST_FLASK_CONFTEST + TURNED_OFF)
        turned_off = run(flasktester, "--ctxguard")

        shared.assert_outcomes(failed=1)
        shared.stdout.fnmatch_lines(
            [
                "CG101 g-leak: 'g.user' was read during GET /get (request *)"
                " but was set during GET /set/carol (request *).",
                "  fix: the two requests shared the application context of"
                " the request context pytest-flask pushes around *",
            ]
        )
        turned_off.assert_outcomes(passed=1)

    @needs_shared_g
    def test_a_fixtures_context_is_named(self, ourtester):
        """A request context a fixture pushed is named by the fixture, in
        the message and in CG101's fix."""
        ourtester.makepyfile(
            test_fixture="""
            import pytest
            from flask import g
            from shop import create_app


            @pytest.fixture
            def app():
                return create_app()


            @pytest.fixture
            def req_ctx(app):
                with app.test_request_context("/fixture"):
                    yield


            def test_fixture_context(app, req_ctx):
                client = app.test_client()
                client.get("/plain")
                g.user = "alice"
                assert b"alice" == client.get("/get").data
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "CG101 g-leak: 'g.user' was read during GET /get (request *)"
                " but was set during the fixture 'req_ctx' (request *).",
                "  fix: the two requests shared the application context of"
                " the fixture 'req_ctx'; don't keep per-request values on"
                " 'g' between test-client requests: *",
            ]
        )
        result.stdout.fnmatch_lines(
            [
                "test_fixture.py::test_fixture_context: CG101 g-leak: g.user"
                " from the fixture 'req_ctx' into GET /get",
            ]
        )

    @needs_shared_g
    def test_a_fixtures_app_context_is_named_in_the_fix(self, ourtester):
        """Two test-client requests sharing the app context a session-wide
        fixture pushed: CG101's fix names that fixture."""
        ourtester.makepyfile(
            test_app_ctx="""
            import pytest
            from shop import create_app


            @pytest.fixture(scope="session")
            def app():
                app = create_app()
                with app.app_context():
                    yield app


            def test_two_requests(app):
                client = app.test_client()
                client.get("/set/alice")
                assert b"alice" == client.get("/get").data
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "CG101 g-leak: 'g.user' was read during GET /get (request *)"
                " but was set during GET /set/alice (request *).",
                "  fix: the two requests shared the application context of"
                " the fixture 'app'; don't keep per-request values on 'g'"
                " between test-client requests: push that context only in"
                " the tests that need it, and set per-request values on 'g'"
                " in every request (before_request).",
            ]
        )


class TestGuardedNothing:
    def test_no_flask_installed(self, ourtester, no_flask_python, monkeypatch):
        """Where Flask is not installed, the plugin says the guard cannot
        be imported, strict exits 1, and a test asking for the fixture
        errors with that reason; nothing crashes."""
        checkout = str(Path(flask_ctxguard.__file__).parent.parent)
        monkeypatch.setenv("PYTHONPATH", checkout)
        ourtester.makepyfile(
            test_plain="def test_plain():\n    assert 1\n",
            test_fixture="def test_fixture(ctxguard):\n    assert 1\n",
        )
        reason = (
            'flask_ctxguard cannot be imported: ModuleNotFoundError("No'
            " module named 'flask'\")"
        )

        result = ourtester.run(
            no_flask_python,
            "-m",
            "pytest",
            "-p",
            "flask_ctxguard.pytest_plugin",
            "--ctxguard",
            timeout=120,
        )

        assert "INTERNALERROR" not in result.stdout.str()
        result.assert_outcomes(passed=1, errors=1)
        assert pytest.ExitCode.TESTS_FAILED == result.ret
        result.stdout.fnmatch_lines(
            [
                f"ctxguard: guarding nothing: {reason}",
                f"E * Failed: ctxguard: guarding nothing: {reason}",
                f"ctxguard: guarded nothing: {reason}",
            ]
        )

    def test_an_app_that_cannot_be_guarded(self, ourtester):
        """The only app cannot be guarded (a bad key): the closing line
        says the run guarded nothing and why, and strict exits 1."""
        ourtester.makepyfile(
            test_bad="""
            from shop import create_app


            def test_bad_config():
                app = create_app("bad")
                app.config["CTXGUARD_MODE"] = "loud"
                assert b"plain" == app.test_client().get("/plain").data
            """
        )

        strict = run(ourtester, "--ctxguard")
        warn = run(ourtester, "--ctxguard=warn")

        strict.assert_outcomes(passed=1)
        assert pytest.ExitCode.TESTS_FAILED == strict.ret
        strict.stdout.fnmatch_lines(
            [
                "ctxguard: guarded nothing: app 'bad' not guarded:"
                " CTXGUARD_MODE must be one of 'raise', 'log', 'off'; got"
                " 'loud'."
            ]
        )
        strict.stdout.no_fnmatch_line("ctxguard: 0 findings*")
        assert pytest.ExitCode.OK == warn.ret

    def test_an_app_that_cannot_be_guarded_under_xdist(self, ourtester):
        """Under pytest-xdist the workers' problems reach the controller:
        the run says it guarded nothing, and strict exits 1."""
        pytest.importorskip("xdist")
        ourtester.makepyfile(
            test_bad="""
            from shop import create_app


            def test_bad_config():
                app = create_app("bad")
                app.config["CTXGUARD_MODE"] = "loud"
                assert b"plain" == app.test_client().get("/plain").data
            """
        )

        result = run(ourtester, "-n", "2", "--ctxguard", subprocess=True)

        result.assert_outcomes(passed=1)
        assert pytest.ExitCode.TESTS_FAILED == result.ret
        result.stdout.fnmatch_lines(
            [
                "problem: app 'bad' not guarded: CTXGUARD_MODE must be*",
                "ctxguard: guarded nothing: app 'bad' not guarded: *",
            ]
        )

    def test_a_suite_without_flask(self, ourtester):
        """A run in which no app handled a request says nothing was
        checked, not '0 findings', and passes."""
        ourtester.makepyfile(test_plain="def test_plain():\n    assert 1\n")

        result = run(ourtester, "--ctxguard")

        assert pytest.ExitCode.OK == result.ret
        result.stdout.fnmatch_lines(
            [
                "ctxguard: nothing checked: no Flask app pushed a context or"
                " handled a request"
            ]
        )

    def test_unsupported_flask(self, ourtester, old_flask_python, monkeypatch):
        """On Flask 2.1.3 (no ContextVars), the header and the closing
        section say the run guards nothing and why; strict exits 1, warn
        0; an app's own guard neither raises nor logs in the run; outside
        pytest, CtxGuard(app) in log mode says it once, at warning level,
        and exposes it."""
        checkout = str(Path(flask_ctxguard.__file__).parent.parent)
        monkeypatch.setenv("PYTHONPATH", checkout)
        ourtester.makepyfile(test_leaky=LEAKY, test_own=OWN_GUARD_NO_KEY)
        reason = (
            "flask_ctxguard cannot guard Flask 2.1.3: flask.globals has no"
            " '_cv_request' / '_cv_app' ContextVars. Supported are Flask"
            " 2.3, 3.0, 3.1 and 3.2."
        )
        ourtester.makepyfile(
            guard_script="""
            import structlog
            from flask import Flask
            from flask_ctxguard import CtxGuard

            structlog.configure(
                processors=[
                    structlog.processors.add_log_level,
                    structlog.processors.JSONRenderer(sort_keys=True),
                ]
            )
            guard = CtxGuard()
            app_one, app_two = Flask("one"), Flask("two")
            guard.init_app(app_one)
            guard.init_app(app_two)
            print("active:", guard.active)
            print("reason:", guard.inactive_reason)
            """
        )

        def inner(*args: str) -> pytest.RunResult:
            return ourtester.run(
                old_flask_python,
                "-m",
                "pytest",
                "-p",
                "flask_ctxguard.pytest_plugin",
                *args,
                timeout=120,
            )

        strict = inner("--ctxguard", "-s")
        warn = inner("--ctxguard=warn")
        script = ourtester.run(old_flask_python, "guard_script.py")

        # The app's own guard (TESTING, so raise mode) follows the run:
        # it neither raises nor logs; the plugin says it.
        strict.assert_outcomes(passed=3)
        strict.stdout.no_fnmatch_line("*unsupported-flask*")
        for result in (strict, warn):
            assert "INTERNALERROR" not in result.stdout.str()
            result.stdout.fnmatch_lines(
                [
                    f"ctxguard: guarding nothing: {reason}",
                    "*= ctxguard =*",
                    f"ctxguard: guarded nothing: {reason}",
                ]
            )
        strict.stdout.fnmatch_lines([HEADER["strict"]])
        assert pytest.ExitCode.TESTS_FAILED == strict.ret
        assert pytest.ExitCode.OK == warn.ret
        logged = [line for line in script.outlines if "unsupported" in line]
        assert 1 == len(logged), script.outlines
        assert '"level": "warning"' in logged[0]
        script.stdout.fnmatch_lines(["active: False", f"reason: {reason}"])


#: The unsupported Flask the test above runs on, and its Werkzeug.
OLD_FLASK = ("flask==2.1.3", "werkzeug==2.1.2", "blinker", "structlog")


def _venv(name: str, packages: tuple[str, ...]) -> str:
    """
    The Python of a venv with pytest and *packages*, made once per
    machine and Python version under the temporary directory; skips the
    test if pip cannot install them.
    """
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    venv = Path(tempfile.gettempdir()) / f"flask_ctxguard-{name}-{version}"
    python = venv / "bin" / "python"
    done = venv / ".complete"
    if not done.exists():
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-m", "venv", str(venv)], check=True, timeout=300
        )
        install = subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "pytest",
                *packages,
            ],
            capture_output=True,
            timeout=600,
            check=False,
        )
        if install.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.skip(
                f"pip could not install {packages} (no access to PyPI?):"
                f" {install.stderr.decode()[-300:]}"
            )
        done.touch()
    return str(python)


@pytest.fixture(scope="session", name="old_flask_python")
def _old_flask_python():
    """
    A Python with Flask 2.1.3, which the guard cannot run on
    (flask_ctxguard itself comes from this checkout, through PYTHONPATH).
    """
    return _venv("flask-2.1", OLD_FLASK)


@pytest.fixture(scope="session", name="no_flask_python")
def _no_flask_python():
    """A Python with pytest and neither Flask nor structlog."""
    return _venv("no-flask", ())
