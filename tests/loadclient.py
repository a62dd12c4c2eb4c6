"""
Load for the server tests: concurrent clients on keep-alive connections,
and the check that every response is its own request's.

Each client is a thread with one ``http.client`` connection and its own
cookie, so it logs in once and stays logged in. Under gevent's monkey
patching the same code runs its clients as greenlets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import http.cookies
import json
import socket
import threading
import time
from collections.abc import Callable, Sequence

__all__ = [
    "Plan",
    "Reply",
    "check_replies",
    "clean_plan",
    "mixed_plan",
    "run_load",
]

#: A client's plan: the paths it requests, in order, on one connection.
Plan = Callable[[int], Sequence[str]]


@dataclasses.dataclass(frozen=True)
class Reply:
    """What one client got for one path."""

    client: int
    path: str
    status: int
    body: str


def clean_plan(requests: int) -> Plan:
    """Log in as ``user<i>``, then ask ``/me`` with unique request ids."""

    def plan(client: int) -> list[str]:
        me = [f"/me?rid={client}-{n}" for n in range(1, requests)]
        return [f"/login/user{client}", *me]

    return plan


def mixed_plan(requests: int, every: int = 5) -> Plan:
    """
    `clean_plan` with a buggy request instead of every *every*-th ``/me``:
    alternately ``/buggy/remember`` and ``/buggy/tenant``.
    """

    def plan(client: int) -> list[str]:
        paths = list(clean_plan(requests)(client))
        for n in range(every, len(paths), every):
            if (n // every) % 2:
                paths[n] = f"/buggy/remember?rid={client}-{n}"
            else:
                paths[n] = f"/buggy/tenant?t=tenant{client}"
        return paths

    return plan


def run_load(
    port: int, plan: Plan, *, clients: int, timeout: float
) -> list[Reply]:
    """
    Run *clients* concurrent clients against 127.0.0.1:*port*, each sending
    ``plan(i)`` on one keep-alive connection; all start together.

    Raises:
        TimeoutError: if they are not done within *timeout* seconds.
        Exception: the first error a client met.
    """
    deadline = time.monotonic() + timeout
    barrier = threading.Barrier(clients)
    lock = threading.Lock()
    replies: list[Reply] = []
    errors: list[BaseException] = []
    connections: list[http.client.HTTPConnection] = []

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        with lock:
            connections.append(conn)
        cookie = ""
        try:
            barrier.wait(timeout)
            for path in plan(index):
                headers = {"X-Client": str(index)}
                if cookie:
                    headers["Cookie"] = cookie
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read().decode()
                for value in response.headers.get_all("Set-Cookie") or ():
                    jar = http.cookies.SimpleCookie(value)
                    cookie = "; ".join(
                        f"{k}={m.value}" for k, m in jar.items()
                    )
                with lock:
                    replies.append(Reply(index, path, response.status, body))
        except BaseException as exc:  # noqa: BLE001 - raised by run_load
            with lock:
                errors.append(exc)
            barrier.abort()
        finally:
            conn.close()

    threads = [
        threading.Thread(target=client, args=(i,), name=f"load-client-{i}")
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0.01))
    if any(thread.is_alive() for thread in threads):
        # Unblock clients still waiting for an answer, then fail.
        with lock:
            for conn in connections:
                if conn.sock is not None:
                    with contextlib.suppress(OSError):
                        conn.sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5.0)
        msg = f"the clients did not finish within {timeout}s"
        raise TimeoutError(msg)
    if errors:
        real = [
            e
            for e in errors
            if not isinstance(e, threading.BrokenBarrierError)
        ]
        raise (real or errors)[0]
    return replies


def check_replies(replies: Sequence[Reply]) -> list[str]:
    """
    Every way in which a reply to ``/login`` or ``/me`` is not its own
    request's, one line each; buggy paths need only have answered 200.
    """
    wrong: list[str] = []
    for reply in replies:
        if reply.status != 200:
            wrong.append(f"{reply}: status {reply.status}")
            continue
        user = f"user{reply.client}"
        if reply.path.startswith("/login/"):
            if reply.body != user:
                wrong.append(f"{reply}: expected {user!r}")
        elif reply.path.startswith("/me?"):
            rid = reply.path.partition("rid=")[2]
            seen = json.loads(reply.body)
            seen.pop("pid")
            expected = {
                "user": user,
                "g_user": user,
                "rid": rid,
                "var": rid,
                "log_rid": rid,
                "client": str(reply.client),
            }
            if seen != expected:
                wrong.append(f"{reply}: expected {expected}")
    return wrong
