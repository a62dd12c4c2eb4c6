"""
The one place a violation goes.

In order: the bounded in-memory buffer, one structlog event (rate-limited
per code, subject and sites), the `contamination_detected` signal, and in
``raise`` mode a `ContaminationError` raised at the offending access.
Nothing here may break a request in ``log`` mode: a failing log pipeline or
signal receiver is reported once, at error level, and otherwise ignored.
"""

from __future__ import annotations

import collections
import contextlib
import reprlib
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from flask_ctxguard._core.config import Settings
from flask_ctxguard._core.logger import get_logger, stdlib_logger
from flask_ctxguard._core.tags import RequestTag
from flask_ctxguard._core.violation import Violation, new_violation
from flask_ctxguard._reporting.signals import contamination_detected
from flask_ctxguard.exceptions import ContaminationError

__all__ = ["Reporter", "safe_repr"]

# Bounds of the internal tables: a hot buggy endpoint, or a buggy endpoint
# with ever-changing sites, must not grow memory.
_MAX_KEYS = 4096
_MAX_ERRORS = 256

_SECRET_WORDS = (
    "authorization",
    "cookie",
    "passw",
    "secret",
    "session",
    "token",
    "apikey",
    "api_key",
    "credential",
)
_REDACTED = "'<redacted>'"

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlevel = 2
_repr.maxdict = 6
_repr.maxlist = 6


