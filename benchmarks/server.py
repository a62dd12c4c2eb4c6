"""
Requests per second under a real server: gunicorn, gthread workers.

Two gunicorn servers run side by side on 127.0.0.1, one serving bare Flask
and one the guarded app, each on a socket this process binds to a free
port and hands over (``--bind fd://N``), so there is no port race. The load
generator hits one server at a time, alternating which goes first, for a
few rounds; the result is the ratio of the median requests per second.

The default load generator is stdlib only: N client processes, each with
one keep-alive ``http.client`` connection, sending requests back to back
for a fixed time (bounded by a request count and socket timeouts). With
``--wrk`` and ``wrk`` on the PATH, wrk is used instead.

The clients share the machine's cores with the server, so absolute numbers
say little; the ratio is what counts.

Run alone: ``python -m benchmarks.server [--quick] [--wrk]``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from . import _apps, _common

__all__ = ["Server", "ServerResult", "measure"]

HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
MAX_REQUESTS_PER_CLIENT = 2_000_000


class Load(NamedTuple):
    """What one load run measured."""

    rps: float
    errors: int
    #: Requests served during the whole run, warm-up included.
    requests: int


class Server:
    """One gunicorn master (and its worker) serving one benchmark app."""

    def __init__(
        self, workload: str, mode: str, workers: int, threads: int
    ) -> None:
        self.workload = workload
        self.mode = mode
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, 0))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        fd = listener.fileno()
        env = dict(os.environ)
        env["CTXGUARD_BENCH_WORKLOAD"] = workload
        env["CTXGUARD_BENCH_MODE"] = mode
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"fd://{fd}",
            "--worker-class",
            "gthread",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--keep-alive",
            "30",
            "--graceful-timeout",
            "3",
            "--log-level",
            "warning",
            "benchmarks._apps:app_from_env()",
        ]
        try:
            self.process = subprocess.Popen(
                command,
                cwd=_common.REPO,
                env=env,
                pass_fds=(fd,),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        finally:
            listener.close()  # gunicorn has its own copy now

    @property
    def url(self) -> str:
        """The root URL of this server."""
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, path: str, headers: dict[str, str]) -> None:
        """Block until the server answers *path* with 200."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(HOST, self.port, timeout=2)
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    if response.status == 200:
                        return
                finally:
                    conn.close()
            time.sleep(0.1)
        stderr = self.stop()
        msg = f"gunicorn ({self.workload}, {self.mode}) did not start:\n"
        raise RuntimeError(msg + stderr[-2000:])

    def cpu_ns(self) -> int | None:
        """
        CPU time used so far by the gunicorn workers (all their threads),
        from ``/proc/<pid>/task/*/schedstat``; `None` where unavailable.
        """
        master = self.process.pid
        total = 0
        found = False
        try:
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                with contextlib.suppress(OSError, ValueError, IndexError):
                    stat = (entry / "stat").read_text()
                    ppid = int(stat.rpartition(")")[2].split()[1])
                    if ppid != master:
                        continue
                    for task in (entry / "task").iterdir():
                        text = (task / "schedstat").read_text()
                        total += int(text.split()[0])
                    found = True
        except OSError:
            return None
        return total if found else None

    def stop(self) -> str:
        """Stop the server and its workers; what it wrote to stderr."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # Its own session: this group holds only the master and
                # the workers it forked.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT)
        assert process.stderr is not None
        with process.stderr:
            return process.stderr.read().decode(errors="replace")


def _client(
    port: int,
    *,
    path: str,
    headers: dict[str, str],
    start: float,
    end: float,
    results: Any,
) -> None:
    """One client process: back-to-back requests on one connection."""
    done = errors = total = 0
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    sent = 0
    while sent < MAX_REQUESTS_PER_CLIENT:
        now = time.monotonic()
        if now >= end:
            break
        sent += 1
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            response.read()
            ok = response.status == 200
            total += 1
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
        if now >= start:
            if ok:
                done += 1
            else:
                errors += 1
    conn.close()
    results.put((done, errors, total))


def load_python(
    server: Server,
    *,
    path: str,
    headers: dict[str, str],
    clients: int,
    duration: float,
    warmup: float,
) -> Load:
    """Requests per second and errors, with *clients* processes."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start = time.monotonic() + 0.2 + warmup
    end = start + duration
    processes = [
        context.Process(
            target=_client,
            args=(server.port,),
            kwargs={
                "path": path,
                "headers": headers,
                "start": start,
                "end": end,
                "results": results,
            },
            daemon=True,
        )
        for _ in range(clients)
    ]
    for process in processes:
        process.start()
    counts = []
    try:
        for _ in processes:
            counts.append(results.get(timeout=duration + warmup + 30))
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join(5)
    done = sum(c[0] for c in counts)
    errors = sum(c[1] for c in counts)
    return Load(done / duration, errors, sum(c[2] for c in counts))


