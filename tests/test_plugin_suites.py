"""
The pytest plugin on the shapes real suites have, through pytester: a
module-level app, pytest-flask's request context pushed around every test,
unittest.TestCase with setUp contexts, a ContextVar left by one test before
a clean one, an app with its own guard under each run option, pytest-xdist,
and the cost of the plugin when it is off.
"""

from __future__ import annotations

import sys

import pytest

from tests._compat import needs_shared_g
from tests.pytester_helpers import LEAKY, line_of, run, write_ini

#: An app configured as in the Quick Start: its own guard, TESTING on.
OWN_GUARD = """
    from flask_ctxguard import CtxGuard
    from shop import create_app, leak_g


    def test_leaky():
        app = create_app()
        app.config.update(TESTING=True)
        CtxGuard(app)
        assert b"alice" == leak_g(app)


    def test_clean():
        app = create_app()
        app.config.update(TESTING=True)
        CtxGuard(app)
        assert b"None" == app.test_client().get("/get").data
"""


class TestPrecedence:
    @needs_shared_g
    def test_warn_wins_over_an_apps_raise_mode(self, ourtester):
        """--ctxguard=warn: an app's own raise-mode guard raises nothing,
        tests pass and the finding is listed."""
        ourtester.makepyfile(test_own=OWN_GUARD)

        result = run(ourtester, "--ctxguard=warn", subprocess=True)

        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(
            [
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "  in test: test_own.py::test_leaky",
                "ctxguard: 1 finding in 1 test",
            ]
        )
        result.stdout.no_fnmatch_line("*ContaminationError*")

    @needs_shared_g
    def test_strict_decides_the_outcome(self, ourtester):
        """--ctxguard: the plugin fails the test with its report, not the
        app's guard with an exception in the middle of the request."""
        ourtester.makepyfile(test_own=OWN_GUARD)

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(failed=1, passed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ test_leaky _*",
                "1 request-context contamination finding:",
            ]
        )
        result.stdout.no_fnmatch_line("*ContaminationError*")

    @needs_shared_g
    def test_off_leaves_the_apps_configuration(self, ourtester):
        """--ctxguard=off: the app's own raise-mode guard raises, as it
        does without the plugin (the positive control of the two above)."""
        ourtester.makepyfile(test_own=OWN_GUARD)

        result = run(ourtester, "--ctxguard=off", subprocess=True)

        result.assert_outcomes(failed=1, passed=1)
        result.stdout.fnmatch_lines(["*ContaminationError: CG101 g-leak*"])
        result.stdout.no_fnmatch_line("*= ctxguard =*")

    @needs_shared_g
    def test_no_structlog_copy_unless_asked(self, ourtester):
        """The plugin's report is the only channel: structlog's copy of a
        finding shows only with --ctxguard-log."""
        ourtester.makepyfile(test_leaky=LEAKY)

        quiet = run(ourtester, "--ctxguard", subprocess=True)
        loud = run(ourtester, "--ctxguard", "--ctxguard-log", subprocess=True)

        quiet.assert_outcomes(failed=1, passed=1)
        quiet.stdout.no_fnmatch_line("*contamination *code=CG101*")
        loud.assert_outcomes(failed=1, passed=1)
        loud.stdout.fnmatch_lines(["*contamination *code=CG101*"])


