"""
When a logged event happened: the times logs carry, read as epoch seconds.

`seen_at` takes an event's time from its ``timestamp`` (structlog's
``TimeStamper``, ISO 8601 or epoch), else from the pipeline's wrapper, else
from when the accessing request started; `epoch_of` reads one value.
"""

from __future__ import annotations

import datetime
import math
import re
from typing import Any

__all__ = ["epoch_of", "seen_at"]

_UTC = datetime.timezone.utc
_FRACTION = re.compile(r"[.,](\d+)")


def seen_at(
    event: dict[str, Any], wrapper: dict[str, Any] | None
) -> float | None:
    """
    When *event* was logged, as ``time.time()``, if the log says so.

    From the event's ``timestamp`` (structlog's `TimeStamper`, ISO or
    epoch), else the wrapper's time (Docker's ``time``, CloudWatch's epoch
    milliseconds, Loki's nanoseconds), else when the accessing request
    started.
    """
    stamp = event.get("timestamp")
    if stamp.__class__ is str:
        # The common case, structlog's TimeStamper(fmt="iso", utc=True):
        # remembered, as the events of one second share most of it.
        when = _iso_epoch(stamp)
        if when is not None:
            return when
    candidates: list[object] = [stamp]
    if wrapper is not None:
        candidates += [
            wrapper.get("timestamp"),
            wrapper.get("time"),
            wrapper.get("@timestamp"),
        ]
    accessor = event.get("accessor")
    if isinstance(accessor, dict):
        candidates.append(accessor.get("started"))
    for value in candidates:
        when = epoch_of(value)
        if when is not None:
            return when
    return None


def _iso_epoch(text: str) -> float | None:
    # Python 3.10's fromisoformat takes neither a 'Z' nor fractions of
    # other than 3 or 6 digits.
    if text[-1:] == "Z":
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        text = _FRACTION.sub(_six_digits, text, count=1)
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_UTC)
    return moment.timestamp()


def _six_digits(match: re.Match[str]) -> str:
    return "." + (match.group(1) + "000000")[:6]


def epoch_of(value: object) -> float | None:
    """
    *value* as ``time.time()``, or `None` if it is no time.

    An ISO 8601 string, or a number (or numeric string) of seconds,
    milliseconds, microseconds or nanoseconds since 1970.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.replace(".", "", 1).isdigit():
            return epoch_of(float(text))
        if text.endswith("z"):
            text = text[:-1] + "Z"
        return _iso_epoch(text)
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        if not math.isfinite(number):  # json.loads takes 'Infinity'
            return None
        # Seconds, milliseconds, microseconds or nanoseconds since 1970.
        while number > 1e11:
            number /= 1000
        return number if number > 0 else None
    return None
