"""
Turning an access into a report: the violation model and its messages,
sites, the one escaper, the grouping key of findings, and the sinks
(structlog, the blinker signal, OpenTelemetry).
"""

from __future__ import annotations
