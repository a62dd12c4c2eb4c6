"""
The pytest plugin, through pytester only (pytest-randomly's style).

Each test writes a test file and runs pytest on it, in-process where the
inner run leaves no state behind, in a subprocess where it would (a
ContextVar left set, a context left pushed).
"""

from __future__ import annotations

import pytest

from tests._compat import needs_shared_g

#: The app every inner test file builds: one view per kind of mistake.
APP = """
    import contextvars
    import threading

    from flask import Flask, g, request

    tenant = contextvars.ContextVar("tenant")
    kept = []


    def create_app(name="shop"):
        app = Flask(name)

        @app.route("/set/<name>")
        def set_user(name):
            g.user = name
            return name

        @app.route("/get")
        def get():
            return str(getattr(g, "user", None))

        @app.route("/keep")
        def keep():
            kept.append(request._get_current_object())
            return "kept"

        @app.route("/peek")
        def peek():
            return kept[-1].args.get("x", "none")

        @app.route("/thread")
        def in_thread():
            raw = request._get_current_object()
            seen = []
            worker = threading.Thread(
                target=lambda: seen.append(raw.args.get("x")), name="worker"
            )
            worker.start()
            worker.join(5)
            return repr(seen)

        @app.route("/tenant/<name>")
        def set_tenant(name):
            tenant.set(name)
            return name

        @app.route("/plain")
        def plain():
            return "plain"

        return app


    def leak_g(app):
        client = app.test_client()
        with app.app_context():
            client.get("/set/alice")
            return client.get("/get").data
"""

#: One test that shares 'g' between two requests (CG101), one clean test.
LEAKY = """
    from shop import create_app, leak_g


    def test_leaky():
        assert b"alice" == leak_g(create_app())


    def test_clean():
        client = create_app().test_client()

        assert b"bob" == client.get("/set/bob").data
        assert b"None" == client.get("/get").data
"""

#: The positive control of a test that expects no CG105: a test that
#: leaves an app context pushed.
CONTEXT_LEAK = """
    from shop import create_app


    def test_leaves_a_context_pushed():
        create_app("leak").app_context().push()
"""


def assert_context_leak_caught(pytester: pytest.Pytester) -> None:
    """The same plugin, in the same directory, reports a real CG105."""
    pytester.makepyfile(test_control_leak=CONTEXT_LEAK)

    result = run(pytester, "--ctxguard", "test_control_leak.py")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*CG105 context-leak: an app context*"])


def assert_leak_caught(pytester: pytest.Pytester) -> None:
    """The same LEAKY file under strict --ctxguard fails its leaky test."""
    result = run(pytester, "--ctxguard")

    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["CG101 g-leak: *"])


#: One test per violation code, each passing without the plugin, and a
#: clean one. CG106 comes late: its ContextVar stays set for every later
#: test. CG105 comes last: outside strict mode its context stays pushed.
CODES = """
    from shop import create_app, kept, leak_g


    def test_cg101():
        assert b"alice" == leak_g(create_app())


    def test_cg102():
        app = create_app()
        app.test_client().get("/keep?x=1")

        assert "1" == kept[-1].args["x"]


    def test_cg103():
        client = create_app().test_client()
        client.get("/keep?x=2")

        assert b"2" == client.get("/peek").data


    def test_cg104():
        client = create_app().test_client()

        assert b"['3']" == client.get("/thread?x=3").data


    def test_clean():
        client = create_app().test_client()

        assert b"kept" == client.get("/keep").data
        assert b"None" == client.get("/get").data


    def test_cg105():
        create_app().test_request_context("/leak").push()


    def test_cg106():
        client = create_app().test_client()
        client.get("/tenant/acme")

        assert b"plain" == client.get("/plain").data
"""

HEADER = {
    "strict": "ctxguard: strict (reproduce with --ctxguard=strict)",
    "warn": "ctxguard: warn (reproduce with --ctxguard=warn)",
}


def write_ini(pytester: pytest.Pytester, *lines: str) -> None:
    """Write the inner run's ini: classic output, no cache, *lines*."""
    pytester.makeini(
        "\n".join(
            [
                "[pytest]",
                "console_output_style = classic",
                "addopts = -p no:cacheprovider",
                *lines,
            ]
        )
    )


