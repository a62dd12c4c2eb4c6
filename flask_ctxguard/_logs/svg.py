"""
Timelines: the first occurrences of a finding drawn as one SVG figure.

`timeline_svg` lays the requests of a finding's sample events out on one
lane per worker thread: each request is a bar labelled with its method,
path and token, the request whose value crossed carries a dot (where it was
set or kept), and each crossing is an arrow from that dot to the access, on
the lane of the thread that made it. The x axis is the order of the moments
the events tell (request starts, accesses), not their distance in time, so
a request of a millisecond and a gap of an hour both stay legible; each
moment is labelled with its time relative to the first.

Everything taken from a log (paths, tokens, thread names, sites) is
attacker-controlled: it reaches the SVG only as escaped text nodes, never
in an attribute. The figure styles itself with presentation attributes, so
it looks the same inline in the HTML report and as a file in the docs.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Iterable, Iterator
from typing import Any

from flask_ctxguard._core.escape import escape
from flask_ctxguard._logs.findings import Finding

__all__ = ["MAX_DRAWN_OCCURRENCES", "esc", "timeline_svg"]

#: Occurrences drawn in one figure; the others are counted in its caption.
MAX_DRAWN_OCCURRENCES = 4

_WIDTH = 960
_LABELS = 180  # the lane names' column
_LANE = 64
_TOP = 24
_BAR = 18
_CHAR = 6.6  # average width of a character of the 11px labels
_ORIGIN = "#2a6fdb"
_ACCESSOR = "#8a5cd6"
_ARROW = "#d22d2d"
_INK = "#222222"
_MUTED = "#666666"
_SURROGATES = re.compile("[\ud800-\udfff]")


def esc(value: object) -> str:
    """
    *value* as text safe in HTML and SVG, in a text node or an attribute.

    Control characters become visible escapes (as in the text report), lone
    surrogates too (they cannot be written as UTF-8), then ``& < > " '`` are
    escaped.
    """
    text = escape(str(value))
    text = _SURROGATES.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return html.escape(text, quote=True)


@dataclasses.dataclass(slots=True)
class _Request:
    token: str
    lane: int
    method: str
    path: str
    start: int = 0
    end: float = 0.0
    origin: bool = False
    accessor: bool = False


@dataclasses.dataclass(slots=True)
class _Access:
    lane: int
    slot: int
    origin: _Request | None
    accessor: _Request | None


@dataclasses.dataclass(slots=True)
class _Layout:
    lanes: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    requests: dict[str, _Request] = dataclasses.field(default_factory=dict)
    accesses: list[_Access] = dataclasses.field(default_factory=list)
    times: list[float | None] = dataclasses.field(default_factory=list)


def _side(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _process(token: str) -> str:
    return token.rpartition("-")[0]


def _layout(samples: Iterable[tuple[dict[str, Any], float | None]]) -> _Layout:
    layout = _Layout()
    lane_of: dict[tuple[str, str], int] = {}
    # Moments in the order each event tells them (origin start, accessor
    # start, access), sorted by time where times are known.
    moments: list[tuple[float, int, str, str]] = []
    last = 0.0

    def lane(process: str, thread: str) -> int:
        key = (process, thread)
        if key not in lane_of:
            lane_of[key] = len(layout.lanes)
            layout.lanes.append((thread, process))
        return lane_of[key]

    def request(side: dict[str, Any], *, origin: bool) -> _Request | None:
        nonlocal last
        if "token" not in side:
            return None
        token = str(side["token"])
        found = layout.requests.get(token)
        if found is None:
            found = layout.requests[token] = _Request(
                token=token,
                lane=lane(_process(token), str(side.get("thread", "?"))),
                method=str(side.get("method", "?")),
                path=str(side.get("path", "?")),
            )
            started = _number(side.get("started"))
            last = started if started is not None else last
            moments.append((last, len(moments), "start", token))
        found.origin |= origin
        found.accessor |= not origin
        return found

    for index, (event, when) in enumerate(samples):
        origin = request(_side(event.get("origin")), origin=True)
        accessor_side = _side(event.get("accessor"))
        accessor = request(accessor_side, origin=False)
        if accessor is not None:
            access_lane = accessor.lane
        else:
            process = _process(origin.token) if origin else ""
            thread = str(accessor_side.get("thread", "?"))
            access_lane = lane(process, thread)
        last = when if when is not None else last
        moments.append((last, len(moments), "access", str(index)))
        layout.accesses.append(_Access(access_lane, 0, origin, accessor))
    moments.sort()
    for slot, (when, _, kind, ref) in enumerate(moments):
        layout.times.append(when or None)
        if kind == "start":
            layout.requests[ref].start = slot
        else:
            layout.accesses[int(ref)].slot = slot
    return layout


def _bar_ends(layout: _Layout, slots: int, *, in_flight: bool) -> None:
    starts: dict[int, list[int]] = {}
    for found in layout.requests.values():
        starts.setdefault(found.lane, []).append(found.start)
    for found in layout.requests.values():
        # A request lasts until its last access; a request whose data was
        # read lasts past the read only if it was still in flight (CG104).
        # Otherwise its end is unknown: a short bar, ending before the next
        # request on its thread.
        ends = [
            access.slot + 0.3
            for access in layout.accesses
            if access.accessor is found
            or (in_flight and access.origin is found)
        ]
        later = [s - 0.3 for s in starts[found.lane] if s > found.start]
        end = max(ends) if ends else found.start + 0.5
        found.end = max(min(end, *later, slots - 0.5), found.start + 0.4)


def timeline_svg(finding: Finding, *, title: str = "") -> str:
    """
    The timeline of *finding*'s first occurrences, as an ``<svg>`` element.

    Args:
        finding: the finding, with its sample events.
        title: the figure's accessible name (escaped here).
    """
    samples = finding.samples[:MAX_DRAWN_OCCURRENCES]
    layout = _layout(samples)
    _bar_ends(layout, len(layout.times), in_flight=finding.code == "CG104")
    slots = max(len(layout.times), 1)
    step = (_WIDTH - _LABELS - 40) / slots
    lanes = max(len(layout.lanes), 1)
    legend_top = _TOP + lanes * _LANE + 28
    height = legend_top + 44

    def x(slot: float) -> float:
        return round(_LABELS + 20 + (slot + 0.5) * step, 1)

    def y(lane: int) -> int:
        return _TOP + lane * _LANE + 24

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline"'
        f' role="img" viewBox="0 0 {_WIDTH} {height}" width="{_WIDTH}"'
        f' height="{height}" font-family="sans-serif" font-size="11">',
        f"<title>{esc(title or 'timeline')}</title>",
    ]
    parts += _lanes(layout.lanes, y)
    parts += _axis(layout.times, x, _TOP + lanes * _LANE + 4)
    parts += _bars(layout.requests.values(), x, y, step)
    parts += _arrows(layout.accesses, x, y)
    parts += _legend(finding, legend_top)
    parts.append("</svg>")
    return "\n".join(parts)


def _lanes(names: list[tuple[str, str]], y: Any) -> Iterator[str]:
    for number, (thread, process) in enumerate(names):
        top = y(number) - 24
        fill = "#f6f7f9" if number % 2 else "#ffffff"
        yield (
            f'<g class="lane"><rect x="0" y="{top}" width="{_WIDTH}"'
            f' height="{_LANE}" fill="{fill}" stroke="#e3e5e8"/>'
            f'<text class="lane-name" x="8" y="{top + 28}" fill="{_INK}">'
            f"{esc(_clip(thread, 26))}<title>thread {esc(thread)}</title>"
            "</text>"
        )
        if process:
            yield (
                f'<text x="8" y="{top + 44}" fill="{_MUTED}"'
                f' font-size="10">process {esc(_clip(process, 18))}</text>'
            )
        yield "</g>"


def _axis(times: list[float | None], x: Any, top: int) -> Iterator[str]:
    known = [t for t in times if t is not None]
    first = min(known) if known else None
    yield (
        f'<line x1="{_LABELS}" y1="{top}" x2="{_WIDTH - 10}" y2="{top}"'
        f' stroke="{_MUTED}"/>'
    )
    for slot, when in enumerate(times):
        if when is None or first is None:
            label = "?"
        else:
            label = f"+{(when - first) * 1000:.0f} ms"
        yield (
            f'<text class="tick" x="{x(slot)}" y="{top + 14}"'
            f' text-anchor="middle" fill="{_MUTED}">{esc(label)}</text>'
        )


def _bars(
    requests: Iterable[_Request], x: Any, y: Any, step: float
) -> Iterator[str]:
    requests = list(requests)
    for found in requests:
        left, right = x(found.start - 0.2), x(found.end)
        # A label stops where the next bar on its lane begins.
        following = [
            x(other.start - 0.2)
            for other in requests
            if other.lane == found.lane and other.start > found.start
        ]
        top = y(found.lane) - _BAR // 2
        color = _ORIGIN if found.origin else _ACCESSOR
        label = f"{found.method} {found.path} · {found.token}"
        room = max(right - left, step * 0.9, 120)
        if following:
            room = min(room, min(following) - left - 6)
        role = "origin" if found.origin else "accessor"
        yield (
            f'<g class="request {role}"><rect class="bar" x="{left}"'
            f' y="{top}" width="{round(right - left, 1)}" height="{_BAR}"'
            f' rx="4" fill="{color}" fill-opacity="0.25" stroke="{color}"/>'
            f'<text class="bar-label" x="{left + 2}" y="{top + _BAR + 13}"'
            f' fill="{_INK}">{esc(_clip(label, int(room / _CHAR)))}'
            f"<title>{esc(label)}</title></text></g>"
        )
        if found.origin:
            yield (
                f'<circle class="origin-site" cx="{x(found.start)}"'
                f' cy="{y(found.lane)}" r="5" fill="{_ORIGIN}"/>'
            )


def _arrows(accesses: list[_Access], x: Any, y: Any) -> Iterator[str]:
    for access in accesses:
        x1, y1 = x(access.slot), y(access.lane)
        if access.accessor is None:
            # An access outside any request: a mark on its thread's lane.
            yield (
                f'<rect class="access-outside" x="{x1 - 4}" y="{y1 - 9}"'
                f' width="8" height="18" fill="{_ARROW}"/>'
            )
        if access.origin is None:
            continue
        x0, y0 = x(access.origin.start), y(access.origin.lane)
        if y0 == y1:
            # Along one lane: arc above the bars.
            lift = y0 - 24
            curve = f"C {x0} {lift}, {x1 - 12} {lift}, {x1 - 9} {y1 - 6}"
            head = _head(x1, y1, "down")
        else:
            bend = max(abs(x1 - x0) / 2, 30)
            curve = f"C {x0 + bend} {y0}, {x1 - bend} {y1}, {x1 - 9} {y1}"
            head = _head(x1, y1, "right")
        yield (
            f'<g class="arrow"><path d="M {x0} {y0} {curve}" fill="none"'
            f' stroke="{_ARROW}" stroke-width="2"/>'
            f'<polygon points="{head}" fill="{_ARROW}"/></g>'
        )


def _head(x: float, y: float, pointing: str) -> str:
    if pointing == "down":
        return f"{x - 4} {y - 11} {x - 14} {y - 8} {x - 7} {y - 1}"
    return f"{x} {y} {x - 10} {y - 5} {x - 10} {y + 5}"


def _legend(finding: Finding, top: int) -> Iterator[str]:
    shown = min(len(finding.samples), MAX_DRAWN_OCCURRENCES)
    lines = [(_ARROW, "read at", finding.access_site or "(unknown)")]
    if finding.origin_site is not None:
        lines.insert(0, (_ORIGIN, "set or kept at", finding.origin_site))
    for row, (color, what, site) in enumerate(lines):
        base = top + row * 16
        yield (
            f'<g class="site"><rect x="{_LABELS}" y="{base - 9}" width="10"'
            f' height="10" fill="{color}"/><text x="{_LABELS + 16}"'
            f' y="{base}" fill="{_INK}">{esc(what)}: {esc(_clip(site, 110))}'
            "</text></g>"
        )
    yield (
        f'<text x="8" y="{top}" fill="{_MUTED}">'
        f"events: {shown} of {finding.events} drawn</text>"
    )


def _clip(text: str, width: int) -> str:
    width = max(width, 8)
    return text if len(text) <= width else text[: width - 1] + "…"
