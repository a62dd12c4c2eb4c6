"""
The lint report in three formats: text (``path:line:col: CODE message``,
as flake8 and ruff print), JSON, and SARIF 2.1.0 for code scanning.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from flask_ctxguard._lint.catalog import LINT_RULES, LintFinding

__all__ = ["FORMATS", "write_report"]

FORMATS = ("text", "json", "sarif")
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
HELP_URL = (
    "https://github.com/flask-ctxguard/flask-ctxguard/blob/main/docs/rules.md"
)


def shown_path(path: str) -> str:
    """*path* relative to the working directory when it is inside it."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # pragma: no cover - another drive on Windows
        return path
    return path if relative.startswith("..") else relative


def write_report(
    findings: Sequence[LintFinding],
    out: TextIO,
    output: str,
    *,
    files: int,
    errors: Sequence[tuple[str, str]] = (),
    version: str = "",
) -> None:
    """Write *findings* to *out* in the *output* format."""
    if output == "json":
        json.dump(_json(findings, files, errors), out, indent=2)
        out.write("\n")
    elif output == "sarif":
        json.dump(_sarif(findings, version), out, indent=2)
        out.write("\n")
    else:
        for finding in findings:
            out.write(
                f"{shown_path(finding.path)}:{finding.line}:{finding.column}:"
                f" {finding.code} {finding.message}\n"
            )
        if findings:
            count = len(findings)
            out.write(
                f"Found {count} finding{'s' if count != 1 else ''} in"
                f" {files} file{'s' if files != 1 else ''}; 'python -m"
                " flask_ctxguard explain CODE' explains a code.\n"
            )


def _json(
    findings: Sequence[LintFinding],
    files: int,
    errors: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    return {
        "files": files,
        "findings": [
            {
                "code": finding.code,
                "kind": finding.rule.kind,
                "prevents": list(finding.rule.prevents),
                "path": shown_path(finding.path),
                "line": finding.line,
                "column": finding.column,
                "message": finding.message,
            }
            for finding in findings
        ],
        "errors": [
            {"path": shown_path(path), "message": message}
            for path, message in errors
        ],
    }


def _sarif(findings: Sequence[LintFinding], version: str) -> dict[str, Any]:
    codes = sorted(LINT_RULES)
    rules = [
        {
            "id": code,
            "name": LINT_RULES[code].kind,
            "shortDescription": {"text": LINT_RULES[code].title},
            "helpUri": f"{HELP_URL}#{code.lower()}",
            "defaultConfiguration": {"level": "error"},
            "properties": {"prevents": list(LINT_RULES[code].prevents)},
        }
        for code in codes
    ]
    driver: dict[str, Any] = {
        "name": "flask_ctxguard lint",
        "informationUri": "https://github.com/flask-ctxguard/flask-ctxguard",
        "rules": rules,
    }
    if version:
        driver["version"] = version
    results = [
        {
            "ruleId": finding.code,
            "ruleIndex": codes.index(finding.code),
            "level": "error",
            "message": {"text": f"{finding.code} {finding.message}"},
            "locations": [
                {
                    "physicalLocation": {
                        "artifactLocation": {"uri": _uri(finding.path)},
                        "region": {
                            "startLine": finding.line,
                            "startColumn": finding.column,
                        },
                    }
                }
            ],
        }
        for finding in findings
    ]
    return {
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [{"tool": {"driver": driver}, "results": results}],
    }


def _uri(path: str) -> str:
    shown = shown_path(path)
    if os.path.isabs(shown):
        return Path(shown).as_uri()
    return urllib.parse.quote(Path(shown).as_posix())
