"""
Log events: the guard's ``contamination`` events read out of log lines.

`read_events` streams lines (`open_log` takes plain or gzipped bytes, from
files or standard input) and yields each event with the pipeline wrapper it
came in and its line number, counting every other line as skipped; a line
that claims to be an event but cannot be read raises `UnreadableEventError`.
Lines are JSON (bare, after a shipper's prefix, or in a wrapper's field) or
structlog's text renderings (``text_formats.py``). `seen_at` tells when an
event was logged from whatever time the event or its wrapper carries.
Grouping the events into findings is ``findings.py``'s.
"""

from __future__ import annotations

import ast
import datetime
import gzip
import io
import json
import math
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

from flask_ctxguard._logs.text_formats import (
    UnreadableValueError,
    looks_like_event,
    parse_key_values,
    strip_ansi,
)

__all__ = [
    "WRAPPERS",
    "LineCounter",
    "UnreadableEventError",
    "epoch_of",
    "open_log",
    "parse_line",
    "read_events",
    "seen_at",
]

#: A pipeline's wrapper field that may hold the event, as a JSON string
#: (Docker's and Kubernetes' ``log``, CloudWatch's and syslog-to-JSON
#: shippers' ``message``, ``logcli --output=jsonl``'s ``line``) or as an
#: object (an Elasticsearch hit's ``_source``).
WRAPPERS = ("log", "message", "line", "_source")

_EVENT = "contamination"
_raw_decode = json.JSONDecoder().raw_decode
_GZIP_MAGIC = b"\x1f\x8b"
_UTC = datetime.timezone.utc
_FRACTION = re.compile(r"[.,](\d+)")


class LineCounter:
    """The number of lines read and of events found among them."""

    __slots__ = ("events", "lines")

    def __init__(self) -> None:
        self.lines = 0
        self.events = 0

    @property
    def skipped(self) -> int:
        """Lines that were not a ``contamination`` event."""
        return self.lines - self.events


def open_log(stream: IO[bytes]) -> IO[bytes]:
    """
    *stream*, decompressed if it starts with the gzip magic number.

    Raises:
        OSError: when it cannot be read.
    """
    peek = getattr(stream, "peek", None)
    if peek is None:
        # An in-memory stream: wrap it so it can be peeked at.
        buffered = io.BufferedReader(stream)  # type: ignore[type-var]
        stream, peek = buffered, buffered.peek
    if peek(2)[:2] == _GZIP_MAGIC:
        return gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[return-value]
    return stream


class UnreadableEventError(ValueError):
    """
    A line that claims to be a ``contamination`` event (it says so and
    has a guard's code) but cannot be read: a report without it would be
    wrong, so the ``report`` command stops.

    Attributes:
        line: The line's number in its stream, from 1.
        reason: What is wrong with it.
    """

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def read_events(
    lines: Iterable[str], counter: LineCounter
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None, int]]:
    """
    The ``contamination`` events among *lines*, each with the pipeline's
    wrapper object it came in (or `None`) and its line number.

    Every line is counted in *counter*; a line that is not the guard's
    event is skipped.

    Raises:
        UnreadableEventError: for a line that looks like an event (see
            `looks_like_event`) but cannot be read.
    """
    for line in lines:
        counter.lines += 1
        # Most lines of a real log are not ours: skip them without parsing
        # (a line cut before its event name still names a code).
        if _EVENT not in line and "CG1" not in line:
            continue
        try:
            found = parse_line(line)
        except UnreadableValueError as error:
            raise UnreadableEventError(counter.lines, str(error)) from None
        if found is not None:
            counter.events += 1
            yield (*found, counter.lines)
        elif looks_like_event(strip_ansi(line)):
            reason = (
                "it names a 'contamination' event and a code, but is not a"
                " JSON, key=value or console rendering of one with string"
                " 'code' and 'subject' values"
            )
            raise UnreadableEventError(counter.lines, reason)


def parse_line(
    line: str,
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """
    The event on *line* and its wrapper, or `None` if there is none.

    The event is the line itself as JSON, or the line's JSON after a
    plain-text prefix (a container runtime's, syslog's, a ``logging``
    format's), or one level down in a wrapper field (`WRAPPERS`) as JSON
    or text; or the line is a ``key=value`` rendering (structlog's
    ``ConsoleRenderer``, ``KeyValueRenderer``, ``LogfmtRenderer``, after
    any prefix), or the repr of the event dict.

    Raises:
        UnreadableValueError: when a key=value rendering of an event has a
            value that does not parse.
    """
    found = _parse_json(line)
    if found is not None:
        return found
    event = _key_values(line)
    if event is not None and _is_event(event):
        return event, None
    return None


def _key_values(text: str) -> dict[str, Any] | None:
    # A value that does not parse matters only on a line that claims to
    # be an event: an app's own line may well hold "note='it's".
    try:
        return parse_key_values(text)
    except UnreadableValueError:
        if looks_like_event(strip_ansi(text)):
            raise
        return None


def _parse_json(
    line: str, *, nested: bool = False
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    try:
        # raw_decode: json.loads without two Python frames (this runs for
        # every event of a gigabyte of logs); text after the object is
        # tolerated.
        data = _raw_decode(line)[0]
    except ValueError:
        data = None
    if data.__class__ is not dict:
        start = line.find("{")
        if start < 0 or (start == 0 and data is not None):
            return None
        data = _loads(line[start:]) or _repr_dict(line[start:])
        if data is None:
            return None
    if _is_event(data):
        return data, None
    return None if nested else _unwrap(data)


def _unwrap(
    data: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    for key in WRAPPERS:
        inner = data.get(key)
        if isinstance(inner, bytes):
            inner = inner.decode("utf-8", "replace")
        if isinstance(inner, dict):
            if _is_event(inner):
                return inner, data
            continue
        if not isinstance(inner, str):
            continue
        found = _parse_json(inner, nested=True)
        event = found[0] if found else _key_values(inner)
        if event is not None and _is_event(event):
            return event, data
    return None


def _loads(text: str | bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        return None
    return data if isinstance(data, dict) else None


def _repr_dict(text: str) -> dict[str, Any] | None:
    # The repr of an event dict: a renderer-less pipeline printing it.
    if "'event': 'contamination'" not in text:
        return None
    end = text.rfind("}")
    try:
        data = ast.literal_eval(text[: end + 1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _is_event(data: dict[str, Any]) -> bool:
    return (
        data.get("event") == "contamination"
        and data.get("code").__class__ is str
        and data.get("subject").__class__ is str
    )


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