def looks_secret(name: str) -> bool:
    """Whether a key or attribute *name* looks like it holds a secret."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def safe_repr(value: object, name: str = "") -> str:
    """
    A short repr of *value*, with secrets redacted.

    The value itself is redacted when *name* looks secret; inside it, the
    entries of any mapping (dicts, Werkzeug's headers, anything with
    ``items()``) under secret-looking keys are redacted, however deep.
    Reprs are truncated.
    """
    if name and looks_secret(name):
        return _REDACTED
    try:
        return _repr.repr(_redacted(value, _repr.maxlevel + 1))
    except Exception:  # noqa: BLE001 - a user's __repr__ may raise anything
        return f"<{type(value).__name__} with a failing repr>"


class _Redacted:
    def __repr__(self) -> str:
        return _REDACTED


def _redacted(value: object, depth: int) -> object:
    """*value* rebuilt from plain containers, secrets replaced."""
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if depth <= 0:
        return value if isinstance(value, tuple | list | dict) else ...
    items = getattr(value, "items", None)
    if callable(items) and not isinstance(value, type):
        pairs = list(items())[: _repr.maxdict + 1]
        return {
            key: (
                _Redacted()
                if isinstance(key, str) and looks_secret(key)
                else _redacted(item, depth - 1)
            )
            for key, item in pairs
        }
    if isinstance(value, list | tuple | set | frozenset):
        shown = [_redacted(item, depth - 1) for item in list(value)[:7]]
        return tuple(shown) if isinstance(value, tuple) else shown
    return value


class Reporter:
    """
    Collects, logs, signals and (in raise mode) raises violations of one
    app.
    """

    def __init__(self, settings: Settings, app_name: str, app: Any) -> None:
        self.settings = settings
        self.app_name = app_name
        self._app_ref: Callable[[], Any] = weakref.ref(app)
        self.violations: collections.deque[Violation] = collections.deque(
            maxlen=settings.max_violations
        )
        self._lock = threading.Lock()
        self._repeats: collections.OrderedDict[tuple[Any, ...], int] = (
            collections.OrderedDict()
        )
        self._errors: set[tuple[str, str]] = set()
        # collecting(): how many blocks are open, and the settings to
        # restore when the last one closes.
        self._collectors = 0
        self._raise_settings: Settings | None = None
        # CTXGUARD_OTEL: OpenTelemetry is imported only when on.
        self._otel: Callable[[Violation], None] | None = None
        if settings.otel:
            from flask_ctxguard._reporting.otel import record

            self._otel = record

    @property
    def raising(self) -> bool:
        """Whether violations raise at the offending access."""
        return self.settings.mode == "raise"

    @contextlib.contextmanager
    def collecting(self) -> Iterator[None]:
        """
        While the block runs, raise mode acts as log mode: violations are
        buffered, logged and signalled, never raised.

        For `hammer`, where a ContaminationError raised into the served
        app would turn the request into a 500 and hide the rest of the
        run. Blocks may nest and overlap across threads: raise mode comes
        back when the last one closes. `raising` itself is not touched.
        """
        with self._lock:
            if self._collectors == 0 and self.settings.mode == "raise":
                self._raise_settings = self.settings
                self.settings = self.settings.collecting()
            self._collectors += 1
        try:
            yield
        finally:
            with self._lock:
                self._collectors -= 1
                if self._collectors == 0 and self._raise_settings is not None:
                    self.settings = self._raise_settings
                    self._raise_settings = None

    def is_ignored(self, code: str, subject: str) -> bool:
        """Whether the configuration drops this violation."""
        return self.settings.is_ignored(code, subject)

    def build(
        self,
        code: str,
        *,
        subject: str,
        message: str,
        origin: RequestTag | None,
        accessor: RequestTag | None,
        thread: str,
        origin_site: str | None = None,
        access_site: str | None = None,
        origin_stack: str | None = None,
        access_stack: str | None = None,
        value: object = None,
        has_value: bool = False,
        value_name: str = "",
        hint: str | None = None,
    ) -> Violation:
        """
        A `Violation` of *code*, with *hint* (by default the rule's) and
        the value shown only as the configuration allows.
        """
        value_type = value_repr = None
        if has_value:
            value_type = type(value).__name__
            if self.settings.log_values:
                value_repr = safe_repr(value, value_name)
        return new_violation(
            code,
            message=message,
            subject=subject,
            origin=origin,
            accessor=accessor,
            thread=thread,
            origin_site=origin_site,
            access_site=access_site,
            origin_stack=origin_stack if self.settings.stacks else None,
            access_stack=access_stack if self.settings.stacks else None,
            hint=hint,
            value_type=value_type,
            value_repr=value_repr,
            app=self.app_name,
            docs_url=self.settings.docs_url,
        )

    def report(self, violation: Violation, *, raise_now: bool = True) -> None:
        """
        Send *violation* everywhere it goes.

        Raises:
            ContaminationError: in raise mode, when *raise_now*.
        """
        __tracebackhide__ = True  # pytest shows the user's frames only
        self.violations.append(violation)
        self._log(violation)
        self._signal(violation)
        if self._otel is not None:
            self._send_otel(self._otel, violation)
        if raise_now and self.raising:
            raise ContaminationError(violation)

    def _log(self, violation: Violation) -> None:
        if not self.settings.logs:
            return  # a pytest run whose plugin reports it instead
        key = violation.key
        with self._lock:
            count = self._repeats.pop(key, 0) + 1
            self._repeats[key] = count
            if len(self._repeats) > _MAX_KEYS:
                self._repeats.popitem(last=False)
        # Log the 1st, 2nd, 4th, 8th... repeat: a flood of n identical
        # violations costs log2(n) events, each with the running count.
        if count & (count - 1):
            return
        fields = violation.log_fields()
        # So that counts from a sampled fleet read as estimates.
        fields["sample_rate"] = self.settings.sample_rate
        if count > 1:
            fields["repeats"] = count
        try:
            logger = get_logger()
            if self.raising:
                logger.error("contamination", **fields)
            else:
                logger.warning("contamination", **fields)
        except Exception as exc:  # noqa: BLE001 - the app's log pipeline
            self.internal_error("logging a violation", exc)

    def _signal(self, violation: Violation) -> None:
        # An app that is gone (a request object outlived its app) still has
        # its violation sent, with no sender: receivers for any sender see it.
        app = self._app_ref()
        try:
            contamination_detected.send(app, violation=violation)
        except Exception as exc:  # noqa: BLE001 - a user's receiver
            self.internal_error("a contamination_detected receiver", exc)

    def _send_otel(
        self, record: Callable[[Violation], None], violation: Violation
    ) -> None:
        try:
            record(violation)
        except Exception as exc:  # noqa: BLE001 - the app's OTel pipeline
            self.internal_error("sending a violation to OpenTelemetry", exc)

    def internal_error(self, where: str, exc: BaseException) -> None:
        """
        Say once, at error level with the traceback, that *where* failed.

        The request goes on untouched.
        """
        key = (where, type(exc).__name__)
        with self._lock:
            if key in self._errors or len(self._errors) >= _MAX_ERRORS:
                return
            self._errors.add(key)
        message = (
            f"flask_ctxguard: {where} failed; the guard carries on and the"
            " request is unaffected. This is reported once."
        )
        try:
            get_logger().error(
                "internal-error",
                where=where,
                error=repr(exc),
                app=self.app_name,
                exc_info=exc,
            )
        except Exception:  # noqa: BLE001 - structlog itself is broken
            with contextlib.suppress(Exception):
                stdlib_logger().error(message, exc_info=exc)

    def declined(self, what: str, reason: str) -> None:
        """
        Say once, at warning level, that *what* is not guarded and why.
        """
        key = ("declined", what)
        with self._lock:
            if key in self._errors or len(self._errors) >= _MAX_ERRORS:
                return
            self._errors.add(key)
        try:
            get_logger().warning(
                "unguarded", what=what, reason=reason, app=self.app_name
            )
        except Exception:  # noqa: BLE001 - the app's log pipeline
            with contextlib.suppress(Exception):
                stdlib_logger().warning(
                    "flask_ctxguard: %s is not guarded: %s", what, reason
                )

    def clear(self) -> None:
        """Forget every violation and repeat count."""
        with self._lock:
            self.violations.clear()
            self._repeats.clear()
