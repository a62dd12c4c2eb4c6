"""
The benchmark harness still runs and measures what it claims to.

A smoke run with the fewest rounds: no timing is asserted here (the ratios
of so short a run mean nothing); only that every row was measured, that
every mode served the same bytes without a violation, and that the memory
part found nothing alive.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import checks

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module", name="report")
def _report(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "smoke.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--parts",
            "inprocess,memory,checks",
            "--generations",
            "1",
            "--rounds",
            "2",
            "--requests",
            "2000",
            "--no-sentry",
            "--output",
            str(output),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # 1: a budget looked exceeded, which two rounds cannot tell.
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return (
        output.read_text(),
        json.loads(output.with_suffix(".json").read_text()),
    )


def test_every_mode_serves_the_same_response(report):
    _, data = report
    rows = data["inprocess"]
    assert {"bare", "control", "log", "raise", "raise+stacks", "sampled"} == {
        row["mode"] for row in rows
    }
    assert {"hello", "realistic", "login"} == {row["workload"] for row in rows}
    for workload in ("hello", "realistic", "login"):
        digests = {r["digest"] for r in rows if r["workload"] == workload}
        assert 1 == len(digests), workload
    assert [0] * len(rows) == [row["violations"] for row in rows]
    assert all(row["wall"] and row["cpu"] for row in rows)


def test_report_lists_sampled_and_flask_login_rows(report):
    """The report has the Flask-Login row and a sampled row per workload."""
    text, _ = report

    assert "| Flask-Login page | log (default) |" in text
    for title in ("hello-world", "realistic", "Flask-Login page"):
        assert f"| {title} | log, sampled at 0.01 |" in text


def test_every_check_is_measured(report):
    text, data = report
    measured = {row["name"]: row for row in data["checks"]}
    assert {name for name, *_ in checks.OPERATIONS} == set(measured)
    for name, row in measured.items():
        assert row["guarded"] is not None or name in checks.SHARED, name
        if name not in checks.GUARDED_ONLY | checks.SHARED:
            assert row["plain"] is not None, name
    assert " failed: " not in text


def test_memory_is_flat(report):
    _, data = report
    for row in data["memory"]:
        assert 2000 == row["requests"]
        assert {0} == set(row["live"].values()), row["mode"]
        assert 0 == row["violations"]


@pytest.mark.parametrize(
    ("option", "unknown"),
    [("--workloads", "hello,nope"), ("--modes", "log,loud")],
)
def test_unknown_subset_is_refused(option, unknown):
    """An unknown workload or mode in a subset option stops the run."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", option, unknown],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert 1 == done.returncode
    assert "unknown" in done.stderr
    assert unknown.split(",")[1] in done.stderr
