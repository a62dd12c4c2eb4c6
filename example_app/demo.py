"""
The demo: the notes API under gunicorn, four users at once, and what the
guard's structured log says about it.

Run it with ``python -m example_app.demo`` (or ``make demo``). It

1. starts the app with its ``buggy`` blueprint under gunicorn (gthread
   worker, 4 threads) on 127.0.0.1 and a free port, with a fresh database
   in a temporary directory and ``CTXGUARD_MODE = "log"``;
2. has alice, bob (tenant acme), carol and dave (tenant globex) log in and
   use the API concurrently, buggy routes included, then runs the digest
   job as alice;
3. shows what the users saw that was not theirs and one raw
   ``contamination`` log line, then runs ``python -m flask_ctxguard report``
   over the server's ``contamination`` log lines: a table of findings,
   worst first, and the full report of each; and writes the same findings
   as an HTML page with a timeline per finding (``--html PATH``);
4. hammers the app in-process with `flask_ctxguard.testing.hammer` and
   shows the one leak only hammer finds: a draft kept in a
   ``threading.local`` (`example_app.hammering`).

It talks to loopback only, bounds every loop and wait, and stops the
server in any case. It exits 0 when all of CG101, CG102, CG103, CG104 and
CG106 were reported and hammer found the drafts crossover.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import http.cookiejar
import importlib.util
import json
import os
import queue
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from . import hammering
from .db import DEMO_USERS, DemoUser

__all__ = ["main"]

EXPECTED = ("CG101", "CG102", "CG103", "CG104", "CG106")
HOST = "127.0.0.1"
_LISTENING = re.compile(r"Listening at: http://127\.0\.0\.1:(\d+)")
_TABLE_CODE = re.compile(r"^ *\d+ +\d+ +\d+  (CG\d{3})  ", re.MULTILINE)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the server ---------------------------------------------------------------


class Server:
    """
    The app under gunicorn in a subprocess, and every line it prints.
    """

    def __init__(self, directory: str, *, threads: int) -> None:
        self.threads = threads
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("FLASK_")
        }
        env.update(
            FLASK_DATABASE=os.path.join(directory, "notes.sqlite3"),
            FLASK_SECRET_KEY=secrets.token_hex(16),
            FLASK_EXAMPLE_BUGGY="true",
            FLASK_CTXGUARD_MODE="log",
            FLASK_AUDIT_FLUSH_INTERVAL="0.2",
            FLASK_LOG_FORMAT="json",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join(
                filter(None, [_ROOT, os.environ.get("PYTHONPATH")])
            ),
        )
        self.command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--worker-class=gthread",
            "--workers=1",
            f"--threads={threads}",
            f"--bind={HOST}:0",
            "--graceful-timeout=5",
            *_optional_gunicorn_flags(),
            "example_app:create_app()",
        ]
        self.env = env
        self.lines: list[str] = []
        self._new_lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def start(self, timeout: float) -> int:
        """Start gunicorn; the port it listens on."""
        self._process = subprocess.Popen(
            self.command,
            cwd=_ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Its own process group, so that stop() reaches the worker too.
            start_new_session=True,
        )
        self._reader = threading.Thread(
            target=self._read, name="server-output", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._new_lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            if match := _LISTENING.search(line):
                return int(match.group(1))
        msg = "gunicorn did not start:\n" + "".join(self.lines[-20:])
        raise RuntimeError(msg)

    def _read(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self.lines.append(line)
            self._new_lines.put(line)
        self._new_lines.put(None)

    def stop(self) -> None:
        """Stop gunicorn and its worker, politely first."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        # A worker that outlived its master (it should not) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def events(self) -> list[tuple[dict[str, Any], str]]:
        """The JSON log events printed so far, with their raw lines."""
        found = []
        for line in list(self.lines):
            text = line.strip()
            if not text.startswith("{"):
                continue  # gunicorn's own lines
            try:
                event = json.loads(text)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append((event, text))
        return found

    def contamination(self) -> list[tuple[dict[str, Any], str]]:
        """The ``contamination`` events of flask_ctxguard."""
        return [
            (event, line)
            for event, line in self.events()
            if event.get("event") == "contamination"
        ]


