"""
Log events: the guard's ``contamination`` events read out of log lines.

`read_events` streams lines (`open_log` takes plain or gzipped bytes, from
files or standard input) and yields each event with the pipeline wrapper it
came in and its line number, counting every other line as skipped; a line
that claims to be an event but cannot be read raises `UnreadableEventError`.
Lines are JSON (bare, after a shipper's prefix, or in a wrapper's field) or
structlog's text renderings (``text_formats.py``). An older structlog writes
a stack's line breaks raw: such an event's following lines are joined to
it. When an event was logged is ``times.py``'s, grouping the events into
findings ``findings.py``'s.
"""

from __future__ import annotations

import ast
import gzip
import io
import json
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
    "open_log",
    "parse_line",
    "read_events",
]

#: A pipeline's wrapper field that may hold the event, as a JSON string
#: (Docker's and Kubernetes' ``log``, CloudWatch's and syslog-to-JSON
#: shippers' ``message``, ``logcli --output=jsonl``'s ``line``) or as an
#: object (an Elasticsearch hit's ``_source``).
WRAPPERS = ("log", "message", "line", "_source")

_EVENT = "contamination"
_raw_decode = json.JSONDecoder().raw_decode
_GZIP_MAGIC = b"\x1f\x8b"
# The event named before the key-values (ConsoleRenderer), or as a key.
_EVENT_HEAD = re.compile(
    r"(?:^|\s)contamination\s|event=['\"]?contamination\b"
)


class LineCounter:
    """The number of lines read and of events found among them."""

    __slots__ = ("events", "lines", "shared")

    def __init__(self) -> None:
        self.lines = 0
        self.events = 0
        #: Events found on a line after another one (two processes wrote
        #: to one stream at once).
        self.shared = 0

    @property
    def skipped(self) -> int:
        """Lines that were not a ``contamination`` event."""
        return self.lines - self.events + self.shared


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


def read_events(  # noqa: PLR0912 - a branch per shape of line
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
    # An older structlog writes a stack's line breaks as they are: an
    # event's first line, then the stack's lines (indented, or up to the
    # closing quote of a logfmt value), then the rest of the event.
    pending: list[str] = []
    start = 0
    quoted = False
    for line in lines:
        counter.lines += 1
        if pending:
            plain = strip_ansi(line)
            if len(pending) < _MAX_CONTINUED and (
                plain[:1] in _INDENTS
                if not quoted
                else not _starts_record(plain)
            ):
                pending.append(line)
                if quoted:
                    found = _read("".join(pending), start, final=False)
                    if found is _OPEN_QUOTE:
                        continue
                    pending = []
                    if found is not None and found is not _CONTINUED:
                        counter.events += 1
                        yield (*found, start)
                continue
            found = _read("".join(pending), start, final=True)
            pending = []
            if found is not None:
                counter.events += 1
                yield (*found, start)
        # Most lines of a real log are not ours: skip them without parsing
        # (a line cut before its event name still names a code).
        if _EVENT not in line and "CG1" not in line:
            continue
        if "}{" in line and (parts := _concatenated(line)) is not None:
            yield from _read_parts(parts, counter)
            continue
        found = _read(line, counter.lines, final=False)
        if found is _CONTINUED or found is _OPEN_QUOTE:
            pending, start = [line], counter.lines
            quoted = found is _OPEN_QUOTE
        elif found is not None:
            counter.events += 1
            yield (*found, counter.lines)
    if pending:
        found = _read("".join(pending), start, final=True)
        if found is not None:
            counter.events += 1
            yield (*found, start)


_INDENTS = (" ", "\t")
# Bound of the lines one event may span.
_MAX_CONTINUED = 1000
# What `_read` returns for a line that may go on on the next lines: after
# an indented line, or up to the quote that closes a value.
_CONTINUED: tuple[dict[str, Any], None] = ({}, None)
_OPEN_QUOTE: tuple[dict[str, Any], None] = ({}, None)


def _read(
    text: str, number: int, *, final: bool
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    try:
        found = parse_line(text)
    except UnreadableValueError as error:
        if not final and (
            _may_go_on(text) or looks_like_event(strip_ansi(text))
        ):
            return _OPEN_QUOTE
        raise UnreadableEventError(number, str(error)) from None
    if found is not None:
        return found
    if not final and _may_go_on(text):
        return _CONTINUED
    if looks_like_event(strip_ansi(text)):
        reason = (
            "it names a 'contamination' event and a code, but is not a"
            " JSON, key=value or console rendering of one with string"
            " 'code' and 'subject' values"
        )
        raise UnreadableEventError(number, reason)
    return None


def _read_parts(
    parts: list[str], counter: LineCounter
) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None, int]]:
    # Processes writing to one stream (gunicorn's workers, each with its
    # own structlog) can leave two events on one line.
    found_here = 0
    for part in parts:
        found = _read(part, counter.lines, final=True)
        if found is not None:
            counter.events += 1
            counter.shared += found_here > 0
            found_here += 1
            yield (*found, counter.lines)


def _concatenated(line: str) -> list[str] | None:
    """
    The JSON objects of *line* when it holds more than one, back to back
    (what is left after the last one that decodes is a part too); `None`
    for a line of one object, or none.
    """
    parts: list[str] = []
    index = len(line) - len(line.lstrip())
    while index < len(line) and line[index] == "{":
        try:
            end = _raw_decode(line, index)[1]
        except ValueError:
            break
        parts.append(line[index:end])
        index = end + len(line[end:]) - len(line[end:].lstrip())
    rest = line[index:].strip()
    if rest:
        parts.append(rest)  # an event cut short: unreadable, if one
    return parts if len(parts) > 1 else None


def _starts_record(plain: str) -> bool:
    # A line that is no stack's: another event begins (a cut line before
    # it never closed its quote).
    return plain[:1] not in _INDENTS and looks_like_event(plain)


def _may_go_on(line: str) -> bool:
    # A key=value rendering of the event whose first line ends inside a
    # value (a stack).
    text = strip_ansi(line)
    return (
        _EVENT in text
        and "=" in text
        and not text.lstrip().startswith("{")
        and _EVENT_HEAD.search(text) is not None
    )


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
