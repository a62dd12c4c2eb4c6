"""
What counts as a violation: CG102-CG104 (an access from the wrong
request or thread), CG105 (contexts left pushed) and CG106 (ContextVars
leaked across requests).
"""

from __future__ import annotations