def run(
    pytester: pytest.Pytester, *args: str, subprocess: bool = False
) -> pytest.RunResult:
    """Run pytest; whatever the outcome, it must not be an INTERNALERROR."""
    if subprocess:
        result = pytester.runpytest_subprocess(*args, timeout=60)
    else:
        result = pytester.runpytest(*args)

    assert "INTERNALERROR" not in result.stdout.str()
    assert "INTERNALERROR" not in result.stderr.str()

    return result


def line_of(pytester: pytest.Pytester, filename: str, text: str) -> int:
    """The 1-based number of the only line of *filename* holding *text*."""
    lines = (pytester.path / filename).read_text().splitlines()
    found = [n for n, line in enumerate(lines, 1) if text in line]

    assert 1 == len(found), found

    return found[0]


@pytest.fixture(name="ourtester")
def _ourtester(pytester):
    """A pytester with the classic ini and the inner app module 'shop'."""
    write_ini(pytester)
    pytester.makepyfile(shop=APP)
    return pytester


def assert_inert(result: pytest.RunResult) -> None:
    """Nothing of the plugin shows in *result*."""
    result.stdout.no_fnmatch_line("ctxguard:*")
    result.stdout.no_fnmatch_line("*= ctxguard =*")
    result.stdout.no_fnmatch_line("*CG1*")


class TestOptions:
    @needs_shared_g
    def test_no_option_is_inert(self, ourtester):
        """Without option or ini key, a leaking test passes, silently."""
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester)

        result.assert_outcomes(passed=2)
        assert_inert(result)
        assert_leak_caught(ourtester)

    @needs_shared_g
    @pytest.mark.parametrize("args", [["--ctxguard"], ["--ctxguard=strict"]])
    def test_strict(self, ourtester, args):
        """--ctxguard and --ctxguard=strict fail the leaking test."""
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester, *args)

        result.assert_outcomes(failed=1, passed=1)
        result.stdout.fnmatch_lines(
            [
                HEADER["strict"],
                "*_ test_leaky _*",
                "CG101 g-leak: *",
                "FAILED test_leaky.py::test_leaky - flask_ctxguard: *",
            ]
        )

    def test_bare_option_before_a_path(self, ourtester):
        """'pytest --ctxguard test_leaky.py' runs the file in strict mode:
        the path is not taken as the option's value."""
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester, "--ctxguard", "test_leaky.py")

        assert pytest.ExitCode.TESTS_FAILED == result.ret
        result.assert_outcomes(failed=1, passed=1)
        result.stdout.fnmatch_lines([HEADER["strict"]])

    @needs_shared_g
    def test_warn(self, ourtester):
        """--ctxguard=warn: tests pass and the violation is summarized."""
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester, "--ctxguard=warn")

        result.assert_outcomes(passed=2)
        result.stdout.fnmatch_lines(
            [
                HEADER["warn"],
                "*= ctxguard =*",
                "test_leaky.py::test_leaky",
                "  CG101 g-leak: 'g.user' was read during GET /get *",
                "ctxguard: 1 violation in 1 test",
            ]
        )

    @needs_shared_g
    def test_off(self, ourtester):
        """--ctxguard=off is the same as no option at all."""
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester, "--ctxguard=off")

        result.assert_outcomes(passed=2)
        assert_inert(result)
        assert_leak_caught(ourtester)

    @pytest.mark.parametrize(
        ("ini", "args", "mode"),
        [
            ("strict", [], "strict"),
            ("warn", [], "warn"),
            ("off", [], "off"),
            ("strict", ["--ctxguard=warn"], "warn"),
            ("strict", ["--ctxguard=off"], "off"),
            ("warn", ["--ctxguard"], "strict"),
            ("off", ["--ctxguard=strict"], "strict"),
        ],
    )
    @needs_shared_g
    def test_ini_and_command_line(self, ourtester, ini, args, mode):
        """The ini key sets the mode; the command line overrides it."""
        write_ini(ourtester, f"ctxguard = {ini}")
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester, *args)

        if mode == "strict":
            result.assert_outcomes(failed=1, passed=1)
            result.stdout.fnmatch_lines([HEADER["strict"], "CG101 g-leak: *"])
        elif mode == "warn":
            result.assert_outcomes(passed=2)
            result.stdout.fnmatch_lines(
                [HEADER["warn"], "ctxguard: 1 violation in 1 test"]
            )
        else:
            result.assert_outcomes(passed=2)
            assert_inert(result)
            assert_leak_caught(ourtester)

    def test_bad_option_value(self, ourtester):
        """An unknown mode is a usage error that lists the valid ones."""
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester, "--ctxguard=loud")

        assert pytest.ExitCode.USAGE_ERROR == result.ret
        result.stderr.fnmatch_lines(
            [
                "*argument --ctxguard: must be one of 'strict', 'warn',"
                " 'off' (or no value for 'strict'); got 'loud'"
            ]
        )

    def test_bad_ini_value(self, ourtester):
        """An unknown mode in the ini file is a usage error too."""
        write_ini(ourtester, "ctxguard = loud")
        ourtester.makepyfile(test_leaky=LEAKY)

        result = run(ourtester)

        assert pytest.ExitCode.USAGE_ERROR == result.ret
        result.stderr.fnmatch_lines(
            [
                "ERROR: the ini key 'ctxguard' must be one of 'strict',"
                " 'warn', 'off'; got 'loud'."
            ]
        )


