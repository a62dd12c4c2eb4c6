"""
Helpers for the plugin's pytester tests: the inner app module, the inner
test files, and running an inner pytest.
"""

from __future__ import annotations

import pytest

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
                "addopts = -p no:cacheprovider -p no:flask",
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


def assert_inert(result: pytest.RunResult) -> None:
    """Nothing of the plugin shows in *result*."""
    result.stdout.no_fnmatch_line("ctxguard:*")
    result.stdout.no_fnmatch_line("*= ctxguard =*")
    result.stdout.no_fnmatch_line("*CG1*")


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
