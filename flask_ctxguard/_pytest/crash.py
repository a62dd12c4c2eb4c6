"""
The one line a failure with findings gets in pytest's short test summary.

pytest's ``short test summary info`` repeats each failure's message after
its node id. Off CI it cuts the message to the terminal's width; on CI
(the ``CI`` or ``BUILD_NUMBER`` environment variable) and with ``-vv`` it
prints the whole message, which for a failure with findings is every
finding's full report, a second time. So what fails a test with findings
carries a one-line ``ctxguard_summary``: `ContaminationFailure` (strict
mode, ``ctxguard.assert_clean()``) and the `AssertionError` of
``assert_no_contamination()`` and ``HammerResult.assert_clean()``; a
`ContaminationError` keeps its first line. `shorten_crash` puts that line
where the short summary reads it, the report's crash message, before the
report leaves the process (pytest-xdist sends it on as it is).

Imports nothing but pytest and the exceptions: the plugin, loaded in
every pytest run, imports it when a test failed while the package was in
use.
"""

from __future__ import annotations

import pytest

from flask_ctxguard.exceptions import ContaminationError

__all__ = ["ContaminationFailure", "shorten_crash"]


# pytest exports its Failed class only as pytest.fail.Exception, which
# mypy cannot take as a base class.
class ContaminationFailure(pytest.fail.Exception):  # type: ignore[name-defined,misc]
    """
    ``pytest.fail`` with findings: *text* is shown as the failure, without a
    traceback; *summary*, one line, in the short test summary.
    """

    def __init__(self, text: str, summary: str) -> None:
        super().__init__(text, pytrace=False)
        self.ctxguard_summary = summary


def shorten_crash(
    report: pytest.TestReport,
    excinfo: pytest.ExceptionInfo[BaseException] | None,
) -> None:
    """
    Make the crash message of *report* one line when what failed it
    (*excinfo*) carries a ``ctxguard_summary`` or is a
    `ContaminationError`.
    """
    crash = getattr(report.longrepr, "reprcrash", None)
    if excinfo is None or crash is None:
        return
    error = excinfo.value
    summary = getattr(error, "ctxguard_summary", None)
    if isinstance(summary, str):
        crash.message = summary
    elif isinstance(error, ContaminationError):
        crash.message = crash.message.split("\n", 1)[0]
