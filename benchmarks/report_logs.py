"""
Throughput and peak memory of ``python -m flask_ctxguard report``.

``python -m benchmarks.report_logs --megabytes 1000`` writes a JSON log of
that size (one ``contamination`` event in every *--every* lines, the rest
ordinary request lines of the same shape, from 8 worker processes and 40
distinct bugs), runs the report command over it in a process of its own and
prints megabytes per second and the command's peak RSS, next to the time
plain ``json.loads`` of the same lines takes (the floor: "at the speed of
JSON parsing"). Run it with two sizes to see that memory does not grow with
the log.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

__all__ = ["main", "write_log"]

# The floor: read the lines and parse those that may be events, nothing else.
_JSON_ONLY = """
import json, sys
with open(sys.argv[1], "rb") as log:
    for line in log:
        if b"contamination" in line:
            json.loads(line)
"""

_COMMAND = [sys.executable, "-m", "flask_ctxguard", "report", "--format=json"]
_PROCESSES = [f"{n:08x}" for n in range(0x5EED0000, 0x5EED0008)]


def _event(number: int) -> dict[str, object]:
    bug = number % 40
    process = _PROCESSES[number % len(_PROCESSES)]
    side = {
        "method": "GET",
        "path": f"/notes/{number}",
        "endpoint": f"notes.view{bug % 7}",
        "thread": "ThreadPoolExecutor-0_1",
        "thread_id": 139943974926016,
        "started": 1795639973.6681502 + number,
    }
    return {
        "code": f"CG10{1 + bug % 6}",
        "kind": "cross-request-access",
        "subject": f"g.value{bug}",
        "message": (
            f"'g.value{bug}' of GET /notes/{number} (request {process}-1,"
            " thread 'ThreadPoolExecutor-0_1') was used during GET /notes"
            f" (request {process}-{number:x}, thread"
            " 'ThreadPoolExecutor-0_1'), after that request ended."
        ),
        "origin": {**side, "token": f"{process}-1"},
        "accessor": {**side, "token": f"{process}-{number:x}"},
        "origin_site": f"example_app/buggy.py:{bug} in whoami",
        "access_site": f"example_app/buggy.py:{bug + 100} in cached",
        "hint": (
            "never share request objects through module globals, caches or"
            " closures; store plain values keyed by something stable (the"
            " user id), not the request."
        ),
        "docs": "docs/rules.md#cg103",
        "app": "example_app",
        "repeats": 1 << (number % 12),
        "event": "contamination",
        "request_id": "36feb82f1ae14b03888665e8ab68aabc",
        "user": "alice",
        "level": "warning",
        "logger": "flask_ctxguard",
        "timestamp": "2026-11-25T20:52:53.853480Z",
    }


def _other(number: int) -> dict[str, object]:
    return {
        "event": "request",
        "method": "GET",
        "path": f"/notes/{number}",
        "status": 200,
        "duration_ms": 12.5,
        "request_id": "36feb82f1ae14b03888665e8ab68aabc",
        "user": "alice",
        "tenant": "acme",
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0" * 8,
        "level": "info",
        "logger": "example_app",
        "timestamp": "2026-11-25T20:52:53.853480Z",
    }


def write_log(path: str, megabytes: float, every: int) -> tuple[int, int]:
    """
    Write a log of about *megabytes* to *path*; its lines and events.
    """
    limit = int(megabytes * 1_000_000)
    written = lines = events = 0
    with open(path, "w", encoding="utf-8") as out:
        while written < limit:
            chunk = []
            for _ in range(1000):
                lines += 1
                if lines % every == 0:
                    events += 1
                    chunk.append(json.dumps(_event(lines)))
                else:
                    chunk.append(json.dumps(_other(lines)))
            text = "\n".join(chunk) + "\n"
            out.write(text)
            written += len(text)
    return lines, events


def main(argv: Sequence[str] | None = None) -> int:
    """Write the log, run the report over it, print the figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_logs")
    parser.add_argument("--megabytes", type=float, default=1000)
    parser.add_argument(
        "--every",
        type=int,
        default=1,
        help="one contamination event in this many lines (default: all)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ctxguard-bench-") as directory:
        path = os.path.join(directory, "big.log")
        lines, events = write_log(path, args.megabytes, args.every)
        size = os.path.getsize(path) / 1_000_000
        started = time.perf_counter()
        result = subprocess.run(
            [*_COMMAND, path],
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _JSON_ONLY, path], check=True)
        floor = time.perf_counter() - started
    report = json.loads(result.stdout)
    assert report["events"] == events, (report["events"], events)
    print(
        f"{size:.0f} MB, {lines} lines, {events} events,"
        f" {len(report['findings'])} findings: {elapsed:.1f} s,"
        f" {size / elapsed:.0f} MB/s, {lines / elapsed:,.0f} lines/s,"
        f" peak RSS {peak:.0f} MB (exit {result.returncode});"
        f" json.loads alone: {floor:.1f} s, ratio {elapsed / floor:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