def load_wrk(
    server: Server,
    *,
    path: str,
    headers: dict[str, str],
    clients: int,
    duration: float,
    warmup: float,
) -> Load:
    """Requests per second and errors, measured by wrk."""
    command = ["wrk", f"-t{max(1, clients // 2)}", f"-c{clients}"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    url = server.url + path
    timeout = duration + warmup + 30
    warm = subprocess.run(
        [*command, f"-d{max(1, round(warmup))}s", url],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    done = subprocess.run(
        [*command, f"-d{max(1, round(duration))}s", url],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    rps = re.search(r"Requests/sec:\s*([\d.]+)", done.stdout)
    bad = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", done.stdout)
    if rps is None:
        msg = f"cannot read wrk's output:\n{done.stdout}"
        raise RuntimeError(msg)
    total = sum(
        int(found.group(1))
        for out in (warm.stdout, done.stdout)
        if (found := re.search(r"(\d+) requests in", out))
    )
    return Load(float(rps.group(1)), int(bad.group(1)) if bad else 0, total)


@dataclass
class ServerResult:
    """
    Requests per second of one workload, bare and guarded, and the server
    worker's CPU time per request (ns; empty where /proc cannot tell).
    """

    workload: str
    mode: str
    bare: list[float] = field(default_factory=list)
    guarded: list[float] = field(default_factory=list)
    bare_cpu: list[float] = field(default_factory=list)
    guarded_cpu: list[float] = field(default_factory=list)
    errors: int = 0

    @property
    def cpu_ratio(self) -> float | None:
        """Guarded over bare median server CPU time per request."""
        if not self.bare_cpu or not self.guarded_cpu:
            return None
        median = _common.median
        return median(self.guarded_cpu) / median(self.bare_cpu)

    @property
    def ratio(self) -> float:
        """
        Guarded over bare rps (1.0: no cost): the median of the rounds'
        ratios, so that a load change between rounds cancels out.
        """
        return _common.median(self.paired)

    @property
    def paired(self) -> list[float]:
        """The guarded/bare ratio of each round."""
        return [g / b for g, b in zip(self.guarded, self.bare, strict=True)]


@contextlib.contextmanager
def _servers(
    workload: str, modes: Sequence[str], workers: int, threads: int
) -> Iterator[dict[str, Server]]:
    started: dict[str, Server] = {}
    try:
        for mode in modes:
            started[mode] = Server(workload, mode, workers, threads)
        yield started
    finally:
        for server in started.values():
            server.stop()


def measure(
    workloads: Sequence[str],
    *,
    mode: str = "log",
    rounds: int = 8,
    duration: float = 1.5,
    warmup: float = 0.3,
    clients: int = 2,
    threads: int = 4,
    use_wrk: bool = False,
    progress: Callable[[str], None] = print,
) -> tuple[list[ServerResult], str]:
    """
    Bare against guarded (*mode*) rps for each workload; and the client.
    """
    load = load_python
    client = f"python http.client, {clients} processes, keep-alive"
    if use_wrk:
        if shutil.which("wrk"):
            load = load_wrk
            client = f"wrk, {clients} connections"
        else:
            progress("  server: wrk not found, using the python client")
    results = []
    for workload in workloads:
        spec = _apps.WORKLOADS[workload]
        app, _ = _apps.make_app(workload, "bare")
        headers = spec.http_headers(app)
        result = ServerResult(workload, mode)
        with _servers(workload, ("bare", mode), 1, threads) as servers:
            for server in servers.values():
                server.wait_ready(spec.path, headers)
            for round_ in range(rounds):
                order = ["bare", mode] if round_ % 2 == 0 else [mode, "bare"]
                for side in order:
                    before = servers[side].cpu_ns()
                    done = load(
                        servers[side],
                        path=spec.path,
                        headers=headers,
                        clients=clients,
                        duration=duration,
                        warmup=warmup,
                    )
                    after = servers[side].cpu_ns()
                    bare = side == "bare"
                    (result.bare if bare else result.guarded).append(done.rps)
                    result.errors += done.errors
                    if before is not None and after is not None:
                        cpu = result.bare_cpu if bare else result.guarded_cpu
                        cpu.append((after - before) / max(1, done.requests))
        progress(
            f"  server: {workload} done (rps x{result.ratio:.3f},"
            f" {result.errors} errors)"
        )
        results.append(result)
    threads_note = f"gunicorn gthread, 1 worker x {threads} threads"
    return results, f"{threads_note}; client: {client}"


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: this part on its own."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--wrk", action="store_true")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=float, default=1.5)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    rounds, duration = (4, 1.0) if args.quick else (args.rounds, args.duration)
    results, how = measure(
        list(_apps.WORKLOADS),
        rounds=rounds,
        duration=duration,
        clients=args.clients,
        threads=args.threads,
        use_wrk=args.wrk,
    )
    print(how)
    for r in results:
        print(
            f"{r.workload:10} bare {_common.median(r.bare):8.0f} rps,"
            f" guarded {_common.median(r.guarded):8.0f} rps,"
            f" x{r.ratio:.3f} {[round(p, 3) for p in r.paired]};"
            f" server CPU/request x{r.cpu_ratio or float('nan'):.3f}"
        )


if __name__ == "__main__":
    main()
