"""
Reading contamination events out of logs (JSON lines and structlog's text
renderings) and grouping them, or violations, into findings: the one
``Finding`` type of the report command and ``hammer``'s report.
"""

from __future__ import annotations
