"""
The pytest plugin's options and modes, through pytester only
(pytest-randomly's style): every option and ini value, every code in each
mode, and the strict failure text.

Each test writes a test file and runs pytest on it, in-process where the
inner run leaves no state behind, in a subprocess where it would (a
ContextVar left set, a context left pushed).
"""

from __future__ import annotations

import pytest

from tests._compat import needs_shared_g
from tests.pytester_helpers import (
    CODES,
    HEADER,
    LEAKY,
    assert_inert,
    assert_leak_caught,
    line_of,
    run,
    write_ini,
)


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
                "FAILED test_leaky.py::test_leaky - 1 request-context"
                " contamination finding*",
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
                "CG101 g-leak: 'g.user' was read during GET /get *",
                "  in test: test_leaky.py::test_leaky",
                "ctxguard: 1 finding in 1 test",
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
                [HEADER["warn"], "ctxguard: 1 finding in 1 test"]
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
        result.stdout.fnmatch_lines(["ctxguard: 6 findings in 6 tests"])

    @needs_shared_g
    def test_warn(self, ourtester):
        """Warn mode passes every test and lists each finding once, with
        the test it occurred in."""
        ourtester.makepyfile(test_codes=CODES)

        result = run(ourtester, "--ctxguard=warn", subprocess=True)

        result.assert_outcomes(passed=7)
        result.stdout.fnmatch_lines(
            [
                HEADER["warn"],
                "*= ctxguard =*",
                "CG101 g-leak: *",
                "  in test: test_codes.py::test_cg101",
                "CG102 stale-access: *",
                "  in test: test_codes.py::test_cg102",
                "CG103 cross-request-access: *",
                "  in test: test_codes.py::test_cg103",
                "CG104 cross-thread-access: *",
                "  in test: test_codes.py::test_cg104",
                "CG105 context-leak: *",
                "  in test: test_codes.py::test_cg105",
                "CG106 contextvar-leak: *",
                "  in test: test_codes.py::test_cg106",
                "ctxguard: 6 findings in 6 tests",
            ]
        )
        result.stdout.no_fnmatch_line("*test_codes.py::test_clean*")

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
                "1 request-context contamination finding:",
                "",
                "CG101 g-leak: 'g.user' was read during GET /get (request *,"
                " thread 'MainThread') but was set during GET /set/alice"
                " (request *).",
                "  value: str",
                f"  read at: test_report.py:{read} in get",
                f"  set at:  test_report.py:{written} in set_user",
                "  fix: the two requests shared one application context;"
                " don't push an app context around test-client requests, *",
                "  docs: https://flask-ctxguard.readthedocs.io/en/latest/rules/"
                "cg101.html (offline: *",
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
                "1 request-context contamination finding:",
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
            from shop import create_app, kept


            @pytest.fixture
            def app():
                return create_app()


            def test_first(app):
                assert b"kept" == app.test_client().get("/keep?x=1").data


            def test_second(app):
                assert b"1" == app.test_client().get("/peek").data


            def test_forget():
                # pytest keeps the last in-process run's config, and so
                # this module, alive: let go of the kept request.
                kept.clear()
            """
        )

        result = run(ourtester, "--ctxguard")

        result.assert_outcomes(passed=2, failed=1)
        result.stdout.fnmatch_lines(
            [
                "*_ test_second _*",
                "CG103 cross-request-access: 'request.args' of GET /keep *"
                " was used during GET /peek *, after that request ended.",
                "  used at:    shop.py:* in peek",
                "  handled at: shop.py:* in keep",
            ]
        )
