"""
Secrets in the data the guard reports: never logged unless asked for,
redacted when asked for, and tokens that carry no request data.
"""

from __future__ import annotations

import contextvars
import json
import re
import subprocess
import sys
import threading
from typing import Any

import pytest
from flask import Flask, g, request, session
from werkzeug.datastructures import Headers

from flask_ctxguard import (
    CtxGuard,
)
from tests._compat import needs_shared_g
from tests.helpers import (
    TIMEOUT,
    codes,
    isolated,
    reply,
)

#: Request data that must never reach a log unless values are asked for.
SECRET = "s3cr3t-7f1c-hunter2"
TOKEN = re.compile(r"[0-9a-f]{8}-[0-9a-f]+")


# -- security -----------------------------------------------------------------


def secret_app(**config: Any) -> tuple[Flask, list]:
    """
    An app whose bugs leak requests carrying SECRET in their query,
    headers, form, cookies, session, 'g' and a ContextVar: CG101, CG102,
    CG103, CG104 and CG106.
    """
    app = Flask("secrets")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log", **config)
    note: contextvars.ContextVar[str] = contextvars.ContextVar("note")
    kept: list[Any] = []

    @app.post("/submit")
    def submit() -> str:
        session["note"] = request.form["note"]
        kept[:] = [
            request._get_current_object(),  # type: ignore[attr-defined]
            session._get_current_object(),  # type: ignore[attr-defined]
        ]
        note.set(request.args["q"])
        g.note = request.headers["X-Note"]
        real = request._get_current_object()  # type: ignore[attr-defined]
        thread = threading.Thread(target=lambda: real.form.get("note"))
        thread.start()
        thread.join(TIMEOUT)
        return "ok"

    @app.get("/read")
    def read() -> str:
        old_request, old_session = kept
        seen = [
            old_request.args["q"],
            old_request.headers["X-Note"],
            old_request.cookies["note"],
            old_session["note"],
            g.get("note"),
        ]
        return str(len(seen))

    return app, kept


def leak_secrets(app: Flask, kept: list) -> list[str]:
    def drive() -> list[tuple[int, bytes]]:
        client = app.test_client()
        client.set_cookie("note", SECRET)
        with app.app_context():
            first = client.post(
                f"/submit?q={SECRET}",
                data={"note": SECRET},
                headers={"X-Note": SECRET},
            )
            second = client.get("/read")
        return [reply(first), reply(second)]

    seen = isolated(drive)
    return [*seen, kept[0].form["note"]]


def _set_then_get_in_one_app_context(app: Flask) -> None:
    """Request '/set', then '/get', inside one pushed app context."""

    def drive() -> None:
        client = app.test_client()
        with app.app_context():
            client.get("/set")
            client.get("/get")

    isolated(drive)


