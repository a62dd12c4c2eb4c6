"""
Events in text logs: structlog's console and key=value renderings.

The README's quick start configures no renderer, so an app logs through
structlog's ``ConsoleRenderer`` by default (colored on a terminal); others
use ``KeyValueRenderer`` or ``LogfmtRenderer``, directly or through the
standard library's ``logging`` (``ProcessorFormatter``, or a plain format
such as ``%(asctime)s %(levelname)s %(name)s %(message)s`` around the
rendered text). All of them write the event's values as ``key=value``:
Python reprs (``'text'``, ``{'token': ...}``), or bare words where the
value needs no quoting.

`parse_key_values` reads such a line back into the event dict;
`looks_like_event` tells whether a line is meant to be a ``contamination``
event at all, so that one that cannot be read is an error, not a line
skipped.
"""

from __future__ import annotations

import ast
import re
from typing import Any

__all__ = ["ANSI", "looks_like_event", "parse_key_values", "strip_ansi"]

#: Terminal color and style sequences, as ConsoleRenderer writes them.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# A key: a word, at the start or after whitespace, before '='.
_KEY = re.compile(r"(?:^|(?<=[\s\[(,]))([A-Za-z_][\w.-]*)=(?!=)")
# A code the guard logs, right after a 'code' key in any rendering:
# JSON ("code": "CG106"), a repr (code='CG106'), logfmt or console
# (code=CG106), JSON inside a JSON string (\"code\": \"CG106\").
_CODE = re.compile(r"code[\\\"':= ]{1,8}CG1\d\d")
_KIND = re.compile(
    r"kind[\\\"':= ]{1,8}(?:g-leak|stale-access|cross-request-access"
    r"|cross-thread-access|context-leak|contextvar-leak)\b"
)
_STAMP = re.compile(
    r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
)
_OPENERS = {"{": "}", "[": "]", "(": ")"}
_CLOSERS = {"}", "]", ")"}
# The event name of a console rendering, before the first key.
_EVENT_WORD = re.compile(r"(?:^|[\s\]])contamination(?:\s|$)")


class UnreadableValueError(ValueError):
    """A value on a key=value line that is no Python literal."""


def strip_ansi(line: str) -> str:
    """*line* without terminal color sequences."""
    return ANSI.sub("", line) if "\x1b" in line else line


def looks_like_event(line: str) -> bool:
    """
    Whether *line* claims to be a ``contamination`` event: it has a
    ``code`` of the guard's (``CG1xx``) and says ``contamination`` or
    names one of the guard's kinds (a line cut before its event name).
    """
    return _CODE.search(line) is not None and (
        "contamination" in line or _KIND.search(line) is not None
    )


def parse_key_values(line: str) -> dict[str, Any] | None:
    """
    The ``contamination`` event of a ``key=value`` *line*, or `None` if
    the line is not one.

    The event is named by an ``event`` key, or, as ``ConsoleRenderer``
    writes it, by the word ``contamination`` before the first key. Values
    are Python literals (strings, numbers, ``None``, dicts) or bare words;
    text before the first key (a timestamp, a level, a logger) is ignored.

    Raises:
        UnreadableValueError: when a quoted or bracketed value does not parse.
    """
    line = strip_ansi(line).rstrip("\r\n")
    fields: dict[str, Any] = {}
    first = _KEY.search(line)
    if first is None:
        return None
    head = line[: first.start()]
    position = first.start()
    while True:
        match = _KEY.search(line, position)
        if match is None:
            break
        value, position = _value(line, match.end())
        fields.setdefault(match.group(1), value)
    if "timestamp" not in fields:
        # ConsoleRenderer and logging formats write the time before the
        # key-values.
        stamp = _STAMP.search(head)
        if stamp is not None:
            fields["timestamp"] = stamp.group()
    event = fields.get("event")
    if event is None and _EVENT_WORD.search(head):
        fields["event"] = event = "contamination"
    if event != "contamination":
        return None
    for side in ("origin", "accessor"):
        # LogfmtRenderer quotes the repr of a dict as a string.
        value = fields.get(side)
        if isinstance(value, str) and value.startswith("{"):
            fields[side] = _literal(value)
    return fields


def _value(line: str, start: int) -> tuple[Any, int]:
    if start >= len(line):
        return "", start
    char = line[start]
    if char in "'\"" or char in _OPENERS:
        try:
            end = (
                _string_end(line, start)
                if char in "'\""
                else _bracket_end(line, start)
            )
        except UnreadableValueError:
            if _bare_end(line, start) == len(line):
                raise
            end = -1
        if end != -1 and _is_boundary(line, end):
            return _literal(line[start:end]), end
    # A bare word: up to the next whitespace that starts a key, so that
    # an older ConsoleRenderer's unquoted text with spaces (which may
    # start with a quote: message='g.user' of ...) stays whole.
    end = _bare_end(line, start)
    return _bare(line[start:end]), end


def _is_boundary(line: str, end: int) -> bool:
    # Whether a value ending at *end* is followed by the next key or by
    # nothing but whitespace.
    rest = line[end:]
    if not rest.strip():
        return True
    return rest[0].isspace() and _KEY.match(rest.lstrip()) is not None


def _bare_end(line: str, start: int) -> int:
    end = start
    while True:
        space = line.find(" ", end)
        if space == -1:
            end = len(line)
            break
        if _KEY.match(line, space + 1) or line[space + 1 :].strip() == "":
            end = space
            break
        end = space + 1
    return end


def _bare(word: str) -> Any:
    if word in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[word]
    try:
        return int(word)
    except ValueError:
        pass
    try:
        return float(word)
    except ValueError:
        return word


def _string_end(line: str, start: int) -> int:
    quote = line[start]
    index = start + 1
    while index < len(line):
        char = line[index]
        if char == "\\":
            index += 2
            continue
        if char == quote:
            return index + 1
        index += 1
    msg = f"unterminated string at column {start + 1}"
    raise UnreadableValueError(msg)


def _bracket_end(line: str, start: int) -> int:
    depth = 0
    index = start
    while index < len(line):
        char = line[index]
        if char in "'\"":
            index = _string_end(line, index)
            continue
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    msg = f"unclosed {line[start]!r} at column {start + 1}"
    raise UnreadableValueError(msg)


def _literal(text: str) -> Any:
    if text[:1] in "'\"" and "\n" in text:
        # An older LogfmtRenderer quotes a stack without escaping its line
        # breaks; a repr never holds a raw one.
        text = text.replace("\n", "\\n")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        msg = f"not a Python literal: {text[:40]!r}"
        raise UnreadableValueError(msg) from None
