"""
How long ``report --format html`` takes over 10,000 events.

``python -m benchmarks.report_html`` writes two JSON logs of 10,000
``contamination`` events each and times the whole command (read, group,
render, write) in this process, median of 3 runs:

- *few bugs*: 40 distinct bugs, so 40 findings, every one drawn;
- *many bugs*: every event a distinct bug, so 10,000 findings, past the
  drawing limit: 200 drawn and the rest listed.

It prints the times and the size of each page.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from contextlib import redirect_stdout

from flask_ctxguard import _cli

from .report_logs import _event

__all__ = ["main", "time_report"]


def _write(path: str, events: int, *, distinct: bool) -> None:
    with open(path, "w", encoding="utf-8") as out:
        for number in range(1, events + 1):
            event = _event(number)
            if distinct:
                event["access_site"] = f"app/views.py:{number} in view"
            out.write(json.dumps(event) + "\n")


def time_report(log: str, page: str, runs: int) -> list[float]:
    """Seconds each of *runs* runs of the HTML report over *log* took."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            status = _cli.main(["report", "--format=html", "-o", page, log])
        times.append(time.perf_counter() - started)
        if status != 1:
            msg = f"report exited {status}"
            raise RuntimeError(msg)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """Time both logs; print a line each."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report_html")
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ctxguard-html-") as directory:
        for name, distinct in (("few bugs", False), ("many bugs", True)):
            log = os.path.join(directory, "events.log")
            page = os.path.join(directory, "report.html")
            _write(log, args.events, distinct=distinct)
            times = time_report(log, page, args.runs)
            size = os.path.getsize(page) / 1_000_000
            print(
                f"{name}: {args.events} events,"
                f" median {statistics.median(times):.2f} s of {args.runs}"
                f" ({', '.join(f'{t:.2f}' for t in times)}), page"
                f" {size:.1f} MB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
