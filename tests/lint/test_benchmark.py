"""
The lint speed benchmark still runs and measures what it claims: a
generated tree of the asked size, clean of findings. No timing is asserted.
"""

from __future__ import annotations

import re

from benchmarks import lint_speed
from flask_ctxguard._lint.runner import check_paths


def test_generated_tree_has_the_asked_size_and_no_finding(tmp_path):
    """The tree reaches the line count, and its sanctioned code is clean."""
    files, lines = lint_speed.write_tree(tmp_path, 1000)

    run = check_paths(sorted(str(p) for p in tmp_path.rglob("*.py")), jobs=1)
    assert (files, lines) == lint_speed.count(tmp_path)
    assert lines >= 1000
    assert [] == list(run.findings)
    assert files == run.files


def test_smoke_run_prints_the_median(capsys):
    """One short run prints files, lines and the median of its runs."""
    lint_speed.main(["--lines", "300", "--runs", "1"])

    out = capsys.readouterr().out
    assert re.fullmatch(
        r"lint of \d+ files, \d+ lines \(--jobs auto\): median of 1"
        r" \d+\.\d\d s \(runs: \d+\.\d\d\); CPU \d+\.\d\d s\n",
        out,
    )
