"""
Whole-request overhead in-process: ``app(environ, start_response)``.

Every mode of a workload (bare Flask, the guard's modes, sentry-sdk) runs
in its own worker process, so nothing one installs can slow another. The
workers build their app, warm it up and wait. The parent then asks them in
turn for one short timed batch each (a few ms of whole WSGI calls, the
response iterable consumed and closed, gc off), in an order that rotates
every round, for many rounds; then starts fresh workers and does it again
(a *generation*), so that one process's memory layout cannot bias a mode.
That matters more than the number of rounds: on the project's machines
two processes running the very same code differ by up to ±5% (their
medians fall into two groups, whatever the hash seed or the core), so the
report takes 12 generations, and its ``control`` row, bare Flask in a
process of its own, shows what is left of that noise.

Why short, alternating batches: on a shared machine the background load
changes within seconds, so a mode measured a second after bare Flask
measures the load, not the guard. A batch of a few ms usually runs within
one scheduler time slice; each batch records both ``perf_counter_ns`` and
the worker's CPU time (``thread_time_ns``), and a batch whose wall time
exceeds its CPU time by more than `PREEMPTED` was descheduled part of the
way and is left out. µs/request is the median of the kept batches; the
ratio is that of the mode over that of bare Flask; the range is the
interquartile range of the per-round ratios.

Run alone: ``python -m benchmarks.inprocess [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import _apps, _common

__all__ = ["BUDGETS", "Row", "Summary", "measure", "rows", "time_requests"]

#: The performance budget: (workload, mode) -> highest ratio.
BUDGETS = {
    ("hello", "log"): 1.05,
    ("realistic", "log"): 1.02,
    ("login", "log"): 1.04,
    ("hello", "raise+stacks"): 1.50,
    # Sampled at CTXGUARD_SAMPLE_RATE = 0.01: within the noise of bare
    # Flask.
    ("hello", "sampled"): 1.01,
    ("realistic", "sampled"): 1.01,
    ("login", "sampled"): 1.01,
}

#: How long one timed batch lasts (short enough to run, most of the time,
#: within one scheduler time slice), and the warm-up of a fresh worker.
BATCH_MS = 3.0
MIN_BATCH = 8
WARMUP_SECONDS = 0.3
#: A batch whose wall time exceeds its CPU time by this factor was
#: descheduled for part of it: other processes' time, not ours.
PREEMPTED = 1.03
#: Below this share of kept batches, all batches are used (and flagged).
MIN_KEPT = 0.3


@dataclass
class Row:
    """The measurements of one workload under one mode, in ns/request."""

    workload: str
    mode: str
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    digest: str = ""
    violations: int = 0

    def kept(self) -> list[bool]:
        """For each batch, whether it ran without being descheduled."""
        return [
            w <= c * PREEMPTED
            for w, c in zip(self.wall, self.cpu, strict=True)
        ]


def _runner(
    app: Callable[..., Any], environ: dict[str, Any]
) -> Callable[[int], tuple[int, int]]:
    """A function running *n* whole WSGI calls: (wall ns, CPU ns)."""
    start_response = _apps.start_response
    perf = time.perf_counter_ns
    cpu = time.thread_time_ns
    copy = environ.copy

    def run(n: int) -> tuple[int, int]:
        gc.disable()
        try:
            started, cpu_started = perf(), cpu()
            for _ in range(n):
                result = app(copy(), start_response)
                for _chunk in result:
                    pass
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            return perf() - started, cpu() - cpu_started
        finally:
            gc.enable()

    return run


def time_requests(
    app: Callable[..., Any],
    environ: dict[str, Any],
    warmup: int,
    batch: int,
    batches: int,
) -> list[float]:
    """
    Wall-clock ns per whole WSGI call of *app*, one value per batch, all in
    this process (for profiling; the benchmark alternates processes).
    """
    run = _runner(app, environ)
    run(warmup)
    found = []
    for _ in range(batches):
        gc.collect()
        found.append(run(batch)[0] / batch)
    return found


def worker(workload: str, mode: str, batch_ms: float) -> None:
    """
    Build and warm up one app, then time one batch per ``run`` line read
    from stdin, until stdin closes.
    """
    app, guard = _apps.make_app(workload, mode)
    environ = _apps.WORKLOADS[workload].environ(app)
    digest = hashlib.sha256(_apps.call(app, environ)).hexdigest()
    run = _runner(app, environ)
    per_call = run(20)[0] / 20
    warmup = max(50, int(WARMUP_SECONDS * 1e9 / per_call))
    per_call = run(warmup)[0] / warmup
    batch = max(MIN_BATCH, int(batch_ms * 1e6 / per_call))
    _common.emit({"batch": batch, "digest": digest})
    for line in sys.stdin:
        if line.strip() != "run":
            break
        gc.collect()
        run(max(2, batch // 5))  # the caches went cold while waiting
        wall, cpu = run(batch)
        violations = len(guard.violations) if guard else 0
        _common.emit(
            {
                "wall": wall / batch,
                "cpu": cpu / batch,
                "violations": violations,
            }
        )


def measure(
    workloads: Sequence[str],
    modes: Sequence[str],
    *,
    generations: int,
    rounds: int,
    batch_ms: float = BATCH_MS,
    progress: Callable[[str], None] = print,
) -> list[Row]:
    """
    *generations* times, start one worker per mode and take *rounds*
    rounds of one batch from each, alternating.
    """
    results = {(w, m): Row(w, m) for w in workloads for m in modes}
    for generation in range(generations):
        for workload in workloads:
            workers = {
                mode: _common.Worker(
                    "inprocess",
                    [
                        "--workload",
                        workload,
                        "--mode",
                        mode,
                        "--batch-ms",
                        str(batch_ms),
                    ],
                )
                for mode in modes
            }
            try:
                for mode, worker_ in workers.items():
                    results[workload, mode].digest = worker_.receive()[
                        "digest"
                    ]
                for round_ in range(rounds):
                    shift = (round_ + generation) % len(modes)
                    order = list(modes[shift:]) + list(modes[:shift])
                    if round_ % 2:
                        order.reverse()
                    for mode in order:
                        out = workers[mode].ask("run")
                        row = results[workload, mode]
                        row.wall.append(out["wall"])
                        row.cpu.append(out["cpu"])
                        row.violations = out["violations"]
            finally:
                for worker_ in workers.values():
                    worker_.close()
        progress(
            f"  in-process: generation {generation + 1}/{generations} done"
        )
    return list(results.values())


@dataclass
class Summary:
    """One line of the in-process table."""

    workload: str
    mode: str
    bare_us: float
    mode_us: float
    ratio: float
    low: float
    high: float
    cpu_ratio: float
    kept: float
    budget: float | None
    notes: list[str]

    @property
    def verdict(self) -> str:
        """``pass``, ``FAIL`` or ``-`` (no budget)."""
        if self.budget is None:
            return "-"
        return "pass" if self.ratio <= self.budget else "FAIL"


def _typical(row: Row, keep: list[bool]) -> float:
    return _common.median(
        [w for w, k in zip(row.wall, keep, strict=True) if k]
    )


def rows(measured: list[Row]) -> list[Summary]:
    """Compare every mode with bare Flask of the same workload."""
    bare = {r.workload: r for r in measured if r.mode == "bare"}
    found: list[Summary] = []
    median = _common.median
    for row in measured:
        base = bare.get(row.workload)
        if row.mode == "bare" or base is None:
            continue
        notes = []
        keep, keep_base = row.kept(), base.kept()
        share = min(sum(keep) / len(keep), sum(keep_base) / len(keep_base))
        if share < MIN_KEPT:
            notes.append(f"noisy: only {share:.0%} of batches ran alone")
            keep = keep_base = [True] * len(keep)
        both = [k and b for k, b in zip(keep, keep_base, strict=True)]
        paired = [
            m / b
            for m, b, k in zip(row.wall, base.wall, both, strict=True)
            if k
        ] or [m / b for m, b in zip(row.wall, base.wall, strict=True)]
        low, high = _common.quantiles(paired)
        if row.digest != base.digest:
            notes.append("response differs from bare Flask")
        if row.violations:
            notes.append(f"{row.violations} violations reported")
        bare_ns, mode_ns = _typical(base, keep_base), _typical(row, keep)
        found.append(
            Summary(
                workload=row.workload,
                mode=row.mode,
                bare_us=bare_ns / 1000,
                mode_us=mode_ns / 1000,
                ratio=mode_ns / bare_ns,
                low=low,
                high=high,
                cpu_ratio=median(row.cpu) / median(base.cpu),
                kept=share,
                budget=BUDGETS.get((row.workload, row.mode)),
                notes=notes,
            )
        )
    return found


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: a worker, or the in-process part on its own."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.inprocess")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument(
        "--workload", choices=sorted(_apps.WORKLOADS), default="hello"
    )
    parser.add_argument("--mode", choices=_apps.MODES, default="bare")
    parser.add_argument("--generations", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--batch-ms", type=float, default=BATCH_MS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.workload, args.mode, args.batch_ms)
        return
    generations, rounds = (
        (4, 15) if args.quick else (args.generations, args.rounds)
    )
    summaries = rows(
        measure(
            list(_apps.WORKLOADS),
            _apps.MODES,
            generations=generations,
            rounds=rounds,
            batch_ms=args.batch_ms,
        )
    )
    for s in summaries:
        print(
            f"{s.workload:10} {s.mode:15} {s.bare_us:8.1f} {s.mode_us:8.1f}"
            f"  x{s.ratio:.3f} ({s.low:.3f}-{s.high:.3f})"
            f" cpu x{s.cpu_ratio:.3f} kept {s.kept:.0%} {s.verdict}"
        )


if __name__ == "__main__":
    main()
