"""
The example app, linted: every bug of ``example_app/buggy.py`` with a
shape the rules know is reported at its line, and the app's other modules
are clean.
"""

from __future__ import annotations

from pathlib import Path

from flask_ctxguard._lint.runner import check_paths

EXAMPLE = Path(__file__).resolve().parent.parent.parent / "example_app"


def line_of(text: str, path: Path) -> int:
    """The number of the first line of *path* that contains *text*."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(text)


def test_each_bug_of_the_buggy_blueprint_is_reported_at_its_line():
    """The seven bugs with a static shape are found, at their lines."""
    buggy = EXAMPLE / "buggy.py"
    run = check_paths(sorted(str(p) for p in EXAMPLE.glob("*.py")), jobs=1)

    expected = [
        (
            line_of('viewer_cache["g"] = g._get_current_object()', buggy),
            "CG201",
        ),
        (line_of("audit_trail().record(", buggy), "CG201"),
        (line_of("notes = search_in_parallel(req,", buggy), "CG202"),
        (line_of("report_tenant.set(g.tenant)", buggy), "CG203"),
        (line_of("bind_contextvars(import_id=import_id)", buggy), "CG203"),
        (line_of("with app.app_context():", buggy), "CG206"),
        (line_of("draft_scratchpad.draft = {", buggy), "CG204"),
    ]
    assert sorted(expected) == sorted(
        (finding.line, finding.code)
        for finding in run.findings
        if Path(finding.path).name == "buggy.py"
    )


def test_the_correct_modules_are_clean():
    """No finding in the example app outside its buggy blueprint."""
    files = sorted(
        str(p) for p in EXAMPLE.glob("*.py") if p.name != "buggy.py"
    )

    run = check_paths(files, jobs=1)

    assert [] == list(run.findings)
    assert () == run.errors
    assert len(files) == run.files
