"""
CG106 subjects carry no id() or address: the same in every process and run.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from flask import Flask
from werkzeug.local import Local

from flask_ctxguard import CtxGuard
from flask_ctxguard._rules.contextvar_names import stable_name
from tests.helpers import pooled

#: A Local bound at module level, as apps declare them.
REQUEST_LOCAL = Local()


def _leaky_app(local: Local) -> tuple[Flask, CtxGuard]:
    app = Flask("names")
    app.config["CTXGUARD_MODE"] = "log"

    @app.get("/set/<name>")
    def set_name(name: str) -> str:
        local.user = f"user {name}"  # never released
        return "set"

    @app.get("/read")
    def read() -> str:
        return str(getattr(local, "user", "-"))

    return app, CtxGuard(app)


class TestStableNames:
    def test_a_module_level_local_is_named_after_its_binding(self):
        """A leak through a module-level werkzeug Local is reported under
        the module-level name, without the id Werkzeug puts in its
        ContextVar's name."""
        app, guard = _leaky_app(REQUEST_LOCAL)

        replies = pooled(app, [("/set/ada", {}), ("/read", {})])

        assert [(200, b"set"), (200, b"user ada")] == replies
        assert [
            "ContextVar werkzeug.Local"
            "(tests.test_contextvar_names.REQUEST_LOCAL).storage"
        ] == [v.subject for v in guard.violations]

    def test_a_local_bound_nowhere_gets_a_generic_name(self):
        """A Local no module names is 'werkzeug.Local.storage'."""
        app, guard = _leaky_app(Local())

        pooled(app, [("/set/ada", {}), ("/read", {})])

        assert ["ContextVar werkzeug.Local.storage"] == [
            v.subject for v in guard.violations
        ]

    def test_numbers_and_addresses_are_dropped_from_other_names(self):
        """Any other number in angle brackets or hex address is dropped."""
        var: ContextVar[int] = ContextVar("pool<12345>.conn at 0x7f00ab")

        assert "pool.conn at " == stable_name(var)
        assert None is re.search(r"\d{3}", stable_name(var))
