"""
Where the guard's per-request time goes: a differential profile.

Profiles the same workload on bare Flask and under a guard mode, each in
its own process, with cProfile, and lists per function how many calls and
how much own time per request the guarded app spends beyond bare Flask.
That catches both the guard's own functions and what it makes Flask do
(an extra ``before_request`` function, descriptor calls when Werkzeug
fills in a request).

cProfile adds a fixed cost to every Python call, which inflates small
functions; the ``est.`` column scales the profiled times back by the
ratio of profiled to unprofiled time per request of that process. Use it
to rank, not as a measurement. ``--tool pyinstrument`` prints a sampling
profile of the guarded app instead (``pip install pyinstrument``).

Run: ``python -m benchmarks.profiling [--workload realistic] [--mode log]``.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _apps, _common, inprocess

__all__ = ["profile"]


def _loop(app: Any, environ: dict[str, Any], n: int) -> None:
    start_response = _apps.start_response
    for _ in range(n):
        result = app(environ.copy(), start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _label(key: tuple[str, int, str]) -> str:
    filename, line, name = key
    if filename == "~":
        return re.sub(r" at 0x[0-9a-f]+", "", name)
    for marker in ("site-packages/", "/lib/python3"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    else:
        path = Path(filename)
        if path.is_relative_to(_common.REPO):
            filename = path.relative_to(_common.REPO).as_posix()
    return f"{filename}:{line}({name})"


def worker(workload: str, mode: str, requests: int) -> None:
    """Profile *requests* requests; print per-function stats per request."""
    app, _ = _apps.make_app(workload, mode)
    environ = _apps.WORKLOADS[workload].environ(app)
    _loop(app, environ, max(100, requests // 10))
    profiler = cProfile.Profile()
    profiler.enable()
    _loop(app, environ, requests)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    functions = {}
    total = 0.0
    for key, (_cc, calls, tottime, cumtime, _callers) in stats.items():
        functions[_label(key)] = (
            calls / requests,
            tottime * 1e6 / requests,
            cumtime * 1e6 / requests,
        )
        total += tottime
    _common.emit(
        {
            "functions": functions,
            "profiled_us": total * 1e6 / requests,
        }
    )


def profile(
    workload: str, mode: str, requests: int, top: int = 25
) -> list[str]:
    """The differential profile of *workload* under *mode*, as lines."""
    args = ["--workload", workload, "--requests", str(requests)]
    bare = _common.run_worker("profiling", [*args, "--mode", "bare"])
    guarded = _common.run_worker("profiling", [*args, "--mode", mode])
    # The unprofiled times, measured as the benchmark does (alternating
    # processes, short batches): one process's timing is too noisy.
    timed = inprocess.measure(
        [workload],
        ("bare", mode),
        generations=1,
        rounds=60,
        progress=lambda _: None,
    )
    summary = inprocess.rows(timed)[0]
    bare["plain_us"], guarded["plain_us"] = summary.bare_us, summary.mode_us
    real = guarded["plain_us"] - bare["plain_us"]
    profiled = guarded["profiled_us"] - bare["profiled_us"]
    # cProfile's cost per call inflates every function; scale profiled
    # times back by the guarded process's unprofiled / profiled ratio.
    scale = guarded["plain_us"] / guarded["profiled_us"]
    lines = [
        f"{workload}, {mode}: unprofiled {bare['plain_us']:.1f} µs bare,"
        f" {guarded['plain_us']:.1f} µs guarded (+{real:.1f} µs, measured"
        " alternating); profiled"
        f" {bare['profiled_us']:.1f} / {guarded['profiled_us']:.1f} µs"
        f" (+{profiled:.1f} µs); est. = profiled x {scale:.2f}",
        "",
        f"{'function':58} {'calls/req':>11} {'own µs/req':>13}"
        f" {'est. µs':>7} {'cum µs':>7}",
        f"{'':58} {'bare':>5} {'guard':>5} {'bare':>6} {'guard':>6}"
        f" {'added':>7} {'guard':>7}",
    ]
    empty = (0.0, 0.0, 0.0)
    rows = []
    for name in set(bare["functions"]) | set(guarded["functions"]):
        b = bare["functions"].get(name, empty)
        g = guarded["functions"].get(name, empty)
        if name.startswith("flask_ctxguard/"):
            delta = g[1]
        elif abs(g[0] - b[0]) > 0.01:
            # Called more (or less) often: price the extra calls at the
            # guarded per-call cost; the rest is noise between processes.
            per_call = g[1] / g[0] if g[0] else b[1] / b[0]
            delta = (g[0] - b[0]) * per_call
        else:
            continue
        rows.append((delta, name, b, g))
    rows.sort(key=lambda row: -abs(row[0]))
    for delta, name, b, g in rows[:top]:
        lines.append(
            f"{name[-58:]:58} {b[0]:5.1f} {g[0]:5.1f} {b[1]:6.2f}"
            f" {g[1]:6.2f} {delta * scale:+7.2f} {g[2] * scale:7.2f}"
        )
    hidden = sum(row[0] for row in rows[top:])
    own = sum(row[0] for row in rows if row[1].startswith("flask_ctxguard/"))
    explained = sum(row[0] for row in rows)
    lines += [
        f"{'(further functions)':58} {'':27} {hidden * scale:+7.2f}",
        "",
        f"flask_ctxguard's own functions: ~{own * scale:.2f} µs/request;"
        f" with the extra calls it makes Flask and the stdlib do:"
        f" ~{explained * scale:.2f} µs of the +{real:.2f} µs measured.",
    ]
    return lines


def _pyinstrument(workload: str, mode: str, requests: int) -> None:
    from pyinstrument import Profiler

    app, _ = _apps.make_app(workload, mode)
    environ = _apps.WORKLOADS[workload].environ(app)
    _loop(app, environ, 1000)
    profiler = Profiler(interval=0.0001)
    profiler.start()
    _loop(app, environ, requests)
    profiler.stop()
    print(profiler.output_text(unicode=True, show_all=False))


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: a worker, or the differential profile."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument(
        "--workload", choices=sorted(_apps.WORKLOADS), default="hello"
    )
    parser.add_argument("--mode", choices=_apps.MODES, default="log")
    parser.add_argument("--requests", type=int, default=0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--tool", choices=("cprofile", "pyinstrument"), default="cprofile"
    )
    args = parser.parse_args(argv)
    requests = args.requests or (20_000 if args.workload == "hello" else 3_000)
    if args.worker:
        worker(args.workload, args.mode, requests)
    elif args.tool == "pyinstrument":
        _pyinstrument(args.workload, args.mode, requests)
    else:
        for line in profile(args.workload, args.mode, requests, args.top):
            print(line)


if __name__ == "__main__":
    main()
