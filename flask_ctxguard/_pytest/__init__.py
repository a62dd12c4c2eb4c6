"""
The pytest plugin's machinery: per-run and per-test state, and what it
needs of the guard.
"""

from __future__ import annotations