class TestEveryCode:
    """
    One subprocess run per mode over a file with a test per code: the
    ContextVar of CG106 and the context of CG105 must not reach this run.
    """

    @needs_shared_g
    def test_strict(self, ourtester):
        """Strict mode fails the test of every code, and only those; a
        context left pushed is found after the test's teardown, so it is an
        error at teardown."""
        ourtester.makepyfile(test_codes=CODES)

        result = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(failed=5, passed=2, errors=1)
        result.stdout.fnmatch_lines(
            [
                "*_ ERROR at teardown of test_cg105 _*",
                "CG105 context-leak: the request context of GET /leak of the"
                " app 'shop' is still pushed in thread 'MainThread'; *",
                "*_ test_cg101 _*",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "*_ test_cg102 _*",
                "CG102 stale-access: 'request.args' of GET /keep *"
                " was used after that request ended, outside any request,"
                " in thread 'MainThread'.",
                "*_ test_cg103 _*",
                "CG103 cross-request-access: 'request.args' of GET /keep *"
                " was used during GET /peek *, after that request ended.",
                "*_ test_cg104 _*",
                "CG104 cross-thread-access: 'request.args' of GET /thread *"
                " was used from thread 'worker', *",
                "*_ test_cg106 _*",
                "CG106 contextvar-leak: ContextVar 'tenant' held, for the"
                " whole of GET /plain *, the value that GET /tenant/acme *"
                " set and never reset.",
            ]
        )
        result.stdout.fnmatch_lines(["ctxguard: 6 violations in 6 tests"])

    @needs_shared_g
    def test_warn(self, ourtester):
        """Warn mode passes every test and lists each violation by test."""
        ourtester.makepyfile(test_codes=CODES)

        result = run(ourtester, "--ctxguard=warn", subprocess=True)

        result.assert_outcomes(passed=7)
        result.stdout.fnmatch_lines(
            [
                HEADER["warn"],
                "*= ctxguard =*",
                "test_codes.py::test_cg101",
                "  CG101 g-leak: *",
                "test_codes.py::test_cg102",
                "  CG102 stale-access: *",
                "test_codes.py::test_cg103",
                "  CG103 cross-request-access: *",
                "test_codes.py::test_cg104",
                "  CG104 cross-thread-access: *",
                "test_codes.py::test_cg105",
                "  CG105 context-leak: *",
                "test_codes.py::test_cg106",
                "  CG106 contextvar-leak: *",
                "ctxguard: 6 violations in 6 tests",
            ]
        )
        result.stdout.no_fnmatch_line("test_codes.py::test_clean")

    @needs_shared_g
    def test_off(self, ourtester):
        """With the plugin off, every test passes and nothing is said."""
        ourtester.makepyfile(test_codes=CODES)

        result = run(ourtester, "--ctxguard=off", subprocess=True)
        control = run(ourtester, "--ctxguard", subprocess=True)

        result.assert_outcomes(passed=7)
        assert_inert(result)
        control.assert_outcomes(failed=5, passed=2, errors=1)


