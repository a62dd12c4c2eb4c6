"""
Reading contamination events out of logs and grouping them into
findings, for the report command.
"""

from __future__ import annotations
