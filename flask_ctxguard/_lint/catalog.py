"""
The static rules (CG2xx) and the finding record they produce.

Each rule has a code, a kebab slug, the runtime codes (CG1xx) of the
contamination it prevents and a title (each finding's message names the
fix); its page is the
``## CG2xx`` section of ``docs/rules.md``.
"""

from __future__ import annotations

import dataclasses

__all__ = ["LINT_RULES", "LintFinding", "LintRule"]


@dataclasses.dataclass(frozen=True, slots=True)
class LintRule:
    """One static rule."""

    code: str
    kind: str
    #: The runtime codes whose bug this shape causes, the main one first.
    prevents: tuple[str, ...]
    title: str


LINT_RULES: dict[str, LintRule] = {
    rule.code: rule
    for rule in (
        LintRule(
            "CG201",
            "request-object-stored",
            ("CG103", "CG102"),
            "A request-bound object is stored where it outlives the request",
        ),
        LintRule(
            "CG202",
            "request-leaves-thread",
            ("CG104", "CG102"),
            "Work that leaves the request reaches its request objects",
        ),
        LintRule(
            "CG203",
            "contextvar-not-reset",
            ("CG106",),
            "A ContextVar or structlog binding set in a request is not reset",
        ),
        LintRule(
            "CG204",
            "thread-local-request-data",
            ("CG106", "CG103"),
            "A module-level thread-local keeps request data between requests",
        ),
        LintRule(
            "CG205",
            "cache-reads-request",
            ("CG103",),
            "A cached function reads the request or the current user",
        ),
        LintRule(
            "CG206",
            "context-pushed-not-popped",
            ("CG105", "CG101"),
            "A pushed context is never popped, or is shared by requests",
        ),
        LintRule(
            "CG207",
            "global-request-data",
            ("CG103",),
            "A module global is assigned request data in request code",
        ),
    )
}


@dataclasses.dataclass(frozen=True, slots=True)
class LintFinding:
    """
    One shape found at one place.

    *unless* names project-wide facts (a reset in another module's
    ``teardown_request``...) that make it sanctioned; *requires* names facts
    without which it is no finding (the name ``set()`` is called on is a
    ContextVar defined elsewhere). Both are settled once every file of the
    run is read. *shared_g* marks a shape that is a bug only where
    test-client requests share the pushed context's ``g``: Flask 3.1 and
    earlier.
    """

    code: str
    line: int
    column: int
    message: str
    path: str = ""
    unless: frozenset[str] = frozenset()
    requires: frozenset[str] = frozenset()
    shared_g: bool = False

    @property
    def rule(self) -> LintRule:
        """The rule this finding is of."""
        return LINT_RULES[self.code]
