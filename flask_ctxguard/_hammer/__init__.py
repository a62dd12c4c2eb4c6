"""
hammer(): serve an app like production and fire concurrent clients at
it, with canaries that show crossovers.
"""

from __future__ import annotations
