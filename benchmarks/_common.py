"""
What every benchmark shares: worker processes, statistics, the machine.

Measurements run in child processes (``python -m benchmarks.<part>
--worker ...``) that print one JSON object on their last line of stdout;
the parent only schedules them, alternating the sides, and aggregates.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "REPO",
    "Worker",
    "machine",
    "median",
    "quantiles",
    "run_worker",
    "spread",
]

#: The repository root: the working directory of every worker process.
REPO = Path(__file__).resolve().parent.parent

WORKER_TIMEOUT = 180.0


class WorkerError(RuntimeError):
    """A benchmark worker process failed."""


def run_worker(
    module: str, args: Sequence[str], timeout: float = WORKER_TIMEOUT
) -> dict[str, Any]:
    """
    Run ``python -m benchmarks.<module> --worker *args*`` and return the
    JSON object it prints last.
    """
    env = _worker_env()
    command = [sys.executable, "-m", f"benchmarks.{module}", "--worker"]
    command += list(args)
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        msg = f"{' '.join(command)} timed out after {timeout:.0f}s"
        raise WorkerError(msg) from None
    lines = [
        line[len(MARKER) :]
        for line in done.stdout.splitlines()
        if line.startswith(MARKER)
    ]
    if done.returncode != 0 or not lines:
        msg = (
            f"{' '.join(command)} failed with exit code {done.returncode}:"
            f"\n{done.stderr[-3000:]}"
        )
        raise WorkerError(msg)
    return json.loads(lines[-1])  # type: ignore[no-any-return]


#: Marks the lines a worker writes for its parent (a guard that logs a
#: violation through an unconfigured structlog prints to stdout too).
MARKER = "@@ctxguard-bench "


def emit(result: dict[str, Any]) -> None:
    """Print a worker's result as one marked JSON line."""
    sys.stdout.flush()
    print(MARKER + json.dumps(result), flush=True)


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    # A worker must not inherit the parent's tracemalloc or dev mode.
    env.pop("PYTHONTRACEMALLOC", None)
    env.pop("PYTHONDEVMODE", None)
    return env


class Worker:
    """
    A long-lived worker process driven line by line: the parent writes a
    command, the worker answers with one `emit` line.
    """

    def __init__(self, module: str, args: Sequence[str]) -> None:
        self.command = [
            sys.executable,
            "-m",
            f"benchmarks.{module}",
            "--worker",
            *args,
        ]
        # Closed in close(): the worker outlives this call.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command,
            cwd=REPO,
            env=_worker_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )

    def receive(self, timeout: float = WORKER_TIMEOUT) -> dict[str, Any]:
        """The next answer of the worker."""
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            ready, _, _ = select.select([stdout], [], [], timeout)
            line = stdout.readline() if ready else b""
            if not line:
                self._fail("no answer" if not ready else "exited")
            text = line.decode(errors="replace")
            if text.startswith(MARKER):
                return json.loads(text[len(MARKER) :])  # type: ignore[no-any-return]

    def ask(
        self, command: str, timeout: float = WORKER_TIMEOUT
    ) -> dict[str, Any]:
        """Send *command*; the answer."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            stdin.write(command.encode() + b"\n")
            stdin.flush()
        except BrokenPipeError:
            self._fail("exited")
        return self.receive(timeout)

    def close(self) -> None:
        """Stop the worker (if it still runs)."""
        process = self.process
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()

    def _fail(self, what: str) -> None:
        self.process.kill()
        self.process.wait(10)
        self._stderr.seek(0)
        stderr = self._stderr.read().decode(errors="replace")
        msg = f"{' '.join(self.command)}: {what}:\n{stderr[-3000:]}"
        raise WorkerError(msg)


def median(values: Sequence[float]) -> float:
    """The median of *values*."""
    return statistics.median(values)


def spread(values: Sequence[float]) -> tuple[float, float]:
    """The lowest and highest of *values*."""
    return min(values), max(values)


def quantiles(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles of *values*."""
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q3


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return platform.processor() or platform.machine()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return platform.machine()


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _code() -> str:
    """Which guard was measured: HEAD, and a hash of the package sources."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "flask_ctxguard").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    head = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
        )
        head = done.stdout.strip() or "?"
    return (
        f"flask_ctxguard/*.py sha256 {digest.hexdigest()[:12]}"
        f" (git HEAD {head}; the working tree may differ from it)"
    )


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    try:
        load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return {
        "cpu": _cpu_model(),
        "cores": str(os.cpu_count()),
        "python": (
            f"{platform.python_implementation()} {platform.python_version()}"
        ),
        "flask": _version("flask"),
        "werkzeug": _version("werkzeug"),
        "flask-ctxguard": _version("flask-ctxguard"),
        "sentry-sdk": _version("sentry-sdk"),
        "gunicorn": _version("gunicorn"),
        "platform": platform.platform(terse=True),
        "load": load,
        "code": _code(),
    }
