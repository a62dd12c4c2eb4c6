"""
The pytest plugin's contexts, apps, fixture and marker, through pytester
only: CG105 at teardown, harness contexts, every kind of app, the
'ctxguard' fixture, 'ctxguard_allow' and warnings as errors.
"""

from __future__ import annotations

import pytest

from tests._compat import needs_shared_g
from tests.pytester_helpers import (
    HEADER,
    LEAKY,
    assert_context_leak_caught,
    line_of,
    run,
    write_ini,
)


class TestContextLeaks:
    def test_leaked_contexts_fail_and_are_popped(self, ourtester):
        """
        Contexts a test or its fixtures leave pushed are CG105, found after
        the test's teardown (an error at teardown), and are popped, so a
        later test runs outside them.
        """
        ourtester.makepyfile(
            test_ctx="""
            import pytest
            from flask import has_app_context, has_request_context
            from shop import create_app


            @pytest.fixture
            def leaky_fixture():
                create_app("fixture").app_context().push()


            def test_request_context():
                create_app().test_request_context("/leak").push()


            def test_app_context():
                create_app("other").app_context().push()


            def test_leaky_fixture(leaky_fixture):
                pass


            def test_later():
                assert not has_request_context()
                assert not has_app_context()
            """
        )
        site = line_of(ourtester, "test_ctx.py", "def test_request_context")

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(passed=4, errors=3)
        result.stdout.fnmatch_lines(
            [
                "*_ ERROR at teardown of test_request_context _*",
                "CG105 context-leak: the request context of GET /leak of the"
                " app 'shop' is still pushed in thread 'MainThread';"
                " everything that runs after it shares its request, session"
                " and 'g'.",
                f"  found at:  test_ctx.py:{site} in test_request_context",
                "  fix: pop every context you push: *",
                "  docs: https://flask-ctxguard.readthedocs.io/en/latest/rules/"
                "cg105.html (offline: *",
                "*_ ERROR at teardown of test_app_context _*",
                "CG105 context-leak: an app context of the app 'other' is"
                " still pushed in thread 'MainThread'; everything that runs"
                " after it shares its 'g'.",
                "*_ ERROR at teardown of test_leaky_fixture _*",
                "CG105 context-leak: an app context of the app 'fixture' is"
                " still pushed in thread 'MainThread'; *",
            ]
        )
        result.stdout.fnmatch_lines(["ctxguard: 3 findings in 3 tests"])

    def test_harness_contexts_are_not_leaks(self, ourtester):
        """
        Contexts that fixtures of any scope push and pop again are no CG105.
        """
        ourtester.makeconftest(
            """
            import pytest
            from shop import create_app


            @pytest.fixture(scope="session")
            def session_app():
                app = create_app("session")
                with app.app_context():
                    yield app


            @pytest.fixture(scope="module")
            def module_app():
                app = create_app("module")
                ctx = app.app_context()
                ctx.push()
                yield app
                ctx.pop()


            @pytest.fixture
            def request_app():
                # pytest-flask's pattern: a request context around the test.
                app = create_app("function")
                ctx = app.test_request_context("/harness")
                ctx.push()
                yield app
                ctx.pop()
            """
        )
        test = """
            from flask import has_app_context, request


            def test_session(session_app):
                assert has_app_context()
                assert b"None" == session_app.test_client().get("/get").data


            def test_module(module_app):
                assert b"plain" == module_app.test_client().get("/plain").data


            def test_function(request_app):
                assert "/harness" == request.path
                assert b"None" == request_app.test_client().get("/get").data


            def test_nothing():
                pass
        """
        ourtester.makepyfile(test_one=test, test_two=test)

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(passed=8)
        result.stdout.fnmatch_lines(["ctxguard: 0 findings in 0 tests"])
        result.stdout.no_fnmatch_line("*CG105*")
        assert_context_leak_caught(ourtester)

    def test_context_pushed_by_a_fixture_helper(self, ourtester):
        """
        A context a fixture's helper pushes during the test and the fixture
        pops in its teardown is a harness context, not a leak.
        """
        ourtester.makepyfile(
            test_helper="""
            import pytest
            from flask import request
            from shop import create_app


            @pytest.fixture
            def push_request():
                app = create_app()
                pushed = []

                def push(path):
                    ctx = app.test_request_context(path)
                    ctx.push()
                    pushed.append(ctx)

                yield push
                for ctx in reversed(pushed):
                    ctx.pop()


            def test_helper(push_request):
                push_request("/helper")
                assert "/helper" == request.path
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(passed=1)
        result.stdout.no_fnmatch_line("*CG105*")
        assert_context_leak_caught(ourtester)


class TestApps:
    @needs_shared_g
    def test_every_kind_of_app_is_guarded(self, ourtester):
        """
        Apps from fixtures, factories, with their own guard (reused), and
        several apps in one test are all guarded.
        """
        ourtester.makepyfile(
            test_apps="""
            import pytest
            from flask_ctxguard import CtxGuard
            from shop import create_app, leak_g

            guard = CtxGuard()


            def create_guarded_app(name):
                app = create_app(name)
                app.config["CTXGUARD_MODE"] = "log"
                guard.init_app(app)
                return app


            @pytest.fixture
            def app():
                return create_app("from_fixture")


            def test_fixture(app):
                assert b"alice" == leak_g(app)


            def test_factory():
                assert b"alice" == leak_g(create_app("from_factory"))


            def test_own_guard():
                app = create_guarded_app("own")

                assert b"alice" == leak_g(app)
                assert guard is app.extensions["ctxguard"].guard
                assert ["CG101"] == [v.code for v in guard.violations]


            def test_several_apps():
                assert b"alice" == leak_g(create_app("first"))
                assert b"alice" == leak_g(create_app("second"))
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=4)
        result.stdout.fnmatch_lines(
            [
                "*_ test_fixture _*",
                "1 request-context contamination finding:",
                "CG101 g-leak: *",
                "*_ test_factory _*",
                "CG101 g-leak: *",
                "*_ test_own_guard _*",
                "1 request-context contamination finding:",
                "CG101 g-leak: *",
                "*_ test_several_apps _*",
                "2 request-context contamination findings:",
                "CG101 g-leak: *",
                "CG101 g-leak: *",
            ]
        )
        result.stdout.no_fnmatch_line("*AlreadyRegisteredError*")
        result.stdout.no_fnmatch_line("*AssertionError*")

    @needs_shared_g
    def test_factory_that_pushes_a_context_before_init_app(self, ourtester):
        """
        An app factory may push an app context (to create tables, say)
        before it installs its own CtxGuard, which then reports.
        """
        ourtester.makepyfile(
            test_late="""
            import pytest
            from flask_ctxguard import CtxGuard
            from shop import create_app, leak_g

            guard = CtxGuard()


            def create_guarded_app():
                app = create_app("late")
                app.config["CTXGUARD_MODE"] = "log"
                with app.app_context():
                    pass  # db.create_all(), seeding, ...
                guard.init_app(app)
                return app


            @pytest.mark.ctxguard_allow("CG101")
            def test_late():
                app = create_guarded_app()

                assert guard is app.extensions["ctxguard"].guard
                assert b"alice" == leak_g(app)
                assert ["CG101"] == [v.code for v in guard.violations]
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(passed=1)
        result.stdout.no_fnmatch_line("*AlreadyRegisteredError*")

    def test_app_with_bad_config(self, ourtester):
        """
        An app the plugin cannot guard because of its config is named once
        in the summary, however many requests it handles.
        """
        ourtester.makepyfile(
            test_bad_config="""
            from shop import create_app


            def test_bad_config():
                app = create_app("bad")
                app.config["CTXGUARD_MODE"] = "loud"
                client = app.test_client()
                for _ in range(3):
                    assert b"plain" == client.get("/plain").data
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(passed=1)
        problems = [
            line for line in result.stdout.lines if line.startswith("problem")
        ]
        assert [
            "problem: app 'bad' not guarded: CTXGUARD_MODE must be one of"
            " 'raise', 'log', 'off'; got 'loud'."
        ] == problems


class TestFixture:
    @needs_shared_g
    def test_fixture_without_option(self, ourtester):
        """
        The ctxguard fixture guards its test without the option: its
        violations, expect() and assert_clean().
        """
        ourtester.makepyfile(
            test_fixture="""
            from flask_ctxguard import CtxGuard
            from shop import create_app, leak_g


            def test_violations(ctxguard):
                assert [] == ctxguard.violations
                with ctxguard.expect("CG101"):
                    leak_g(create_app())
                    assert ["CG101"] == [v.code for v in ctxguard.violations]
                assert [] == ctxguard.violations


            def test_expect_absorbs(ctxguard):
                with ctxguard.expect("CG101") as absorbed:
                    assert b"alice" == leak_g(create_app())
                assert ["CG101"] == [v.code for v in absorbed]


            def test_expect_absorbs_raise_mode(ctxguard):
                app = create_app()
                app.testing = True
                CtxGuard(app)
                client = app.test_client()
                with app.app_context():
                    client.get("/set/alice")
                    with ctxguard.expect("CG101"):
                        client.get("/get")


            def test_expect_without_violation(ctxguard):
                with ctxguard.expect("CG101"):
                    create_app().test_client().get("/get")


            def test_assert_clean(ctxguard):
                leak_g(create_app())
                ctxguard.assert_clean()


            def test_unexpected(ctxguard):
                leak_g(create_app())


            def test_clean(ctxguard):
                assert b"None" == create_app().test_client().get("/get").data
                ctxguard.assert_clean()


            def test_without_fixture():
                assert b"alice" == leak_g(create_app())
            """
        )

        result = run(ourtester)

        result.assert_outcomes(passed=5, failed=3)
        result.stdout.fnmatch_lines(
            [
                "*_ test_expect_without_violation _*",
                "ctxguard.expect(CG101): no such violation happened inside"
                " the block.",
                "*_ test_assert_clean _*",
                "1 request-context contamination finding:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "*_ test_unexpected _*",
                "1 request-context contamination finding:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "ctxguard: 1 finding in 2 tests",
            ]
        )
        # assert_clean's failure shows the finding; no section repeats it.
        assert 2 == result.stdout.str().count("CG101 g-leak: 'g.user'")
        result.stdout.no_fnmatch_line("test_fixture.py::test_without_fixture")
        result.stdout.no_fnmatch_line(HEADER["strict"])

    def test_expect_bad_code(self, ourtester):
        """An unknown code given to expect() is an error naming expect()."""
        ourtester.makepyfile(
            test_bad="""
            def test_bad(ctxguard):
                with ctxguard.expect("CG999"):
                    pass
            """
        )

        result = run(ourtester)

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["E   *ctxguard.expect*'CG999'*"])
        result.stdout.no_fnmatch_line("*ctxguard_allow*")


