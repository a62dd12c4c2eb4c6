"""
The one escaper: request-derived text made safe for a terminal or a log.

A request path is attacker-controlled, and percent-decoding puts any
character into it; so do header values, thread names and endpoints. Before
such text reaches a person, `escape` writes every character that could
drive a terminal, forge a line or reorder what a reader sees as a Python
escape: C0 and C1 controls and DEL, the Unicode line and paragraph
separators (U+2028, U+2029), the bidirectional overrides and isolates
(U+202A-U+202E, U+2066-U+2069, as in Trojan Source), the zero-width
characters (U+200B-U+200F), the byte order mark (U+FEFF), and every other
character Python does not consider printable (format characters, private
use, surrogates, unassigned code points, spaces other than U+0020).

Escaping is idempotent: the escapes are printable ASCII, so text escaped
twice reads as text escaped once. Backslashes are kept as they are, so a
Windows path in a site stays readable.
"""

from __future__ import annotations

__all__ = ["escape"]

_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str, *, keep_newlines: bool = False) -> str:
    r"""
    *text* with every unprintable character written as a Python escape.

    ``"\n"`` becomes ``\n``, ``"\r"`` ``\r``, ``"\t"`` ``\t``, other
    characters below U+0100 ``\xNN``, the rest ``\uNNNN`` or
    ``\UNNNNNNNN``; *text* itself is returned when there is nothing to
    escape.

    Args:
        text: The text to escape.
        keep_newlines: Keep line feeds (for stacks, which are multi-line
            by nature); every other character is escaped as usual.
    """
    # The common case, one C call: nothing to escape.
    if text.isprintable():
        return text
    return "".join(
        char
        if char.isprintable() or (keep_newlines and char == "\n")
        else _escaped(char)
        for char in text
    )


def _escaped(char: str) -> str:
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
