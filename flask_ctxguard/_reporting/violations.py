"""
Violations: the rule table, the one object every finding becomes, and
every violation message.

`str(violation)` (for people) and `Violation.log_fields` (for structlog) are
both rendered from the same fields here, so they never drift apart. Each
code's message is built by one function here (`g_leak_message` ...), from
the data its detector passes.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

from flask_ctxguard._core.tags import RequestTag

__all__ = [
    "RULES",
    "Rule",
    "Violation",
    "context_leak_message",
    "contextvar_hint",
    "contextvar_leak_message",
    "contextvar_left_by_test_message",
    "cross_request_message",
    "cross_thread_message",
    "escape_controls",
    "g_leak_message",
    "stale_access_message",
]

DOCS = "docs/rules.md"

# What must never reach a terminal or a plain-text log raw: C0 controls
# (newline, ESC...), DEL, C1 controls, Unicode line and paragraph
# separators, and the bidirectional overrides and isolates that reorder
# what a reader sees. A request path is attacker-controlled, and
# percent-decoding puts any of them into it (issue 11).
_CONTROLS = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
# Stacks are multi-line by nature: only their newlines are kept.
_STACK_CONTROLS = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """
    *text* with every control character written as a Python escape
    (``\\n`` as ``\\x0a``, ESC as ``\\x1b``), so that it reads as one
    line and cannot drive a terminal; *keep_newlines* keeps line feeds.
    """
    pattern = _STACK_CONTROLS if keep_newlines else _CONTROLS
    if pattern.search(text) is None:
        return text
    return pattern.sub(_escaped, text)


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
        """The rule's section in the docs."""
        return f"{DOCS}#{self.code.lower()}"


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

    .. versionadded:: 0.1.0
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
                safe = escape_controls(text)
                if safe is not text:
                    object.__setattr__(self, name, safe)
        for name in ("origin_stack", "access_stack"):
            text = getattr(self, name)
            if isinstance(text, str):
                safe = escape_controls(text, keep_newlines=True)
                if safe is not text:
                    object.__setattr__(self, name, safe)

    @property
    def rule(self) -> Rule:
        """The `Rule` of this violation's code."""
        return RULES[self.code]

    @property
    def docs(self) -> str:
        """Where the rule is documented."""
        return self.rule.docs

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
        lines.append(f"  docs: {self.docs}")
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


# -- the messages, one per code ---------------------------------------------


def _of(subject: str, attribute: str, origin: RequestTag) -> str:
    what = f"'{subject}.{attribute}'" if attribute else f"'{subject}'"
    return (
        f"{what} of {origin.method} {origin.path} (request"
        f" {origin.token}, thread {origin.thread_name!r})"
    )


def _request_named(origin: RequestTag) -> str:
    """*origin* as the messages name it: ``GET /path (request TOKEN)``."""
    return f"{origin.method} {origin.path} (request {origin.token})"


def _request_with_endpoint(origin: RequestTag) -> str:
    """``GET /path (request TOKEN, endpoint 'view')``: where its view is."""
    view = "" if origin.endpoint is None else f", endpoint {origin.endpoint!r}"
    return f"{origin.method} {origin.path} (request {origin.token}{view})"


def g_leak_message(
    name: str, how: str, origin: RequestTag, accessor: RequestTag
) -> str:
    """CG101: ``g.<name>`` set during *origin*, *how* during *accessor*."""
    return (
        f"'g.{name}' was {how} during {accessor}"
        f" but was set during {_request_named(origin)}."
    )


def stale_access_message(
    subject: str, attribute: str, origin: RequestTag, thread: str
) -> str:
    """CG102: *subject* of the ended request *origin* used in *thread*."""
    return (
        f"{_of(subject, attribute, origin)} was used after that request"
        f" ended, outside any request, in thread {thread!r}."
    )


def cross_request_message(
    subject: str,
    attribute: str,
    origin: RequestTag,
    accessor: RequestTag | None,
    *,
    ended: bool,
) -> str:
    """
    CG103: *subject* of *origin* used during *accessor* (`None`: a request
    that was not sampled).
    """
    when = (
        "after that request ended"
        if ended
        else "while that request was still in flight"
    )
    what = _of(subject, attribute, origin)
    during = (
        "another request (one that was not sampled, so it is not named)"
        if accessor is None
        else str(accessor)
    )
    return f"{what} was used during {during}, {when}."


def cross_thread_message(
    subject: str, attribute: str, origin: RequestTag, thread: str
) -> str:
    """CG104: *subject* of the in-flight *origin* used from *thread*."""
    return (
        f"{_of(subject, attribute, origin)} was used from thread"
        f" {thread!r}, which has no context of that request, while it was"
        " in flight."
    )


def context_leak_message(
    app_name: str, thread: str, request: tuple[str, str] | None
) -> str:
    """
    CG105: a context of the app *app_name* is still pushed in *thread*;
    *request* is ``(method, path)`` for a request context.
    """
    if request is None:
        what, shared = "an app context", ""
    else:
        what = f"the request context of {request[0]} {request[1]}"
        shared = "request, session and "
    return (
        f"{what} of the app {app_name!r} is still pushed in thread"
        f" {thread!r}; everything that runs after it shares its"
        f" {shared}'g'."
    )


def contextvar_leak_message(
    var_name: str,
    origin: RequestTag | None,
    accessor: RequestTag,
    *,
    sample_rate: float = 1.0,
) -> str:
    """
    CG106: *var_name* held *origin*'s value for the whole of *accessor*
    (*origin* `None`: a request that was not sampled).
    """
    if origin is None:
        return (
            f"ContextVar {var_name!r} held, for the whole of {accessor}, a"
            " value that an earlier request set and never reset; which"
            " request is unknown, as only a sample of requests is guarded"
            f" (CTXGUARD_SAMPLE_RATE = {sample_rate:g})."
        )
    return (
        f"ContextVar {var_name!r} held, for the whole of {accessor}, the"
        f" value that {_request_with_endpoint(origin)} set and never reset."
    )


def contextvar_left_by_test_message(var_name: str, origin: RequestTag) -> str:
    """CG106 at a test's teardown: *var_name* still holds *origin*'s value."""
    return (
        f"ContextVar {var_name!r} still held, when the test ended, the"
        f" value that {_request_with_endpoint(origin)} set and never reset;"
        " the"
        " next test's requests would inherit it."
    )


def contextvar_hint(name: str) -> str:
    """
    The fix for the ContextVar *name* left set: structlog's own variables
    are cleared by ``clear_contextvars()``, any other only by its token.
    """
    if name.startswith("structlog_"):
        return (
            "call 'structlog.contextvars.clear_contextvars()' at the start"
            " of every request, or bind with"
            " 'structlog.contextvars.bound_contextvars()'."
        )
    return (
        f"reset {name!r} with the token its set() returned, in a"
        " teardown_request function or a try/finally around the work;"
        " 'structlog.contextvars.clear_contextvars()' does not clear it."
    )
