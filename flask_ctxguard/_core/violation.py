"""
Violations: the rule table, and the one object every finding becomes.

`str(violation)` (for people) and `Violation.log_fields` (for structlog) are
both rendered from the same fields here, so they never drift apart.
Violations are constructed here only, by `new_violation`: the reporter
builds them from what a rule found (`Reporter.build`), and the ``report``
command rebuilds them from logged events. Each code's message is written
by `flask_ctxguard._reporting.messages`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from flask_ctxguard._core.docs_site import DOCS_URL, rule_url
from flask_ctxguard._core.escape import escape
from flask_ctxguard._core.tags import RequestTag

__all__ = [
    "RULES",
    "Rule",
    "Violation",
    "new_violation",
]


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    """
    One violation code: its slug, title, how to fix it and where it is
    documented.
    """

    code: str
    kind: str
    title: str
    hint: str
    access_label: str
    origin_label: str

    @property
    def docs(self) -> str:
        """The rule's page on the project's docs site."""
        return rule_url(self.code)


RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            code="CG101",
            kind="g-leak",
            title="A 'g' attribute set in one request was read in another",
            hint=(
                "the two requests shared one application context; don't"
                " push an app context around test-client requests, and set"
                " per-request values on 'g' in every request"
                " (before_request)."
            ),
            access_label="read at",
            origin_label="set at",
        ),
        Rule(
            code="CG102",
            kind="stale-access",
            title="A request's object was used after the request ended",
            hint=(
                "don't keep the real request, session or 'g' beyond the"
                " request; copy the values you need, or wrap the work with"
                " 'copy_current_request_context' or 'stream_with_context'."
            ),
            access_label="used at",
            origin_label="handled at",
        ),
        Rule(
            code="CG103",
            kind="cross-request-access",
            title="A request's object was used while another was handled",
            hint=(
                "never share request objects through module globals, caches"
                " or closures; store plain values keyed by something stable"
                " (the user id), not the request."
            ),
            access_label="used at",
            origin_label="handled at",
        ),
        Rule(
            code="CG104",
            kind="cross-thread-access",
            title="An in-flight request's object was used from another thread",
            hint=(
                "pass plain values to the thread, or wrap its function with"
                " 'flask.copy_current_request_context'."
            ),
            access_label="used at",
            origin_label="handled at",
        ),
        Rule(
            code="CG105",
            kind="context-leak",
            title="A request or app context was left pushed",
            hint=(
                "pop every context you push: use 'with app.app_context():'"
                " or 'with app.test_request_context():', or pop it in the"
                " fixture's teardown."
            ),
            access_label="found at",
            origin_label="pushed at",
        ),
        Rule(
            code="CG106",
            kind="contextvar-leak",
            title="A ContextVar kept one request's value into the next",
            hint=(
                "reset the ContextVar with the token set() returned (in"
                " teardown_request), or call"
                " 'structlog.contextvars.clear_contextvars()' at the start"
                " of every request."
            ),
            access_label="held during",
            origin_label="set at",
        ),
    )
}


@dataclasses.dataclass(frozen=True, slots=True)
class Violation:
    """
    One instance of request-context contamination.

    Attributes:
        code: The rule code, such as ``"CG101"``.
        kind: The rule's slug, such as ``"g-leak"``.
        message: One sentence: what happened, to what, in which requests.
        subject: What was touched: ``"g.user"``, ``"request"``,
            ``"session"``, ``"ContextVar tenant"``.
        origin: The request the data belongs to, if known.
        accessor: The request that touched it, or `None` when it was
            touched outside any request (see *thread*).
        thread: Name of the thread that touched it.
        origin_site: ``"path.py:12 in func"`` where the data was set or
            the request was handled.
        access_site: ``"path.py:12 in func"`` where it was touched.
        origin_stack: Full stack of the origin, with ``CTXGUARD_STACKS``.
        access_stack: Full stack of the access, with ``CTXGUARD_STACKS``.
        hint: One imperative sentence: the fix.
        value_type: The type name of the leaked value, if there is one.
        value_repr: A short repr of the value, only with
            ``CTXGUARD_LOG_VALUES``.
        app: The name of the app that reported it.
        timestamp: When it was detected, as ``time.time()``.
        docs_url: The base URL of the rules' pages (``CTXGUARD_DOCS_URL``).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *docs_url* added; `docs` is an absolute URL.
    """

    code: str
    kind: str
    message: str
    subject: str
    origin: RequestTag | None
    accessor: RequestTag | None
    thread: str
    origin_site: str | None = None
    access_site: str | None = None
    origin_stack: str | None = None
    access_stack: str | None = None
    hint: str = ""
    value_type: str | None = None
    value_repr: str | None = None
    app: str | None = None
    timestamp: float = dataclasses.field(default_factory=time.time)
    docs_url: str = DOCS_URL

    def __post_init__(self) -> None:
        # Every text field may carry request data (a path in the message,
        # a thread named after a client, a site in a file the app named):
        # escaped once here, so that str(), message and the logs agree.
        for name in (
            "message",
            "subject",
            "thread",
            "origin_site",
            "access_site",
            "hint",
            "value_type",
            "value_repr",
        ):
            text = getattr(self, name)
            if isinstance(text, str):
                safe = escape(text)
                if safe is not text:
                    object.__setattr__(self, name, safe)
        for name in ("origin_stack", "access_stack"):
            text = getattr(self, name)
            if isinstance(text, str):
                safe = escape(text, keep_newlines=True)
                if safe is not text:
                    object.__setattr__(self, name, safe)

    @property
    def rule(self) -> Rule:
        """The `Rule` of this violation's code."""
        return RULES[self.code]

    @property
    def docs(self) -> str:
        """
        The rule's page under `docs_url`, such as
        ``https://flask-ctxguard.readthedocs.io/en/latest/rules/cg101.html``.
        """
        return rule_url(self.code, self.docs_url)

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        """What makes two violations repeats of each other."""
        return (self.code, self.subject, self.origin_site, self.access_site)

    def __str__(self) -> str:
        rule = self.rule
        width = max(len(rule.access_label), len(rule.origin_label)) + 1
        lines = [f"{self.code} {self.kind}: {self.message}"]
        if self.value_type is not None:
            value = f"  value: {self.value_type}"
            if self.value_repr is not None:
                value += f" {self.value_repr}"
            lines.append(value)
        if self.access_site:
            label = f"{rule.access_label}:".ljust(width)
            lines.append(f"  {label} {self.access_site}")
        if self.origin_site:
            label = f"{rule.origin_label}:".ljust(width)
            lines.append(f"  {label} {self.origin_site}")
        lines.append(f"  fix: {self.hint}")
        lines.append(
            f"  docs: {self.docs} (offline: 'python -m flask_ctxguard"
            f" explain {self.code}')"
        )
        if self.access_stack:
            lines.append(f"  {rule.access_label} (stack):")
            lines.extend(_indent(self.access_stack))
        if self.origin_stack:
            lines.append(f"  {rule.origin_label} (stack):")
            lines.extend(_indent(self.origin_stack))
        return "\n".join(lines)

    def log_fields(self) -> dict[str, Any]:
        """
        The key-values of the structured ``contamination`` event.
        """
        fields: dict[str, Any] = {
            "code": self.code,
            "kind": self.kind,
            "subject": self.subject,
            "message": self.message,
            "origin": self.origin.to_dict() if self.origin else None,
            "accessor": (
                self.accessor.to_dict()
                if self.accessor
                else {"thread": self.thread}
            ),
            "origin_site": self.origin_site,
            "access_site": self.access_site,
            "hint": self.hint,
            "docs": self.docs,
            "app": self.app,
        }
        if self.origin_stack is not None:
            fields["origin_stack"] = self.origin_stack
        if self.access_stack is not None:
            fields["access_stack"] = self.access_stack
        if self.value_type is not None:
            fields["value_type"] = self.value_type
        if self.value_repr is not None:
            fields["value"] = self.value_repr
        return fields

    def to_dict(self) -> dict[str, Any]:
        """
        Every field as a JSON-safe dict.
        """
        fields = self.log_fields()
        fields["thread"] = self.thread
        fields["timestamp"] = self.timestamp
        fields.setdefault("origin_stack", None)
        fields.setdefault("access_stack", None)
        fields.setdefault("value_type", None)
        fields.setdefault("value", None)
        return fields


def _indent(stack: str) -> list[str]:
    return ["    " + line for line in stack.rstrip("\n").splitlines()]


def new_violation(
    code: str,
    *,
    subject: str,
    message: str,
    origin: RequestTag | None,
    accessor: RequestTag | None,
    thread: str,
    kind: str | None = None,
    hint: str | None = None,
    timestamp: float | None = None,
    **details: Any,
) -> Violation:
    """
    A `Violation` of *code*: its *kind* and *hint* are the rule's unless
    given (a logged event of a code this version does not know keeps
    its own). *details* are the optional fields of `Violation` (sites,
    stacks, value, app, docs_url).
    """
    rule = RULES.get(code)
    return Violation(
        code=code,
        kind=kind or (rule.kind if rule else "unknown"),
        message=message,
        subject=subject,
        origin=origin,
        accessor=accessor,
        thread=thread,
        hint=(rule.hint if rule else "") if hint is None else hint,
        timestamp=time.time() if timestamp is None else timestamp,
        **details,
    )
