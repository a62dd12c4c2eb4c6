"""
Findings are root causes: one per code, subject and the site that set or
kept the value, from log events, from violations and in ``hammer``'s
report, with every occurrence reachable inside.
"""

from __future__ import annotations

import io
import json
from typing import Any

import structlog
from flask import Flask, request

from flask_ctxguard import CtxGuard
from flask_ctxguard._logs.findings import (
    MAX_LOCATIONS,
    MAX_OCCURRENCES,
    Finding,
    Findings,
)
from flask_ctxguard._reporting.grouping import (
    event_key,
    finding_key,
    violation_key,
)
from flask_ctxguard.testing import capture_violations, hammer
from tests.test_cli_report import event, lines


def read(data: bytes, name: str = "app.log") -> Findings:
    """The findings of the log *data*, read as the file *name*."""
    findings = Findings()
    findings.read(io.BytesIO(data), name)
    return findings


class TestFindingKey:
    def test_origin_site_wins_over_access_site(self):
        """With an origin site, the access site is not part of the key."""
        assert ("CG103", "request", "a.py:1 in f", None) == finding_key(
            "CG103", "request", "a.py:1 in f", "b.py:2 in g"
        )

    def test_access_site_without_origin_site(self):
        """Without an origin site, the access site is the key's site."""
        assert ("CG102", "request", None, "b.py:2 in g") == finding_key(
            "CG102", "request", None, "b.py:2 in g"
        )

    def test_request_sites_keep_only_the_endpoint(self):
        """
        A site that names a request keeps its endpoint, not its path:
        user data in paths does not split a finding.
        """
        assert [
            ("CG106", "ContextVar v", "(endpoint 'login')", None),
            ("CG106", "ContextVar v", "(endpoint 'login')", None),
            ("CG106", "ContextVar v", None, "(no route)"),
        ] == [
            finding_key("CG106", "ContextVar v", site, "GET /wp-admin")
            for site in (
                "GET /login/alice (endpoint 'login')",
                "POST /login/bob (endpoint 'login')",
                None,
            )
        ]

    def test_event_and_violation_give_the_same_key(self):
        """A violation and the event it is logged as have one key."""
        app = Flask("keys")
        app.config["CTXGUARD_MODE"] = "log"
        CtxGuard(app)
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            kept.append(request._get_current_object())
            return ""

        @app.get("/read")
        def read_kept() -> str:
            return kept[0].path

        client = app.test_client()
        with capture_violations() as found:
            client.get("/keep")
            client.get("/read")

        (violation,) = found
        assert violation_key(violation) == event_key(
            json.loads(json.dumps(violation.log_fields()))
        )


