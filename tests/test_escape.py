"""
The one escaper: every class of character that could drive a terminal,
forge a line or reorder text comes out as a printable escape.
"""

from __future__ import annotations

import pytest

from flask_ctxguard._core.escape import escape


class TestEscape:
    @pytest.mark.parametrize(
        ("raw", "escaped"),
        [
            ("\n", "\\n"),
            ("\r", "\\r"),
            ("\t", "\\t"),
            ("\x00", "\\x00"),
            ("\x1b", "\\x1b"),
            ("\x07", "\\x07"),
            ("\x7f", "\\x7f"),
            ("\x85", "\\x85"),
            ("\x9b", "\\x9b"),
        ],
    )
    def test_c0_c1_controls_and_del(self, raw, escaped):
        """C0 and C1 controls and DEL are escaped."""
        assert f"a{escaped}b" == escape(f"a{raw}b")

    @pytest.mark.parametrize("raw", ["\u2028", "\u2029"])
    def test_line_and_paragraph_separators(self, raw):
        """The Unicode line and paragraph separators are escaped."""
        assert f"a\\u{ord(raw):04x}b" == escape(f"a{raw}b")

    @pytest.mark.parametrize(
        "code", [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
    )
    def test_bidi_overrides_and_isolates(self, code):
        """Bidirectional embeddings, overrides and isolates are escaped."""
        assert f"a\\u{code:04x}b" == escape(f"a{chr(code)}b")

    @pytest.mark.parametrize("code", range(0x200B, 0x2010))
    def test_zero_width_characters(self, code):
        """Zero-width spaces, joiners and marks are escaped."""
        assert f"a\\u{code:04x}b" == escape(f"a{chr(code)}b")

    def test_byte_order_mark(self):
        """The byte order mark (zero-width no-break space) is escaped."""
        assert "a\\ufeffb" == escape("a\ufeffb")

    def test_other_unprintable_characters(self):
        """Surrogates and characters outside the BMP that are not
        printable are escaped too."""
        assert "\\udc80\\U000e0001" == escape("\udc80\U000e0001")

    def test_printable_text_is_returned_as_is(self):
        """Printable text, backslashes and non-ASCII letters included, is
        returned unchanged (the same object)."""
        text = "C:\\app\\views.py:12 in ünïcode 名前"

        assert text is escape(text)

    def test_keep_newlines(self):
        """keep_newlines keeps line feeds and escapes everything else."""
        assert "a\nb\\rc\\x1b\\u2028" == escape(
            "a\nb\rc\x1b\u2028", keep_newlines=True
        )

    def test_idempotent(self):
        """Escaping twice is escaping once."""
        once = escape("x\x1b[2J\n\u202e")

        assert once == escape(once)

    def test_every_class_at_once(self):
        """Each class of character the old escapers covered between them
        is escaped in one pass."""
        text = "p\x1b\n\u2028\u200b\ufeff\u202e\x85"

        assert "p\\x1b\\n\\u2028\\u200b\\ufeff\\u202e\\x85" == escape(text)
