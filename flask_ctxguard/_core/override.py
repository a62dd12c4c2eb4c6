"""
The override a test run imposes on every guard of the process.

A pytest run with ``--ctxguard`` decides for every guard, whatever the
app configured (docs/configuration.md, "Which configuration wins"): the
mode, whether guards the app did not configure log through structlog,
whether stacks are trimmed, and how the contexts its fixtures pushed are
named. That choice is one frozen `RunOverride`, replaced as a whole under
a lock by `overriding` and read without a lock by `current` (reading a
module global is atomic): a reader sees the old override or the new one,
never half of each.

`flask_ctxguard._core.config` reads the mode and the logging switch,
`flask_ctxguard._reporting.sites` the stacks switch,
`flask_ctxguard._core.tags` and the ``g`` checks the names of harness
contexts. Only the pytest plugin sets it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Literal

__all__ = ["RunOverride", "current", "no_harness", "overriding"]


def no_harness(obj: object) -> str | None:
    """Outside a test run, no context was pushed by a test harness."""
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class RunOverride:
    """
    What a test run imposes on every guard, whatever the app configured.

    Attributes:
        mode: Replaces the mode of every guard that is not ``"off"``;
            `None` leaves each app's own.
        quiet: Keeps violations out of structlog, since the plugin's
            report is the channel, unless the app set
            ``CTXGUARD_MODE = "log"`` itself.
        full_stacks: Turns off the folding of stacks.
        harness: What pushed a request or app context, or armed a
            request (given its record), when a test harness did rather
            than the app: ``"the fixture 'app_ctx'"``; `None` otherwise.
    """

    mode: Literal["raise", "log", "off"] | None = None
    quiet: bool = False
    full_stacks: bool = False
    harness: Callable[[object], str | None] = no_harness


_lock = threading.Lock()
#: The override in effect; replaced whole, never changed in place.
_current = RunOverride()


def current() -> RunOverride:
    """The override in effect now (the default one outside a test run)."""
    return _current


@contextlib.contextmanager
def overriding(override: RunOverride) -> Iterator[RunOverride]:
    """
    Impose *override* while the block runs; the one before comes back at
    its end.

    Blocks nest (a pytester run inside a guarded run); yields the
    override that was in effect before.
    """
    global _current
    with _lock:
        previous, _current = _current, override
    try:
        yield previous
    finally:
        with _lock:
            _current = previous
