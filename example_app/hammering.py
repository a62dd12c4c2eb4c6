"""
The demo's hammer step: a leak only `flask_ctxguard.testing.hammer` finds.

``POST /buggy/drafts`` keeps the draft being edited in a
``threading.local`` (see `example_app.buggy`). The guard cannot see that:
it is neither the request, the session, ``g`` nor a ContextVar. `hammer`
serves the app like gunicorn's gthread worker (a pool of threads shared by
every client, keep-alive), has each client save a draft titled with its
canary and read it back, and finds other clients' canaries in the answers.

Run it alone with ``python -m example_app.hammering``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, TextIO

from flask_ctxguard.testing import HammerResult, RequestSpec, hammer

from . import create_app
from .db import DEMO_USERS

__all__ = ["drafts_plan", "main", "run"]


def drafts_plan(client: int) -> list[RequestSpec]:
    """Log in as a demo user, save a draft titled ``{client}``, read it."""
    user = DEMO_USERS[client % len(DEMO_USERS)]
    json = (("Content-Type", "application/json"),)
    return [
        RequestSpec(
            "/auth/login",
            method="POST",
            body=(
                f'{{"username": "{user.username}",'
                f' "password": "{user.password}"}}'
            ),
            headers=json,
        ),
        RequestSpec(
            "/buggy/drafts",
            method="POST",
            body='{"title": "{client}\'s draft", "body": "secret plans"}',
            headers=json,
        ),
        RequestSpec("/buggy/drafts/current"),
    ]


def run(directory: str, *, threads: int = 4, rounds: int = 3) -> HammerResult:
    """Hammer the notes app (database in *directory*) with `drafts_plan`."""
    app = create_app(
        {
            "SECRET_KEY": os.urandom(16).hex(),
            "DATABASE": os.path.join(directory, "hammer.sqlite3"),
            "EXAMPLE_BUGGY": True,
            "CTXGUARD_MODE": "log",
            # The demo users' passwords need no protection here.
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "AUDIT_FLUSH_INTERVAL": None,
            "LOG_LEVEL": "ERROR",
        }
    )
    return hammer(app, drafts_plan, threads=threads, rounds=rounds)


def show(result: HammerResult, out: TextIO) -> bool:
    """Print what hammer found; whether it found the crossover."""
    write = out.write
    steps = len(drafts_plan(0))
    clients = len(result.canaries)
    rounds = len(result.responses) // max(clients * steps, 1)
    write(
        f"\nhammer: {clients} clients x {rounds} rounds on a pool of"
        " shared worker threads (like gunicorn gthread), each saving a draft"
        " titled with its canary and reading it back.\n"
    )
    codes = ", ".join(sorted({v.code for v in result.violations}))
    guard = (
        f"{len(result.violations)} violations ({codes})"
        if codes
        else "no violation"
    )
    write(
        f"  the guard reported {guard}; hammer found"
        f" {len(result.crossovers)} crossovers.\n"
    )
    if not result.crossovers:
        return False
    first = result.crossovers[0]
    write(f"  e.g. {first}\n")
    write(
        "  The draft lives in a threading.local: only hammer can see it"
        " (https://flask-ctxguard.readthedocs.io/en/latest/hammer.html).\n"
    )
    return True


def main(out: Any = None) -> int:
    """Run the step alone; 0 when hammer found the crossover."""
    out = out or sys.stdout
    with tempfile.TemporaryDirectory(prefix="ctxguard-hammer-") as directory:
        found = show(run(directory), out)
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
