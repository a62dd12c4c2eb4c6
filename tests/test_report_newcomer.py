"""
The report over a real deployment's log: a newcomer's app with one
``bind_contextvars`` bug and one kept request, served by gunicorn's
gthread worker to concurrent clients, is two findings.
"""

from __future__ import annotations

import json

from flask_ctxguard import _cli
from tests.helpers import gunicorn, line_of
from tests.loadclient import run_load

#: Bound of the whole load.
TIMEOUT = 60.0
CLIENTS = 6
PATHS = ["/", "/health", "/items/{n}", "/wp-admin", "/.env", "/export"]


def plan(client: int) -> list[str]:
    """Log in as yourself, then visit every page, twice."""
    visits = [p.replace("{n}", str(client)) for p in PATHS] * 2
    return [f"/login/user{client}", *visits]


class TestNewcomer:
    def test_one_finding_per_bug_from_gunicorn_json_logs(
        self, tmp_path, capsys
    ):
        """
        One bind line reached from every endpoint and unrouted path, in two
        worker processes, is one CG106 finding; the kept request is one
        CG102; paths no route matched are one '(no route)' entry.
        """
        with gunicorn(
            "tests.newcomerapp:create_app()", workers=2, threads=4
        ) as server:
            replies = run_load(
                server.port, plan, clients=CLIENTS, timeout=TIMEOUT
            )
        log = tmp_path / "gunicorn.log"
        log.write_text(server.output(), encoding="utf-8")

        status = _cli.main(["report", "--format", "json", str(log)])

        report = json.loads(capsys.readouterr().out)
        assert CLIENTS * (1 + 2 * len(PATHS)) == len(replies)
        assert 1 == status
        findings = {f["code"]: f for f in report["findings"]}
        assert ["CG102", "CG106"] == sorted(findings)
        cg106, cg102 = findings["CG106"], findings["CG102"]
        assert "ContextVar structlog_user_id" == cg106["subject"]
        # On this branch CG106 names the request that set the value, whose
        # endpoint is the key; with the bind line as origin site, that line.
        bind = line_of("tests/newcomerapp.py", "the CG106 bug")
        assert cg106["origin_site"] in {
            "(endpoint 'login')",
            f"tests/newcomerapp.py:{bind} in login",
        }
        assert ["login"] == cg106["origin_endpoints"]
        names = {entry["name"] for entry in cg106["requests"]}
        assert names <= {"index", "health", "item", "export", "(no route)"}
        assert "(no route)" in names
        (no_route,) = [
            e for e in cg106["requests"] if e["name"] == "(no route)"
        ]
        assert set(no_route["paths"]) <= {"/wp-admin", "/.env"}
        assert no_route["endpoint"] is None
        assert "request" == cg102["subject"]
        export = line_of("tests/newcomerapp.py", "the kept request's view")
        assert (
            f"tests/newcomerapp.py:{export} in export"
            == (cg102["origin_site"])
        )
        assert ["export"] == cg102["origin_endpoints"]
        read = line_of("tests/newcomerapp.py", "the CG102 bug")
        assert [f"tests/newcomerapp.py:{read} in rows"] == [
            s["site"] for s in cg102["access_sites"]
        ]