class TestSuiteShapes:
    def test_module_level_app(self, ourtester):
        """An app built at import time, used by every test: the leaking
        test fails, the clean one passes."""
        ourtester.makepyfile(
            test_module_app="""
            from shop import create_app, leak_g

            app = create_app()
            client = app.test_client()


            def test_leaky():
                assert b"alice" == leak_g(app)


            def test_set():
                assert b"bob" == client.get("/set/bob").data


            def test_get_in_a_later_request():
                assert b"None" == client.get("/get").data
            """
        )

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(failed=1, passed=2)
        result.stdout.fnmatch_lines(["FAILED test_module_app.py::test_leaky*"])

    @needs_shared_g
    def test_pytest_flask_context_per_test(self, ourtester):
        """pytest-flask's request context, pushed and popped around every
        test, is a harness context: no CG105 and no CG101 across tests;
        two requests of one test sharing its 'g' are still caught."""
        pytest.importorskip("pytest_flask")
        ourtester.makeini(
            "[pytest]\nconsole_output_style = classic\n"
            "addopts = -p no:cacheprovider\n"
        )
        ourtester.makeconftest(
            """
            import pytest
            from shop import create_app


            @pytest.fixture
            def app():
                return create_app()
            """
        )
        ourtester.makepyfile(
            test_flask="""
            def test_set(client):
                assert b"alice" == client.get("/set/alice").data


            def test_get(client):
                assert b"None" == client.get("/get").data


            def test_both_in_one_test(client):
                client.get("/set/carol")
                assert b"carol" == client.get("/get").data
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=1, passed=2)
        result.stdout.fnmatch_lines(
            ["FAILED test_flask.py::test_both_in_one_test - 1 request-*"]
        )
        result.stdout.no_fnmatch_line("*CG105*")

    def test_unittest_setup_contexts(self, ourtester):
        """A TestCase that pushes contexts in setUp and pops them in
        tearDown is clean; one that never pops is CG105 at teardown."""
        ourtester.makepyfile(
            test_cases="""
            import unittest

            from shop import create_app


            class TestPopped(unittest.TestCase):
                def setUp(self):
                    self.app = create_app()
                    self.ctx = self.app.test_request_context("/")
                    self.ctx.push()

                def tearDown(self):
                    self.ctx.pop()

                def test_plain(self):
                    client = self.app.test_client()
                    self.assertEqual(b"plain", client.get("/plain").data)


            class TestLeft(unittest.TestCase):
                def setUp(self):
                    self.app = create_app("left")
                    self.app.app_context().push()

                def test_plain(self):
                    client = self.app.test_client()
                    self.assertEqual(b"plain", client.get("/plain").data)


            class TestLater(unittest.TestCase):
                def test_no_context(self):
                    from flask import has_app_context

                    self.assertFalse(has_app_context())
            """
        )
        pushed = line_of(ourtester, "test_cases.py", "app_context().push()")

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(passed=3, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*_ ERROR at teardown of TestLeft.test_plain _*",
                "CG105 context-leak: an app context of the app 'left' is*",
                "  found at:  test_cases.py:* in TestLeft.test_plain",
                f"  pushed at: test_cases.py:{pushed} in setUp",
            ]
        )


#: Test A sets a ContextVar in a request and never resets it; test B is
#: clean and runs after it.
CONTEXTVAR_LEFT = """
    from shop import create_app, tenant

    tenant.set("base")


    def test_a_leaves_tenant():
        assert b"acme" == create_app().test_client().get("/tenant/acme").data


    def test_b_clean():
        assert b"plain" == create_app().test_client().get("/plain").data
        assert "{expected}" == tenant.get()
"""


class TestContextVarLeftByATest:
    def test_strict_blames_the_test_that_left_it(self, ourtester):
        """Strict: the test whose request left the ContextVar set errors at
        its teardown, and the value is restored, so the next test passes."""
        ourtester.makepyfile(
            test_order=CONTEXTVAR_LEFT.replace("{expected}", "base")
        )

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(passed=2, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*_ ERROR at teardown of test_a_leaves_tenant _*",
                "CG106 contextvar-leak: ContextVar 'tenant' still held, when"
                " the test ended, the value that GET /tenant/acme (request *,"
                " endpoint 'set_tenant') set and never reset; *",
                "  held during: the end of"
                " test_order.py::test_a_leaves_tenant",
                "  set at:      GET /tenant/acme (endpoint 'set_tenant')",
                "  fix: reset 'tenant' with the token its set() returned*",
            ]
        )
        result.stdout.no_fnmatch_line("*call 'structlog.contextvars.clear*")

    def test_warn_changes_nothing(self, ourtester):
        """Warn: both tests pass, the ContextVar is not restored (as in a
        bare run) and the leak is listed once, for the test that left it."""
        ourtester.makepyfile(
            test_order=CONTEXTVAR_LEFT.replace("{expected}", "acme")
        )

        result = run(ourtester, "--ctxguard=warn", subprocess=True)

        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(
            [
                "CG106 contextvar-leak: ContextVar 'tenant' still held*",
                "  in test: test_order.py::test_a_leaves_tenant",
                "ctxguard: 1 finding in 1 test",
            ]
        )
        result.stdout.no_fnmatch_line("*test_order.py::test_b_clean*")

    def test_a_leak_inside_one_test_stays_that_tests(self, ourtester):
        """Two requests of one test, the second holding the first's value,
        are one CG106 finding of that test, not two."""
        ourtester.makepyfile(
            test_inside="""
            from shop import create_app


            def test_both():
                client = create_app().test_client()
                client.get("/tenant/acme")
                assert b"plain" == client.get("/plain").data
            """
        )

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(failed=1, errors=0)
        result.stdout.fnmatch_lines(
            [
                "1 request-context contamination finding:",
                "CG106 contextvar-leak: ContextVar 'tenant' held, for the"
                " whole of GET /plain*",
            ]
        )

    @pytest.mark.parametrize(
        ("scope", "outcomes"),
        [("session", {"passed": 2}), ("function", {"failed": 2})],
    )
    def test_a_fixtures_own_value(self, ourtester, scope, outcomes):
        """A ContextVar a session fixture's request leaves set is the
        fixture's, never a test's; the same fixture at function scope
        leaves it in each test that uses it (the positive control)."""
        ourtester.makepyfile(
            test_fixture=f"""
            import pytest
            from shop import create_app


            @pytest.fixture(scope={scope!r})
            def tenant_acme(request):
                create_app().test_client().get(f"/tenant/{{request.node.name}}")


            def test_one(tenant_acme):
                client = create_app().test_client()
                assert b"plain" == client.get("/plain").data


            def test_two(tenant_acme):
                client = create_app().test_client()
                assert b"plain" == client.get("/plain").data
            """
        )

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(**outcomes)


class TestStacks:
    STACKED = """
        from shop import create_app, leak_g


        def test_leaky():
            app = create_app()
            app.config.update(TESTING=True)
            assert b"alice" == leak_g(app)
    """

    @needs_shared_g
    def test_strict_report_has_no_pytest_frames(self, ourtester):
        """Stacks keep the user's frames and fold pytest's and pluggy's
        into one line."""
        ourtester.makepyfile(test_stacks=self.STACKED)

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "  read at (stack):",
                "*[* frames of runpy, pytest, pluggy]",
                '*File "*test_stacks.py", line *, in test_leaky',
            ]
        )
        failure = result.stdout.str().split("= ctxguard =")[0]
        assert "pluggy" + "/" not in failure
        assert "_pytest/" not in failure

    @needs_shared_g
    def test_xdist_workers_frames_fold(self, ourtester):
        """Under pytest-xdist, the frames of execnet and xdist that start
        a worker's stack fold like pytest's."""
        pytest.importorskip("xdist")
        ourtester.makepyfile(test_stacks=self.STACKED)

        result = run(ourtester, "-n", "2", "--ctxguard", subprocess=True)

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "  read at (stack):",
                "    ?* frames of execnet, xdist, pluggy, pytest?",
                '*File "*test_stacks.py", line *, in test_leaky',
            ]
        )
        failure = result.stdout.str().split("= ctxguard =")[0]
        assert '"<string>"' not in failure
        assert "execnet" + "/" not in failure
        assert "xdist" + "/" not in failure
        assert "threading.py" not in failure

    @needs_shared_g
    def test_full_stacks_on_request(self, ourtester):
        """--ctxguard-full-stacks keeps every frame (the positive control
        of the trimming)."""
        ourtester.makepyfile(test_stacks=self.STACKED)

        result = run(
            ourtester, "--ctxguard", "--ctxguard-full-stacks", subprocess=True
        )

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(['*File "*pluggy*", line *'])


class TestXdist:
    @needs_shared_g
    def test_summary_counts_the_workers_findings(self, ourtester):
        """Under pytest-xdist the closing summary lists what the workers
        found: one bug hit by a test on each worker is one finding, listed
        once with both tests."""
        pytest.importorskip("xdist")
        ourtester.makepyfile(
            test_a=LEAKY, test_b=LEAKY.replace("test_leaky", "test_leaky_b")
        )

        result = run(ourtester, "-n", "2", "--ctxguard=warn", subprocess=True)

        result.assert_outcomes(passed=4)
        result.stdout.fnmatch_lines(
            [
                "*= ctxguard =*",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "  in 2 tests: test_*.py::test_leaky*, test_*.py::test_leaky*",
                "ctxguard: 1 finding in 2 tests",
            ]
        )
        result.stdout.fnmatch_lines(["*test_a.py::test_leaky*"])
        result.stdout.fnmatch_lines(["*test_b.py::test_leaky_b*"])
        assert 1 == result.stdout.str().count("CG101 g-leak: 'g.user'")

    @needs_shared_g
    def test_strict_under_xdist(self, ourtester):
        """Strict outcomes and the short summary under pytest-xdist."""
        pytest.importorskip("xdist")
        ourtester.makepyfile(test_a=LEAKY)

        result = run(ourtester, "-n", "2", "--ctxguard", subprocess=True)

        result.assert_outcomes(failed=1, passed=1)
        result.stdout.fnmatch_lines(
            [
                "test_a.py::test_leaky: CG101 g-leak: g.user from GET"
                " /set/alice into GET /get",
                "ctxguard: 1 finding in 1 test",
            ]
        )


#: A conftest that fails the run if anything heavy was imported.
NOTHING_HEAVY = """
    import sys


    def pytest_sessionfinish(session):
        heavy = sorted(
            name
            for name in sys.modules
            if name.split(".")[0] in ("flask", "structlog", "werkzeug")
            or name.startswith("flask_ctxguard._")
        )
        assert [] == heavy, heavy
        assert "flask_ctxguard.pytest_plugin" in sys.modules
"""


def _run_a_plain_suite_with_w_error(
    pytester: pytest.Pytester, *args: str
) -> pytest.RunResult:
    """
    Run pytest with *args* under 'python -W error' on a suite of one plain
    test, with a conftest that fails the run if anything heavy was imported.
    """
    write_ini(pytester)
    pytester.makeconftest(NOTHING_HEAVY)
    pytester.makepyfile(test_plain="def test_plain():\n    assert 1\n")
    return pytester.run(
        sys.executable, "-W", "error", "-m", "pytest", "-p", "no:xdist", *args
    )


class TestLazyPlugin:
    def test_off_imports_nothing_heavy(self, pytester):
        """With the plugin off, a non-Flask suite under 'python -W error'
        passes and imports neither Flask, structlog nor our internals."""
        result = _run_a_plain_suite_with_w_error(pytester)

        assert 0 == result.ret, result.stdout.str()
        result.stdout.fnmatch_lines(["*1 passed*"])

    def test_enabled_imports_the_guard(self, pytester):
        """The positive control: with --ctxguard the same check fails,
        because the guard is imported."""
        result = _run_a_plain_suite_with_w_error(pytester, "--ctxguard")

        assert 0 != result.ret
        result.stdout.fnmatch_lines(["*flask*"])