class TestStrictMode:
    @needs_shared_g
    def test_failure_text(self, ourtester):
        """The failure is the violation's full report at the user's lines."""
        ourtester.makepyfile(
            test_report="""
            from flask import Flask, g


            def test_leak():
                app = Flask("report")

                @app.route("/set/<name>")
                def set_user(name):
                    g.user = name
                    return name

                @app.route("/get")
                def get():
                    return str(g.user)

                client = app.test_client()
                with app.app_context():
                    client.get("/set/alice")
                    client.get("/get")
            """
        )
        read = line_of(ourtester, "test_report.py", "return str(g.user)")
        written = line_of(ourtester, "test_report.py", "g.user = name")

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*_ test_leak _*"])
        result.stdout.fnmatch_lines(
            [
                "flask_ctxguard: 1 request-context contamination violation"
                " during this test:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get (request *,"
                " thread 'MainThread') but was set during GET /set/alice"
                " (request *).",
                "  value: str",
                f"  read at: test_report.py:{read} in get",
                f"  set at:  test_report.py:{written} in set_user",
                "  fix: the two requests shared one application context;"
                " don't push an app context around test-client requests, *",
                "  docs: docs/rules.md#cg101",
            ],
            consecutive=True,
        )

    @needs_shared_g
    def test_failing_test_keeps_its_own_error(self, ourtester):
        """A test that fails anyway shows its error and a ctxguard section."""
        ourtester.makepyfile(
            test_both="""
            from shop import create_app, leak_g


            def test_both():
                leak_g(create_app())
                assert 1 == 2
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(
            [
                "E       assert 1 == 2",
                "*- ctxguard -*",
                "flask_ctxguard: 1 request-context contamination violation"
                " during this test:",
                "CG101 g-leak: *",
            ]
        )

    def test_request_kept_by_an_earlier_test(self, ourtester):
        """
        A request a test kept in a module cache, read by a later test with
        its own app, fails the later test, though the first app is gone.
        """
        ourtester.makepyfile(
            test_cache="""
            import pytest
            from shop import create_app


            @pytest.fixture
            def app():
                return create_app()


            def test_first(app):
                assert b"kept" == app.test_client().get("/keep?x=1").data


            def test_second(app):
                assert b"1" == app.test_client().get("/peek").data
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(passed=1, failed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ test_second _*",
                "CG103 cross-request-access: 'request.args' of GET /keep *"
                " was used during GET /peek *, after that request ended.",
                "  used at:    shop.py:* in peek",
                "  handled at: shop.py:* in keep",
            ]
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
                "  docs: docs/rules.md#cg105",
                "*_ ERROR at teardown of test_app_context _*",
                "CG105 context-leak: an app context of the app 'other' is"
                " still pushed in thread 'MainThread'; everything that runs"
                " after it shares its 'g'.",
                "*_ ERROR at teardown of test_leaky_fixture _*",
                "CG105 context-leak: an app context of the app 'fixture' is"
                " still pushed in thread 'MainThread'; *",
            ]
        )
        result.stdout.fnmatch_lines(["ctxguard: 3 violations in 3 tests"])

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
        result.stdout.fnmatch_lines(["ctxguard: 0 violations in 0 tests"])
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
                "flask_ctxguard: 1 request-context contamination violation*",
                "CG101 g-leak: *",
                "*_ test_factory _*",
                "CG101 g-leak: *",
                "*_ test_own_guard _*",
                "flask_ctxguard: 1 request-context contamination violation*",
                "CG101 g-leak: *",
                "*_ test_several_apps _*",
                "flask_ctxguard: 2 request-context contamination violations"
                " during this test:",
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
                "flask_ctxguard: 1 request-context contamination violation"
                " during this test:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "*_ test_unexpected _*",
                "flask_ctxguard: 1 request-context contamination violation"
                " during this test:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "ctxguard: 2 violations in 2 tests",
            ]
        )
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
                "ctxguard: 1 violation in 1 test",
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
            ["  CG101 g-leak: *", "ctxguard: 1 violation in 1 test"]
        )
        result.stdout.no_fnmatch_line("*Warning*")
