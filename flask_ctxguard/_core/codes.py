"""
The runtime rule codes, the one list of them, for the layers that validate
a code before any rule is loaded (``CTXGUARD_IGNORE``, the pytest marker).

Each code's rule (slug, title, fix) is in
`flask_ctxguard._core.violation.RULES`, which has exactly these keys.
"""

from __future__ import annotations

__all__ = ["CODES"]

#: Every runtime code and its slug, in order.
CODES: dict[str, str] = {
    "CG101": "g-leak",
    "CG102": "stale-access",
    "CG103": "cross-request-access",
    "CG104": "cross-thread-access",
    "CG105": "context-leak",
    "CG106": "contextvar-leak",
}