class TestSecurity:
    @pytest.mark.parametrize("stacks", [False, True])
    @needs_shared_g
    def test_leaked_values_are_not_logged_by_default(self, stacks, rendered):
        """
        Requests carrying a secret everywhere, leaked in every way: every
        violation is logged, and the secret appears in no log line and no
        report.
        """
        app, kept = secret_app(CTXGUARD_STACKS=stacks)
        guard = CtxGuard(app)

        seen = leak_secrets(app, kept)

        assert [(200, b"ok"), (200, b"5"), SECRET] == seen
        assert {"CG101", "CG102", "CG103", "CG104", "CG106"} == set(
            codes(guard)
        )
        assert len(guard.violations) == len(rendered)
        assert [] == [line for line in rendered if SECRET in line]
        assert [] == [str(v) for v in guard.violations if SECRET in str(v)]
        assert [] == [
            v.code
            for v in guard.violations
            if SECRET in json.dumps(v.to_dict())
        ]

    def test_contextvar_value_is_not_logged_by_default(self, rendered):
        """A ContextVar left holding a secret is reported (CG106) by type
        only."""
        app = Flask("cv-secret")
        app.config.update(CTXGUARD_MODE="log")
        note: contextvars.ContextVar[str] = contextvars.ContextVar("note")

        @app.get("/set")
        def set_note() -> str:
            note.set(request.args["q"])
            return "set"

        @app.get("/other")
        def other() -> str:
            return "other"

        guard = CtxGuard(app)

        def drive() -> None:
            client = app.test_client()
            client.get(f"/set?q={SECRET}")
            client.get("/other")

        isolated(drive)

        assert ["CG106"] == codes(guard)
        assert "str" == guard.violations[0].value_type
        assert 1 == len(rendered)
        assert SECRET not in rendered[0]

    @pytest.mark.parametrize(
        ("name", "value", "shown"),
        [
            ("note", "x" * 500, "'" + "x" * 27 + "..." + "x" * 28 + "'"),
            ("password", SECRET, "'<redacted>'"),
            ("api_token", SECRET, "'<redacted>'"),
            ("session_cookie", SECRET, "'<redacted>'"),
            ("Authorization", f"Bearer {SECRET}", "'<redacted>'"),
            (
                "profile",
                {"name": "ada", "password": SECRET},
                "{'name': 'ada', 'password': '<redacted>'}",
            ),
            (
                "profile",
                {"name": "ada", "Secret": SECRET, "token": SECRET},
                # reprlib sorts a dict's keys
                "{'Secret': '<redacted>', 'name': 'ada',"
                " 'token': '<redacted>'}",
            ),
        ],
    )
    @needs_shared_g
    def test_log_values_truncates_and_redacts(
        self, name, value, shown, rendered
    ):
        """
        With CTXGUARD_LOG_VALUES, a leaked 'g' value is shown as a short
        repr: long ones truncated, secret-looking names and keys redacted.
        """
        app = Flask("values")
        app.config.update(CTXGUARD_MODE="log", CTXGUARD_LOG_VALUES=True)

        @app.get("/set")
        def set_value() -> str:
            setattr(g, name, value)
            return "set"

        @app.get("/get")
        def get_value() -> str:
            return type(getattr(g, name)).__name__

        guard = CtxGuard(app)

        _set_then_get_in_one_app_context(app)

        assert [shown] == [v.value_repr for v in guard.violations]
        assert [shown] == [json.loads(line)["value"] for line in rendered]
        assert SECRET not in rendered[0]

    @pytest.mark.parametrize(
        "value",
        [
            {"user": {"name": "ada", "password": SECRET}},
            [{"name": "ada", "password": SECRET}],
            Headers([("Authorization", f"Bearer {SECRET}")]),
        ],
        ids=["nested-dict", "list-of-dicts", "headers"],
    )
    @needs_shared_g
    def test_log_values_redacts_nested_secret_keys(self, value, rendered):
        """
        With CTXGUARD_LOG_VALUES, values under secret-looking keys are
        redacted wherever the key is: in a nested dict, in a list of dicts,
        in a Headers mapping.
        """
        app = Flask("nested")
        app.config.update(CTXGUARD_MODE="log", CTXGUARD_LOG_VALUES=True)
        left: contextvars.ContextVar[Any] = contextvars.ContextVar("data")

        @app.get("/set")
        def set_value() -> str:
            left.set(value)
            g.data = value
            return "set"

        @app.get("/get")
        def get_value() -> str:
            return type(g.data).__name__

        guard = CtxGuard(app)

        _set_then_get_in_one_app_context(app)

        assert ["CG101", "CG106"] == sorted(codes(guard))
        assert [] == [
            v.value_repr for v in guard.violations if SECRET in v.value_repr
        ]
        assert [] == [line for line in rendered if SECRET in line]

    def test_tokens_carry_no_request_data(self):
        """
        Request tokens are a process prefix and a counter: short, unique,
        and free of the path, the user and anything else of the request.
        """
        app = Flask("tokens")
        app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")
        guard = CtxGuard(app)

        @app.get("/users/<name>/profile")
        def profile(name: str) -> str:
            session["user"] = name
            tag = guard.current()
            assert tag is not None
            return tag.token

        def drive() -> list[str]:
            client = app.test_client()
            return [
                client.get(
                    f"/users/{user}/profile?q={SECRET}",
                    headers={"X-User": user, "Authorization": SECRET},
                ).get_data(as_text=True)
                for user in ("alice", "zorro", "quincy") * 20
            ]

        tokens = isolated(drive)

        assert [] == [t for t in tokens if not TOKEN.fullmatch(t)]
        assert 60 == len(set(tokens))
        assert 1 == len({t.partition("-")[0] for t in tokens})
        assert max(len(t) for t in tokens) <= 16

    def test_tokens_differ_in_forked_workers(self):
        """A worker forked from a process that has served requests (a
        preloading server) issues tokens of its own, not its parent's."""
        program = """
import json, os
from flask import Flask
from flask_ctxguard import CtxGuard
app = Flask("fork")
app.config["CTXGUARD_MODE"] = "log"
guard = CtxGuard(app)

@app.get("/")
def index():
    return guard.current().token

client = app.test_client()
before = client.get("/").text
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, client.get("/").data)
    os._exit(0)
os.close(write)
child = os.read(read, 100).decode()
os.waitpid(pid, 0)
print(json.dumps([before, client.get("/").text, child]))
"""
        finished = subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        before, parent, child = json.loads(finished.stdout)
        prefix = before.partition("-")[0]

        assert parent.startswith(prefix + "-")
        assert not child.startswith(prefix + "-")
        assert TOKEN.fullmatch(child)
        assert len({before, parent, child}) == 3