class TestMarker:
    @needs_shared_g
    def test_allow(self, ourtester):
        """
        Allowed codes do not fail a test, others still do, and an unknown
        code is an error that lists the known ones.
        """
        ourtester.makepyfile(
            test_marker="""
            import pytest
            from shop import create_app, leak_g


            @pytest.mark.ctxguard_allow("CG101")
            def test_allowed():
                assert b"alice" == leak_g(create_app())


            @pytest.mark.ctxguard_allow("CG102", "CG103")
            def test_other_code():
                assert b"alice" == leak_g(create_app())


            @pytest.mark.ctxguard_allow("CG999")
            def test_bad_code():
                pass
            """
        )

        result = run(ourtester, "--ctxguard", "--strict-markers")

        result.assert_outcomes(passed=1, failed=1, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*_ ERROR at setup of test_bad_code _*",
                "E * @pytest.mark.ctxguard_allow got 'CG999'; pass codes"
                " such as 'CG101' (known: CG101, CG102, CG103, CG104, CG105,"
                " CG106).",
                "*_ test_other_code _*",
                "CG101 g-leak: *",
                "ctxguard: 1 finding in 1 test",
            ]
        )

    def test_markers(self, ourtester):
        """pytest --markers documents ctxguard_allow and its arguments."""
        result = run(ourtester, "--markers")

        assert pytest.ExitCode.OK == result.ret
        result.stdout.fnmatch_lines(
            [
                "@pytest.mark.ctxguard_allow(*codes): violations of these"
                " codes (such as 'CG101') do not fail the test and are not"
                " reported."
            ]
        )


class TestWarnings:
    @pytest.mark.parametrize(
        ("mode", "outcomes"),
        [("warn", {"passed": 2}), ("strict", {"passed": 1, "failed": 1})],
    )
    @needs_shared_g
    def test_no_warnings(self, ourtester, mode, outcomes):
        """Under filterwarnings = error the plugin reports as usual."""
        write_ini(ourtester, "filterwarnings = error")
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester, f"--ctxguard={mode}")

        result.assert_outcomes(**outcomes)
        result.stdout.fnmatch_lines(
            ["*CG101 g-leak: *", "ctxguard: 1 finding in 1 test"]
        )
        result.stdout.no_fnmatch_line("*Warning*")
