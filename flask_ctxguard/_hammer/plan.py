"""
The plan of a `hammer` run: what each client sends, and what marks it.

A plan is a list of paths or `RequestSpec` objects (or a function of the
client index returning one). The literal ``{client}`` in a request becomes
the client's canary, a random token unique to the client and the run;
`find_marks` adds the words of a plan that only one client sends. Finding
these marks in other clients' responses is `_hammer_result`'s job.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol

from flask_ctxguard._core.escape import escape

#: The placeholder replaced by each client's canary.
PLACEHOLDER = "{client}"

Server = Literal["pooled", "thread-per-connection"]
SERVERS: tuple[Server, ...] = ("pooled", "thread-per-connection")

_CANARY_PREFIX = "cg"
_CANARY_ALPHABET = string.ascii_lowercase + string.digits
_CANARY_LENGTH = 8


@dataclasses.dataclass(frozen=True, slots=True)
class RequestSpec:
    """
    One request of a `hammer` plan.

    The literal ``{client}`` in *path*, in a header value or in *body* is
    replaced by the sending client's canary (see `hammer`).

    Args:
        path: The path with its query string, starting with ``/``.
        method: The HTTP method.
        body: The request body; a `str` is sent encoded as UTF-8.
        headers: Header names and values, as pairs or a mapping.
        private: Whether the response belongs to its client alone: another
            client's canary in it is a crossover. Set `False` for pages
            that rightly show other users' data (a member list).

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.1.0
       *body* may be a `str`, *headers* a mapping; *private* added.
    """

    path: str
    method: str = "GET"
    body: bytes | str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    private: bool = True

    def __post_init__(self) -> None:
        path: object = self.path
        if not isinstance(path, str) or not path.startswith("/"):
            msg = (
                f"RequestSpec: path must be a str starting with '/'; got"
                f" {self.path!r}. Pass the path and query only, such as"
                " '/login/{client}?next=/'."
            )
            raise ValueError(msg)
        headers: object = self.headers
        if isinstance(headers, Mapping):
            headers = headers.items()
        if not isinstance(headers, Iterable):
            msg = (
                f"RequestSpec: headers must be (name, value) pairs or a"
                f" mapping; got {headers!r}."
            )
            raise TypeError(msg)
        object.__setattr__(self, "headers", tuple(map(tuple, headers)))

    @property
    def body_bytes(self) -> bytes | None:
        """The body as bytes, or `None`."""
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body

    def with_canary(self, canary: str) -> RequestSpec:
        """This request with every ``{client}`` replaced by *canary*."""
        body = self.body_bytes
        return dataclasses.replace(
            self,
            path=self.path.replace(PLACEHOLDER, canary),
            body=(
                None
                if body is None
                else body.replace(PLACEHOLDER.encode(), canary.encode())
            ),
            headers=tuple(
                (name, value.replace(PLACEHOLDER, canary))
                for name, value in self.headers
            ),
        )

    def describe(self) -> str:
        """``"GET /login/{client}"``, control characters escaped."""
        return escape(f"{self.method} {self.path}")


class _Plan(Protocol):
    def __call__(self, client: int, /) -> Sequence[str | RequestSpec]: ...


Requests = Sequence[str | RequestSpec] | _Plan


def client_plan(requests: Requests | str, client: int) -> list[RequestSpec]:
    """The checked plan of one client."""
    if isinstance(requests, str):
        requests = [requests]  # one path, not a sequence of characters
    items: object = requests(client) if callable(requests) else requests
    if isinstance(items, str):
        items = [items]
    if not isinstance(items, Iterable):
        msg = (
            f"hammer: client {client}'s plan is {items!r}; expected a list"
            " of paths or RequestSpec objects."
        )
        raise TypeError(msg)
    plan = []
    for position, item in enumerate(items):
        if isinstance(item, str):
            item = RequestSpec(item)  # noqa: PLW2901 - normalised in place
        elif not isinstance(item, RequestSpec):
            msg = (
                f"hammer: request {position} of client {client}'s plan is"
                f" {item!r} ({type(item).__name__}); expected a path such as"
                " '/me' or a flask_ctxguard.testing.RequestSpec."
            )
            raise TypeError(msg)
        plan.append(item)
    if not plan:
        msg = (
            f"hammer: client {client}'s plan is empty; give at least one"
            " path or RequestSpec."
        )
        raise ValueError(msg)
    return plan


# -- canaries and marks ------------------------------------------------------


def make_canaries(clients: int) -> dict[int, str]:
    """
    One canary per client: ``"cg"`` and 8 random lowercase letters and
    digits, distinct, none inside another.
    """
    canaries: dict[int, str] = {}
    seen: set[str] = set()
    while len(canaries) < clients:
        token = _CANARY_PREFIX + "".join(
            secrets.choice(_CANARY_ALPHABET) for _ in range(_CANARY_LENGTH)
        )
        if token not in seen:
            seen.add(token)
            canaries[len(canaries)] = token
    return canaries


@dataclasses.dataclass(frozen=True, slots=True)
class Mark:
    """Something only one client sends: its canary, or a plan's own."""

    text: str
    pattern: re.Pattern[str]
    sent_in: tuple[str, ...]


_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")


def _tokens(spec: RequestSpec) -> set[str]:
    """The words of a request that may identify its client."""
    texts = [
        spec.path,
        (spec.body_bytes or b"").decode("utf-8", "replace"),
        *(value for _, value in spec.headers),
    ]
    return {
        token.lower()
        for text in texts
        for token in _TOKEN.findall(text)
        if len(token) >= 4
        and any(c.isdigit() for c in token)
        and any(c.isalpha() for c in token)
    }


def find_marks(
    canaries: Mapping[int, str], plans: Mapping[int, Sequence[RequestSpec]]
) -> dict[int, list[Mark]]:
    """
    What identifies each client in a response: its canary, and the words
    of its plan that no other client's plan has (``user3`` in a plan
    function's ``/login/user3``; letters and digits, at least 4 characters,
    matched as whole words, so that ``user1`` is not found in ``user10``).
    """
    tokens = {
        client: {t for spec in plan for t in _tokens(spec)}
        for client, plan in plans.items()
    }
    counts = collections.Counter(t for ts in tokens.values() for t in ts)
    marks: dict[int, list[Mark]] = {}
    for client, canary in canaries.items():
        plan = plans[client]
        marks[client] = [
            Mark(
                canary,
                re.compile(re.escape(canary), re.IGNORECASE),
                tuple(
                    dict.fromkeys(
                        spec.describe()
                        for spec in plan
                        if _carries_placeholder(spec)
                    )
                ),
            )
        ]
        for token in sorted(tokens[client]):
            if counts[token] == 1:
                marks[client].append(
                    Mark(
                        token,
                        re.compile(
                            rf"(?<![a-z0-9]){re.escape(token)}(?![a-z0-9])",
                            re.IGNORECASE,
                        ),
                        tuple(
                            dict.fromkeys(
                                spec.describe()
                                for spec in plan
                                if token in _tokens(spec)
                            )
                        ),
                    )
                )
    return marks


def _carries_placeholder(spec: RequestSpec) -> bool:
    body = spec.body_bytes or b""
    return (
        PLACEHOLDER in spec.path
        or PLACEHOLDER.encode() in body
        or any(PLACEHOLDER in value for _, value in spec.headers)
    )
