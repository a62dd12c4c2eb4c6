"""
A rule's Markdown section rendered for a terminal, for ``explain``.

`render_rule` turns the subset of Markdown the docs use (headings, fenced
code blocks, inline code, bold, links, tables) into text: headings
underlined, code blocks indented, and every link resolved to its absolute
address on the docs site (``flask_ctxguard._core.docs_site``), so that
it can be followed from the terminal. With *color*, headings are bold
and code is coloured with ANSI escapes; without it (a pipe, a file), the
text is plain.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

from flask_ctxguard._core.docs_site import resolve_link

__all__ = ["render_markdown", "render_rule", "slug"]

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6}) +(.*?) *#*$")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_NOT_SLUG = re.compile(r"[^\w\- ]")

_BOLD_ON, _UNDERLINE_ON, _RESET = "\x1b[1m", "\x1b[4m", "\x1b[0m"
_CODE_ON, _LINK_ON = "\x1b[36m", "\x1b[2m"


def slug(heading: str) -> str:
    """
    The anchor of *heading* on the docs site, as GitHub and MyST make it:
    lower case, punctuation dropped, spaces as hyphens.
    """
    text = _CODE.sub(r"\1", heading).strip().lower()
    return _NOT_SLUG.sub("", text).replace(" ", "-")


def render_rule(section: str, code: str, *, color: bool) -> str:
    """
    *section*, the Markdown of rule *code*, as text for a terminal.

    An anchor of one of the section's own headings (``#fix``) resolves to
    the rule's own page; any other link as written in ``docs/rules.md``.
    """
    own = {
        slug(match.group(2))
        for line in section.splitlines()
        if (match := _HEADING.match(line))
    }
    page = f"rules/{code.lower()}"

    def resolve(target: str) -> str:
        if target.startswith("#") and target[1:] in own:
            return resolve_link(target, page)
        return resolve_link(target)

    return render_markdown(section, resolve=resolve, color=color)


def render_markdown(
    text: str, *, resolve: Callable[[str], str], color: bool
) -> str:
    """*text* rendered for a terminal, links resolved by *resolve*."""
    return "".join(line + "\n" for line in _lines(text, resolve, color))


def _lines(
    text: str, resolve: Callable[[str], str], color: bool
) -> Iterator[str]:
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if fenced:
            code = f"    {line}"
            yield f"{_CODE_ON}{code}{_RESET}" if color else code
            continue
        heading = _HEADING.match(line)
        if heading is None:
            yield _inline(line, resolve, color)
            continue
        level, title = len(heading.group(1)), heading.group(2)
        shown = _inline(title, resolve, color=False)
        if color:
            style = _BOLD_ON + (_UNDERLINE_ON if level <= 2 else "")
            yield f"{style}{shown}{_RESET}"
        else:
            yield shown
            yield ("=" if level <= 2 else "-") * len(shown)


def _inline(line: str, resolve: Callable[[str], str], color: bool) -> str:
    def link(match: re.Match[str]) -> str:
        url = resolve(match.group(2))
        if color:
            return f"{match.group(1)} ({_LINK_ON}{url}{_RESET})"
        return f"{match.group(1)} ({url})"

    line = _LINK.sub(link, line)
    if not color:
        return _BOLD.sub(r"\1", line)
    line = _BOLD.sub(f"{_BOLD_ON}\\1{_RESET}", line)
    return _CODE.sub(f"{_CODE_ON}\\1{_RESET}", line)
