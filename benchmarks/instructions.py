"""
Machine instructions per request, counted by valgrind's callgrind.

Timings on a shared machine swing by several percent; the instructions a
request executes do not. Each workload and mode runs twice under
``valgrind --tool=callgrind``, once with *small* and once with *large*
requests after the same warm-up: the difference of the two totals divided
by the difference of the counts is what one request costs, start-up and
warm-up cancelled out. ``PYTHONHASHSEED=0`` keeps dict layouts alike, and
after the warm-up the start-up's objects are collected and frozen
(`gc.freeze`): otherwise whether a full collection of the whole heap falls
inside the longer run decides thousands of instructions per request, and
that depends on how many objects an import happened to leave, not on what a
request does.

    python -m benchmarks.instructions --workloads hello,realistic,login
    python -m benchmarks.instructions --modes bare,log,sampled --large 520

Prints one line per workload and mode: instructions per request, and the
guarded modes' difference from bare Flask. Needs ``valgrind`` on PATH.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import _apps

#: Requests served before either count starts mattering: imports, the
#: first request's template compilation and class creation.
WARM_UP = 20
_TOTALS = re.compile(rb"^(?:summary|totals):\s+(\d+)", re.MULTILINE)


def drive(workload: str, mode: str, count: int) -> None:
    """Serve *count* requests of *workload* under *mode*, after a warm-up."""
    app, _guard = _apps.make_app(workload, mode)
    environ = _apps.WORKLOADS[workload].environ(app)
    expected = _apps.call(app, environ)
    for _ in range(WARM_UP):
        _apps.call(app, environ)
    gc.collect()
    gc.freeze()
    start_response = _apps.start_response
    for _ in range(count):
        result = app(dict(environ), start_response)
        for _chunk in result:
            pass
        result.close()
    if _apps.call(app, environ) != expected:  # pragma: no cover
        sys.exit("the response changed while measuring")


def instructions(workload: str, mode: str, count: int) -> int:
    """Total instructions of one callgrind run of `drive`."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                "-m",
                "benchmarks.instructions",
                "--drive",
                workload,
                mode,
                str(count),
            ],
            check=True,
            env=env,
            capture_output=True,
            timeout=1800,
        )
        found = _TOTALS.search(out.read_bytes())
        if found is None:  # pragma: no cover - a callgrind we don't know
            msg = f"no instruction total in {out}"
            raise RuntimeError(msg)
        return int(found.group(1))


def per_request(workload: str, mode: str, small: int, large: int) -> float:
    """Instructions one request of *workload* under *mode* executes."""
    low = instructions(workload, mode, small)
    high = instructions(workload, mode, large)
    return (high - low) / (large - small)


def main(argv: list[str] | None = None) -> int:
    """Count and print instructions per request."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.instructions")
    parser.add_argument("--workloads", default="hello,realistic,login")
    parser.add_argument("--modes", default="bare,log,sampled")
    parser.add_argument("--small", type=int, default=20)
    parser.add_argument("--large", type=int, default=320)
    parser.add_argument("--drive", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.drive:
        workload, mode, count = args.drive
        drive(workload, mode, int(count))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)")
        return 2
    for workload in args.workloads.split(","):
        bare = None
        for mode in args.modes.split(","):
            cost = per_request(workload, mode, args.small, args.large)
            if mode == "bare":
                bare = cost
            extra = (
                f"  {cost - bare:+10,.0f} ({(cost / bare - 1) * 100:+.2f}%)"
                if bare is not None and mode != "bare"
                else ""
            )
            print(f"{workload:10} {mode:8} {cost:12,.0f}{extra}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
