"""What the suite needs to know about the installed Flask, found by feature."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from flask_ctxguard._core.flaskcompat import (
    POP_UNLINKS_REQUEST,
    REQUESTS_SHARE_G,
)

#: For tests that need two requests to share one ``g`` (CG101).
needs_shared_g = pytest.mark.skipif(
    not REQUESTS_SHARE_G,
    reason=(
        "this Flask pushes a context of its own for every request (Flask"
        " 3.2 merged RequestContext into AppContext), so no 'g' is shared"
        " by two requests and CG101 cannot happen"
    ),
)

#: For tests that need Flask to free a request without the cycle collector.
needs_acyclic_request = pytest.mark.skipif(
    not POP_UNLINKS_REQUEST,
    reason=(
        "this Flask leaves a request in a reference cycle with its environ"
        " (Flask 3.2 no longer clears environ['werkzeug.request']): only"
        " the cycle collector frees it, guarded or not"
    ),
)


@contextlib.contextmanager
def raises_at_teardown(
    kind: type[BaseException],
) -> Iterator[list[BaseException]]:
    """
    Like ``pytest.raises(kind)`` for an error raised while Flask pops a
    context: Flask 3.2 on Python 3.11+ raises those in an exception group.
    The error is put in the list yielded.
    """
    caught: list[BaseException] = []
    try:
        yield caught
    except kind as exc:
        caught.append(exc)
    except BaseException as exc:
        inner = getattr(exc, "exceptions", ())
        if len(inner) != 1 or not isinstance(inner[0], kind):
            raise
        caught.append(inner[0])
    else:
        pytest.fail(f"DID NOT RAISE {kind.__name__}")
