"""
OpenTelemetry: each violation as a span event and a counter increment.

Imported only when an app sets ``CTXGUARD_OTEL = True``, and then only the
OpenTelemetry API: the application's SDK, or none, decides where the data
goes. Without an SDK every call here is the API's no-op.

A span gets one event per finding (`finding_key`): the repeats of one bug
within one request (Flask-Login reads ``g._login_user`` several times per
request) are counted, not added again.
"""

from __future__ import annotations

import collections
import threading
from typing import Any

from opentelemetry import metrics, trace

from flask_ctxguard._core.commands import installed_version
from flask_ctxguard._core.violation import Violation
from flask_ctxguard._reporting.grouping import FindingKey, violation_key

__all__ = ["COUNTER", "EVENT", "METER", "record"]

#: The span event added to the current span.
EVENT = "ctxguard.contamination"
#: The counter, with the attributes ``code``, ``kind`` and ``app``.
COUNTER = "ctxguard.violations"
#: The instrumentation scope: the meter is named after the package.
METER = "flask_ctxguard"

_lock = threading.Lock()
# The counter and the meter provider it was made from.
_counter: Any = None
_provider: Any = None

# The findings each recent span already has an event of, by (trace id,
# span id): bounded, the oldest spans forgotten first.
_MAX_SPANS = 4096
_MAX_KEYS_PER_SPAN = 64
_span_findings: collections.OrderedDict[tuple[int, int], set[FindingKey]] = (
    collections.OrderedDict()
)


def _get_counter() -> Any:
    # Made at the first violation, not at import, so an app without
    # violations creates nothing; made again if the global meter provider
    # changed since (tests reset it between runs).
    global _counter, _provider
    provider = metrics.get_meter_provider()
    with _lock:
        if _counter is None or provider is not _provider:
            meter = provider.get_meter(METER, installed_version() or "")
            _provider = provider
            _counter = meter.create_counter(
                COUNTER,
                unit="{violation}",
                description=(
                    "Request-context contamination found by flask_ctxguard,"
                    " by rule code."
                ),
            )
        return _counter


def record(violation: Violation) -> None:
    """
    Add *violation* to the current span, if one is recording, and count it.
    """
    span = trace.get_current_span()
    if span.is_recording() and _is_new_on(span, violation_key(violation)):
        attributes = {
            "ctxguard.code": violation.code,
            "ctxguard.kind": violation.kind,
            "ctxguard.subject": violation.subject,
        }
        # OpenTelemetry attributes cannot be None: absent sites are left out.
        if violation.origin_site is not None:
            attributes["ctxguard.origin_site"] = violation.origin_site
        if violation.access_site is not None:
            attributes["ctxguard.access_site"] = violation.access_site
        span.add_event(EVENT, attributes=attributes)
    _get_counter().add(
        1,
        {
            "code": violation.code,
            "kind": violation.kind,
            "app": violation.app or "",
        },
    )


def _is_new_on(span: Any, key: FindingKey) -> bool:
    # Whether the span has no event of this finding yet; records it.
    context = span.get_span_context()
    span_id = (context.trace_id, context.span_id)
    with _lock:
        keys = _span_findings.get(span_id)
        if keys is None:
            keys = _span_findings[span_id] = set()
            if len(_span_findings) > _MAX_SPANS:
                _span_findings.popitem(last=False)
        if key in keys:
            return False
        if len(keys) < _MAX_KEYS_PER_SPAN:
            keys.add(key)
        return True