def _optional_gunicorn_flags() -> list[str]:
    # gunicorn 24+ opens a control socket in the home directory by default;
    # the demo leaves nothing behind.
    try:
        from gunicorn.config import KNOWN_SETTINGS
    except ImportError:  # pragma: no cover - reported when it starts
        return []
    names = {setting.name for setting in KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


# -- the clients --------------------------------------------------------------


class Client:
    """One user's browser: a cookie jar, loopback only, no proxies."""

    def __init__(self, port: int, user: DemoUser) -> None:
        self.base = f"http://{HOST}:{port}"
        self.user = user
        self._opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
        )

    def call(
        self, method: str, path: str, body: object = None
    ) -> tuple[int, Any]:
        """Send one request; its status and JSON (or text) body."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path, data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")


@dataclasses.dataclass
class Traffic:
    """What the clients did and saw."""

    requests: int = 0
    failed: list[str] = dataclasses.field(default_factory=list)
    surprises: list[str] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def call(
        self, client: Client, method: str, path: str, body: object = None
    ) -> Any:
        """Send a request through *client* and count it."""
        try:
            status, answer = client.call(method, path, body)
        except (OSError, http.client.HTTPException) as error:
            status, answer = 0, repr(error)
        with self.lock:
            self.requests += 1
            if status >= 400 or status == 0:
                self.failed.append(f"{method} {path}: {status} {answer}")
        return answer

    def surprise(self, text: str) -> None:
        """Note something a user saw that was not theirs."""
        with self.lock:
            self.surprises.append(text)


def wait_until_healthy(port: int, timeout: float) -> None:
    """Poll ``/healthz`` until it answers 200."""
    client = Client(port, DEMO_USERS[0])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if client.call("GET", "/healthz")[0] == 200:
                return
        time.sleep(0.1)
    msg = f"the server did not become healthy within {timeout} s"
    raise RuntimeError(msg)


def use_the_app(
    client: Client, traffic: Traffic, rounds: int, start: threading.Barrier
) -> None:
    """One user's session: log in, then rounds of ordinary and buggy
    calls."""
    user = client.user
    try:
        start.wait(timeout=30)
    except threading.BrokenBarrierError:
        with traffic.lock:
            traffic.failed.append(f"{user.username}: no other client came")
        return
    traffic.call(
        client,
        "POST",
        "/auth/login",
        {"username": user.username, "password": user.password},
    )
    for number in range(1, rounds + 1):
        traffic.call(client, "GET", "/notes")
        note = traffic.call(
            client,
            "POST",
            "/notes",
            {"title": f"{user.username}'s note {number}", "body": "draft"},
        )
        note_id = note.get("id", 1) if isinstance(note, dict) else 1
        seen = traffic.call(client, "GET", "/buggy/whoami")
        if isinstance(seen, dict) and seen.get("tenant") != user.tenant:
            traffic.surprise(
                f"{user.username} ({user.tenant}) asked GET /buggy/whoami"
                f" and was told their tenant is {seen.get('tenant')!r}"
            )
        traffic.call(client, "GET", "/buggy/search?q=e&limit=5")
        traffic.call(client, "POST", f"/buggy/notes/{note_id}/share")
        traffic.call(client, "GET", "/buggy/reports/usage")
        traffic.call(
            client,
            "POST",
            "/buggy/imports",
            {"notes": [{"title": f"imported by {user.username}"}]},
        )
        traffic.call(client, "GET", f"/notes/{note_id}")
        traffic.call(client, "GET", "/auth/me")


def run_digest_job(client: Client, traffic: Traffic) -> None:
    """Send the weekly digests as an admin, and check who got what."""
    answer = traffic.call(client, "POST", "/buggy/digests")
    digests = answer.get("digests", []) if isinstance(answer, dict) else []
    for digest in digests:
        if digest["rendered_for"] != digest["recipient"]:
            traffic.surprise(
                f"{digest['recipient']}'s weekly digest was rendered for"
                f" {digest['rendered_for']!r} ({digest['tenant']}'s notes)"
            )


# -- the report ---------------------------------------------------------------


def render(
    events: list[tuple[dict[str, Any], str]],
    traffic: Traffic,
    out: Any,
    html: str | None = None,
) -> set[str]:
    """
    Print what the users saw, one raw event, and the report command's
    findings over the server's log lines; the codes the report found.
    With *html*, also write the HTML report there.
    """
    write = out.write
    if traffic.surprises:
        write("\nWhat the users saw that was not theirs:\n")
        for text in dict.fromkeys(traffic.surprises):
            write(f"  - {text}\n")

    if events:
        write("\nOne event, as the log pipeline receives it:\n")
        write(f"  {events[0][1]}\n")

    # The guard's lines of the server's log, as a pipeline would ship them;
    # the report command turns them into findings.
    with tempfile.TemporaryDirectory(prefix="ctxguard-demo-") as directory:
        log = os.path.join(directory, "contamination.log")
        with open(log, "w", encoding="utf-8") as file:
            file.writelines(f"{line}\n" for _event, line in events)
        write(
            f"\n$ python -m flask_ctxguard report {os.path.basename(log)}"
            f" ({len(events)} lines)\n\n"
        )
        out.flush()
        result = subprocess.run(
            [sys.executable, "-m", "flask_ctxguard", "report", log],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if html is not None:
            subprocess.run(
                [
                    *(sys.executable, "-m", "flask_ctxguard", "report"),
                    *("--format=html", f"--output={html}", log),
                ],
                cwd=_ROOT,
                timeout=60,
                check=False,
            )
    write(result.stdout + result.stderr)
    # The codes of the report's table rows: '  1     16       5  CG102 ...'.
    return set(_TABLE_CODE.findall(result.stdout))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every expected code was reported."""
    parser = argparse.ArgumentParser(
        prog="python -m example_app.demo", description=__doc__.split("\n")[1]
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per user (default 3)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="gunicorn worker threads (default 4)",
    )
    parser.add_argument(
        "--html",
        metavar="PATH",
        default=os.path.join(tempfile.gettempdir(), "ctxguard-demo.html"),
        help="where to write the HTML report (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    out = sys.stdout
    if importlib.util.find_spec("gunicorn") is None:
        out.write(
            "The demo serves the app with gunicorn: pip install gunicorn"
            " (it is in the 'test' extra).\n"
        )
        return 2
    started = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="ctxguard-demo-") as directory:
        server = Server(directory, threads=args.threads)
        traffic = Traffic()
        try:
            port = server.start(timeout=20)
            out.write(
                "flask_ctxguard demo: the notes API under gunicorn (gthread,"
                f" 1 worker x {args.threads} threads) at"
                f" http://{HOST}:{port}, CTXGUARD_MODE='log'\n"
            )
            wait_until_healthy(port, timeout=20)
            clients = [Client(port, user) for user in DEMO_USERS]
            names = ", ".join(
                f"{user.username} ({user.tenant})" for user in DEMO_USERS
            )
            out.write(
                f"{len(clients)} users at once: {names};"
                f" {args.rounds} rounds each ...\n"
            )
            out.flush()
            barrier = threading.Barrier(len(clients))
            threads = [
                threading.Thread(
                    target=use_the_app,
                    args=(client, traffic, args.rounds, barrier),
                    name=f"client-{client.user.username}",
                    # A client stuck on a dead server must not keep the
                    # demo from exiting.
                    daemon=True,
                )
                for client in clients
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
            out.write("The digest job, run by alice (an admin) ...\n")
            run_digest_job(clients[0], traffic)

            # The audit trail writes in batches; wait for the reports.
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                seen = {event["code"] for event, _ in server.contamination()}
                if seen.issuperset(EXPECTED):
                    break
                time.sleep(0.1)
            time.sleep(0.3)  # the last batch of repeats
        finally:
            server.stop()

    out.write(
        f"{traffic.requests} requests, {len(traffic.failed)} failed,"
        f" in {time.monotonic() - started:.1f} s\n"
    )
    for failure in traffic.failed[:5]:
        out.write(f"  failed: {failure}\n")
    seen = render(server.contamination(), traffic, out, args.html)

    # The hammer step: a leak that only flask_ctxguard.testing.hammer finds.
    if hammering.main(out) != 0:
        out.write("\nhammer found no crossover in the drafts routes.\n")
        return 1

    missing = [code for code in EXPECTED if code not in seen]
    if missing:
        out.write(f"\nNot reported: {', '.join(missing)}\n")
        return 1
    out.write(f"\nReported: {', '.join(sorted(seen))}.\n")
    out.write(f"The HTML report, a timeline per finding: {args.html}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
