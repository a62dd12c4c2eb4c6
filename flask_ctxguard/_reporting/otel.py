"""
OpenTelemetry: each violation as a span event and a counter increment.

Imported only when an app sets ``CTXGUARD_OTEL = True``, and then
only the OpenTelemetry API: the application's SDK, or none, decides where
the data goes. Without an SDK every call here is the API's no-op.
"""

from __future__ import annotations

import importlib.metadata
import threading
from typing import Any

from opentelemetry import metrics, trace

from flask_ctxguard._reporting.violations import Violation

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


def _get_counter() -> Any:
    # Made at the first violation, not at import, so an app without
    # violations creates nothing; made again if the global meter provider
    # changed since (tests reset it between runs).
    global _counter, _provider
    provider = metrics.get_meter_provider()
    with _lock:
        if _counter is None or provider is not _provider:
            meter = provider.get_meter(METER, _version())
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


def _version() -> str:
    try:
        return importlib.metadata.version("flask-ctxguard")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return ""


def record(violation: Violation) -> None:
    """
    Add *violation* to the current span, if one is recording, and count it.
    """
    span = trace.get_current_span()
    if span.is_recording():
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
