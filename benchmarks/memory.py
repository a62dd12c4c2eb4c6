"""
Memory over many requests: the guard must keep nothing alive.

A worker process builds the hello-world and the realistic app under one
mode, warms them up, starts ``tracemalloc``, and sends N whole WSGI calls
(nine hello-world requests for every realistic one). After a
``gc.collect()`` it reports how much traced memory grew, the biggest
growth sites, and how many request objects (and request contexts,
sessions and guard records) are still alive. Bare Flask runs the same
requests in its own process, for comparison: Flask and Jinja fill caches
of their own.

Run alone: ``python -m benchmarks.memory [--requests N] [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import _apps, _common

__all__ = ["GROWTH_LIMIT", "MemoryResult", "measure"]

#: The most the guarded run may grow more than bare Flask, in bytes, over
#: the whole run. Flat memory is a few KiB of noise (free lists, interned
#: strings); a leak of one small object per request is megabytes.
GROWTH_LIMIT = 64 * 1024
REALISTIC_EVERY = 10


def _run(calls: Sequence[tuple[Any, dict[str, Any]]], n: int) -> None:
    start_response = _apps.start_response
    for i in range(n):
        app, environ = calls[0 if i % REALISTIC_EVERY else 1]
        result = app(environ.copy(), start_response)
        for _chunk in result:
            pass
        close = getattr(result, "close", None)
        if close is not None:
            close()


def _live() -> dict[str, int]:
    import flask
    import flask.ctx
    import flask.sessions

    counts = {
        "flask.Request": 0,
        "RequestContext": 0,
        "session": 0,
        "RequestRecord": 0,
    }
    # Flask 3.2 merged RequestContext into AppContext (the old name warns).
    context_class = vars(flask.ctx).get("RequestContext", flask.ctx.AppContext)
    for obj in gc.get_objects():
        if isinstance(obj, flask.Request):
            counts["flask.Request"] += 1
        elif isinstance(obj, context_class):
            counts["RequestContext"] += 1
        elif isinstance(obj, flask.sessions.SessionMixin):
            counts["session"] += 1
        elif type(obj).__name__ == "RequestRecord":
            counts["RequestRecord"] += 1
    return counts


def worker(mode: str, requests: int) -> None:
    """Run *requests* requests under *mode*; print what grew."""
    calls = []
    guards = []
    for workload in _apps.WORKLOADS:
        app, guard = _apps.make_app(workload, mode)
        calls.append((app, _apps.WORKLOADS[workload].environ(app)))
        guards.append(guard)
    _run(calls, 2000)
    tracemalloc.start()
    _run(calls, 1000)  # fill the caches again, now traced
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    first = tracemalloc.take_snapshot()
    _run(calls, requests)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    last = tracemalloc.take_snapshot()
    tracemalloc.stop()
    filters = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, __file__),
    ]
    top = last.filter_traces(filters).compare_to(
        first.filter_traces(filters), "lineno"
    )[:5]
    _common.emit(
        {
            "growth": after - before,
            "top": [
                f"{stat.size_diff:+,} B {stat.count_diff:+} blocks"
                f" {stat.traceback[0]}"
                for stat in top
                if stat.size_diff
            ],
            "live": _live(),
            "violations": sum(len(g.violations) for g in guards if g),
        }
    )


@dataclass
class MemoryResult:
    """Growth of one mode over *requests* requests."""

    mode: str
    requests: int
    growth: int
    top: list[str]
    live: dict[str, int]
    violations: int


def measure(
    requests: int, modes: Sequence[str] = ("bare", "log")
) -> list[MemoryResult]:
    """Run the worker once per mode."""
    found = []
    for mode in modes:
        out = _common.run_worker(
            "memory",
            ["--mode", mode, "--requests", str(requests)],
            timeout=900,
        )
        found.append(
            MemoryResult(
                mode=mode,
                requests=requests,
                growth=out["growth"],
                top=out["top"],
                live=out["live"],
                violations=out["violations"],
            )
        )
    return found


def verdict(results: Sequence[MemoryResult]) -> tuple[bool, str]:
    """Whether memory stayed flat, and why not."""
    bare = next((r for r in results if r.mode == "bare"), None)
    problems = []
    for result in results:
        if result.mode == "bare":
            continue
        extra = result.growth - (bare.growth if bare else 0)
        if extra > GROWTH_LIMIT:
            problems.append(
                f"{result.mode} grew {extra:,} B more than bare Flask"
            )
        bare_live = bare.live if bare else {}
        for kind, count in result.live.items():
            if count > bare_live.get(kind, 0):
                problems.append(f"{count} {kind} alive after {result.mode}")
    return not problems, "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: a worker, or this part on its own."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.memory")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--mode", choices=_apps.MODES, default="log")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    requests = 10_000 if args.quick else args.requests
    if args.worker:
        worker(args.mode, args.requests)
        return
    results = measure(requests)
    for r in results:
        print(f"{r.mode}: {r.growth:+,} B over {r.requests:,}, live {r.live}")
        for line in r.top:
            print(f"    {line}")
    ok, why = verdict(results)
    print("flat" if ok else f"NOT FLAT: {why}")


if __name__ == "__main__":
    main()
