"""
flask_ctxguard's overhead against bare Flask: ``python -m benchmarks``.

Not part of the installed package; see ``benchmarks/README.md``.
"""

from __future__ import annotations
