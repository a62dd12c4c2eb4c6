"""
The blinker signal every violation is sent through.
"""

from __future__ import annotations

from blinker import Namespace

__all__ = ["contamination_detected"]

_signals = Namespace()

#: Sent as ``contamination_detected.send(app, violation=v)`` for every
#: violation, so it can be forwarded to Sentry, metrics or a test.
#:
#: .. versionadded:: 0.1.0
contamination_detected = _signals.signal("contamination-detected")
