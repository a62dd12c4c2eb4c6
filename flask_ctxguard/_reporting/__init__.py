"""
Turning what a rule found into a report: each code's message, code sites
and stacks, the grouping key of findings, collecting violations for a test
harness, and the sinks every violation goes to (the reporter: kept, logged
through structlog, sent as the blinker signal and to OpenTelemetry, raised).
"""

from __future__ import annotations
