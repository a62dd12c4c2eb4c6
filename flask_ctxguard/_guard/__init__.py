"""
The runtime guard: the extension, its per-app state, and the request,
session and g classes it installs, armed and retired with each request.
"""

from __future__ import annotations
