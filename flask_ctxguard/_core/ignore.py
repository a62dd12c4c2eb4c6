"""
``CTXGUARD_IGNORE``: which codes and subjects an app ignores, validated.

An entry is a known code (``"CG106"``), a subject (``"g._sa_session"``,
``"ContextVar tenant"``) or a glob of subjects; anything else would ignore
nothing, so it fails ``init_app`` with a suggestion.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from flask_ctxguard._core.violation import RULES
from flask_ctxguard.exceptions import ConfigurationError

__all__ = ["read_ignore"]

_CODE_RE = re.compile(r"^CG\d{3}$", re.IGNORECASE)

# Subjects a violation can have; anything else in CTXGUARD_IGNORE must be
# a glob or start like one of the prefixes.
_SUBJECTS = ("request", "session", "request context", "app context")
_SUBJECT_PREFIXES = ("g.", "ContextVar ")


def read_ignore(raw: object) -> frozenset[str]:
    """
    The ``CTXGUARD_IGNORE`` value *raw*, validated.

    Raises:
        ConfigurationError: for a value that is no list of codes and
            subjects, or an entry that would ignore nothing.
    """
    if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
        msg = (
            "CTXGUARD_IGNORE must be a list or tuple of codes and subjects,"
            f" such as ('CG106', 'g._sa_session'); got {raw!r}."
        )
        if isinstance(raw, str):
            msg += f" Did you mean ({raw!r},)?"
        raise ConfigurationError(msg)
    ignore: set[str] = set()
    for item in raw:
        if not isinstance(item, str) or not item.strip():
            msg = (
                "CTXGUARD_IGNORE entries must be non-empty strings (a code"
                f" such as 'CG101' or a subject such as 'g.user'); got"
                f" {item!r}."
            )
            raise ConfigurationError(msg)
        if _CODE_RE.match(item):
            if item.upper() not in RULES:
                known = ", ".join(sorted(RULES))
                msg = (
                    f"CTXGUARD_IGNORE names the unknown code {item!r}; the"
                    f" codes are {known}."
                )
                raise ConfigurationError(msg)
            if item != item.upper():
                msg = (
                    f"CTXGUARD_IGNORE entry {item!r} would ignore nothing:"
                    f" codes are upper case. Did you mean {item.upper()!r}?"
                )
                raise ConfigurationError(msg)
        elif not _is_subject(item):
            msg = (
                f"CTXGUARD_IGNORE entry {item!r} matches no subject and is"
                " no code, so it would ignore nothing. Did you mean"
                f" 'g.{item}' or 'ContextVar {item}'? Subjects are"
                " 'request', 'session', 'request context', 'app context',"
                " 'g.<attribute>' and 'ContextVar <name>' (globs allowed)."
            )
            raise ConfigurationError(msg)
        ignore.add(item)
    return frozenset(ignore)


def _is_subject(item: str) -> bool:
    if item in _SUBJECTS or item.startswith(_SUBJECT_PREFIXES):
        return True
    # A glob such as 'g._sa_*' or 'ContextVar structlog_*' is taken as is.
    return any(char in item for char in "*?[")
