"""
``python -m flask_ctxguard``: the command line (see ``_cli.py``).
"""

from __future__ import annotations

import sys

from flask_ctxguard._cli import main

if __name__ == "__main__":
    sys.exit(main())