class TestFinding:
    def test_of_violations_groups_by_root_cause(self):
        """
        Violations of one origin site are one finding, whatever their
        access sites; another origin site is another finding.
        """
        app = Flask("two")
        app.config["CTXGUARD_MODE"] = "log"
        CtxGuard(app)
        kept: list[Any] = []

        @app.get("/keep")
        def keep() -> str:
            kept.append(request._get_current_object())
            return ""

        @app.get("/keep-other")
        def keep_other() -> str:
            kept.append(request._get_current_object())
            return ""

        @app.get("/read/<int:n>")
        def read_kept(n: int) -> str:
            if n:
                return kept[0].path
            return kept[0].method

        client = app.test_client()
        with capture_violations() as found:
            client.get("/keep")
            for path in ("/read/0", "/read/1", "/read/0"):
                client.get(path)
            kept.clear()
            client.get("/keep-other")
            client.get("/read/1")

        findings = Finding.of_violations(found)

        assert [("keep", 3, 2), ("keep_other", 1, 1)] == [
            (
                next(iter(f.origin_endpoints)),
                f.events,
                len(f.access_sites),
            )
            for f in findings
        ]
        assert [3, 1] == [len(f.occurrences) for f in findings]
        assert all(
            f.occurrences[0]["event"] == "contamination" for f in findings
        )

    def test_unrouted_requests_are_one_entry(self):
        """
        Requests no route matched are one '(no route)' entry with example
        paths, not one entry per URL.
        """
        data = lines(
            *(
                event(endpoint=None, path=f"/probe/{n}", token=f"b-{n}")
                for n in range(40)
            ),
            event(endpoint="notes.show", path="/notes/1"),
        )

        (finding,) = read(data).ordered()

        entries = finding.to_dict()["requests"]
        assert [
            ("(no route)", None, 40, 8),
            ("notes.show", "notes.show", 1, 1),
        ] == [
            (e["name"], e["endpoint"], e["events"], len(e["paths"]))
            for e in entries
        ]

    def test_occurrences_are_bounded_and_reachable(self):
        """
        The first occurrences are kept whole, later ones by file and line,
        and the rest are counted.
        """
        total = MAX_LOCATIONS + 50
        data = lines(*(event(token=f"c-{n}") for n in range(total)))

        (finding,) = read(data, "web-1.log").ordered()
        result = finding.to_dict()

        assert MAX_OCCURRENCES == len(result["occurrences"])
        assert {"location": "web-1.log:1", "event": event(token="c-0")} == (
            result["occurrences"][0]
        )
        assert (
            f"web-1.log:{MAX_OCCURRENCES + 1}" == (result["more_locations"][0])
        )
        assert MAX_LOCATIONS == MAX_OCCURRENCES + len(result["more_locations"])
        assert 50 == result["omitted_occurrences"]
        assert total == result["events"]

    def test_two_bugs_from_many_endpoints_are_two_findings(self):
        """
        Two origin sites, each hit from eight endpoints, are two findings,
        each listing its eight endpoints.
        """
        data = lines(
            *(
                event(
                    origin_site=site,
                    endpoint=f"view{n}",
                    access_site=f"app/views.py:{n} in view{n}",
                    token=f"d-{n}{site[-1]}",
                )
                for site in ("app/a.py:1 in a", "app/b.py:2 in b")
                for n in range(8)
            )
        )

        findings = read(data).ordered()

        assert [("app/a.py:1 in a", 8), ("app/b.py:2 in b", 8)] == sorted(
            (f.origin_site, len(f.accessor_endpoints)) for f in findings
        )


class TestHammer:
    def test_hammer_report_groups_by_root_cause(self):
        """
        One bind line held by every later endpoint is one finding in
        hammer's report, and the kept request another: two in all.
        """
        app = Flask("hammered")
        app.config["CTXGUARD_MODE"] = "log"
        CtxGuard(app)
        kept: list[Any] = []

        @app.get("/login/<name>")
        def login(name: str) -> str:
            structlog.contextvars.bind_contextvars(user=name)
            return "ok"

        @app.get("/keep")
        def keep() -> str:
            kept.append(request._get_current_object())
            return ""

        def kept_path() -> str:
            return kept[-1].path

        for name in ("a", "b", "c", "read1", "read2"):
            app.add_url_rule(
                f"/{name}",
                name,
                kept_path if name.startswith("read") else (lambda: "x"),
            )

        with structlog.testing.capture_logs():
            result = hammer(
                app,
                [
                    "/login/{client}",
                    "/a",
                    "/b",
                    "/c",
                    "/keep",
                    "/read1",
                    "/read2",
                    "/nowhere/{client}",
                ],
                threads=1,
            )

        findings = Finding.of_violations(result.violations)
        assert ["CG103", "CG106"] == sorted(f.code for f in findings)
        assert 1 == sum(f.code == "CG106" for f in findings)
        (cg106,) = [f for f in findings if f.code == "CG106"]
        assert {"a", "b", "c", "keep", "read1", "read2", "(no route)"} == (
            cg106.accessor_endpoints
        )
        assert result.report().startswith(
            f"{len(result.violations)} request-context contamination"
            " violations in 2 findings:\n\nCG106 contextvar-leak: "
        )
