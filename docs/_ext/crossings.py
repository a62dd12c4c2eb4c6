"""
Synthetic ``contamination`` events, one small log per rule, drawn as each
rule page's figure by the HTML report's timeline renderer.

The events have the shape the guard logs (docs/logs.md); the apps, paths
and times are made up, each to show one crossing plainly.
"""

from __future__ import annotations

from typing import Any

_START = 1795639973.0


def _request(
    token: str, method: str, path: str, thread: str, at: float
) -> dict[str, Any]:
    return {
        "token": f"3f9a0c12-{token}",
        "method": method,
        "path": path,
        "endpoint": path.strip("/").split("/")[0] or "index",
        "thread": thread,
        "thread_id": hash(thread) & 0xFFFF,
        "started": _START + at,
    }


def _event(
    code: str,
    subject: str,
    origin: dict[str, Any] | None,
    accessor: dict[str, Any],
    *,
    at: float,
    sites: tuple[str | None, str],
) -> dict[str, Any]:
    origin_site, access_site = sites
    return {
        "event": "contamination",
        "code": code,
        "subject": subject,
        "origin": origin,
        "accessor": accessor,
        "origin_site": origin_site,
        "access_site": access_site,
        "timestamp": _START + at,
    }


_W1, _W2 = "ThreadPoolExecutor-0_0", "ThreadPoolExecutor-0_1"

#: Per rule code, the events of its figure.
CROSSINGS: dict[str, list[dict[str, Any]]] = {
    "CG101": [
        _event(
            "CG101",
            "g.user",
            _request("6", "GET", "/login/alice", "MainThread", 0.000),
            _request("7", "GET", "/me", "MainThread", 0.020),
            at=0.024,
            sites=("app/views.py:12 in login", "app/views.py:31 in me"),
        )
    ],
    "CG102": [
        _event(
            "CG102",
            "request",
            _request("8", "POST", "/notes", _W1, 0.000),
            {"thread": "Thread-3 (send_receipt)"},
            at=0.150,
            sites=(
                "app/notes.py:40 in create",
                "app/mail.py:18 in send_receipt",
            ),
        )
    ],
    "CG103": [
        _event(
            "CG103",
            "g",
            _request("1", "GET", "/whoami", _W1, 0.000),
            _request("2", "GET", "/whoami", _W2, 0.060),
            at=0.065,
            sites=(
                "app/views.py:75 in whoami",
                "app/views.py:72 in cached_viewer",
            ),
        )
    ],
    "CG104": [
        _event(
            "CG104",
            "request",
            _request("4", "POST", "/imports", _W1, 0.000),
            {"thread": "ThreadPoolExecutor-1_0"},
            at=0.030,
            sites=(
                "app/imports.py:22 in start_import",
                "app/imports.py:51 in parse_rows",
            ),
        )
    ],
    "CG105": [
        _event(
            "CG105",
            "app context",
            None,
            {"thread": "MainThread"},
            at=0.000,
            sites=(None, "tests/conftest.py:14 in app"),
        )
    ],
    "CG106": [
        _event(
            "CG106",
            "ContextVar tenant",
            _request("a", "GET", "/reports/usage", _W1, 0.000),
            _request("b", "POST", "/imports", _W1, 0.040),
            at=0.055,
            sites=(
                "app/reports.py:19 in usage_report",
                "app/imports.py:9 in import_notes",
            ),
        ),
        _event(
            "CG106",
            "ContextVar tenant",
            _request("a", "GET", "/reports/usage", _W1, 0.000),
            _request("c", "GET", "/notes", _W1, 0.070),
            at=0.080,
            sites=(
                "app/reports.py:19 in usage_report",
                "app/imports.py:9 in import_notes",
            ),
        ),
    ],
}
