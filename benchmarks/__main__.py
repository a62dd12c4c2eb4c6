"""
``python -m benchmarks`` (``make bench``): the whole overhead report.

Runs, each part in its own worker processes:

1. in-process whole-request ratios against bare Flask, hello-world and
   realistic view, in log, raise and raise+stacks mode, and sentry-sdk's
   Flask integration as a reference point (`benchmarks.inprocess`);
2. requests per second under gunicorn gthread, bare against log mode
   (`benchmarks.server`);
3. traced memory growth and live request objects over 100 000 requests
   (`benchmarks.memory`);
4. the cost of each check alone, in ns per operation
   (`benchmarks.checks`);

and prints one report, also written to ``benchmarks/results/latest.md``
(and ``latest.json``). Optionally (``--parts ...,profile``) a differential
cProfile of the guarded hello-world and realistic views
(`benchmarks.profiling`).

The machine may be noisy: the report quotes medians and ratios measured
in the same run, never a single absolute time. Exit status 1 if a budget
is exceeded.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _apps, _common, checks, inprocess, memory, profiling, server

PARTS = ("inprocess", "server", "memory", "checks", "profile")
DEFAULT_PARTS = ("inprocess", "server", "memory", "checks")
RESULTS = Path(__file__).resolve().parent / "results"

MODE_TITLES = {
    "control": "bare again (noise floor)",
    "log": "log (default)",
    "raise": "raise",
    "raise+stacks": "raise + stacks",
    "sampled": f"log, sampled at {_apps.SAMPLE_RATE:g}",
    "sentry": "sentry-sdk, errors only (ref.)",
    "sentry+tracing": "sentry-sdk, tracing 100% (ref.)",
}


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclasses.dataclass
class Settings:
    """How much to run."""

    parts: tuple[str, ...]
    generations: int
    rounds: int
    server_rounds: int
    server_seconds: float
    clients: int
    requests: int
    check_repeats: int
    modes: tuple[str, ...]
    workloads: tuple[str, ...]
    wrk: bool


def _subset(option: str, known: Sequence[str], what: str) -> list[str]:
    """The comma-separated names of a subset *option*, each one *known*."""
    wanted = option.split(",")
    unknown = set(wanted) - set(known)
    if unknown:
        msg = (
            f"unknown {what}(s) {', '.join(sorted(unknown))};"
            f" use {', '.join(known)}"
        )
        raise SystemExit(msg)
    return wanted


def _settings(args: argparse.Namespace) -> Settings:
    parts = tuple(args.parts.split(",")) if args.parts else DEFAULT_PARTS
    unknown = set(parts) - set(PARTS)
    if unknown:
        msg = f"unknown part(s) {', '.join(sorted(unknown))}; use {PARTS}"
        raise SystemExit(msg)
    parts = tuple(p for p in parts if p not in set(args.skip or ()))
    modes = list(_apps.MODES)
    if args.modes:
        wanted = _subset(args.modes, _apps.MODES, "mode")
        # Bare Flask is what every ratio is taken against.
        modes = [m for m in modes if m in wanted or m == "bare"]
    if args.no_sentry or importlib.util.find_spec("sentry_sdk") is None:
        modes = [m for m in modes if m not in _apps.SENTRY_MODES]
    workloads = list(_apps.WORKLOADS)
    if args.workloads:
        wanted = _subset(args.workloads, list(_apps.WORKLOADS), "workload")
        workloads = [w for w in workloads if w in wanted]
    quick = args.quick
    return Settings(
        parts=parts,
        generations=args.generations or (4 if quick else 12),
        rounds=args.rounds or (15 if quick else 25),
        server_rounds=args.server_rounds or (4 if quick else 8),
        server_seconds=1.0 if quick else 1.5,
        clients=args.clients,
        requests=args.requests or (10_000 if quick else 100_000),
        check_repeats=11 if quick else 41,
        modes=tuple(modes),
        workloads=tuple(workloads),
        wrk=args.wrk,
    )


def _header(info: dict[str, str], settings: Settings) -> list[str]:
    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f"# flask_ctxguard overhead ({now:%Y-%m-%d %H:%M} UTC)",
        "",
        f"- machine: {info['cpu']}, {info['cores']} cores,"
        f" {info['platform']}, load average at start {info['load']}",
        f"- {info['python']}, Flask {info['flask']}, Werkzeug"
        f" {info['werkzeug']}, flask-ctxguard {info['flask-ctxguard']},"
        f" gunicorn {info['gunicorn']}, sentry-sdk {info['sentry-sdk']}",
        f"- code: {info['code']}",
    ]
    if "inprocess" in settings.parts:
        lines.append(
            f"- in-process: every mode in its own process, {settings.rounds}"
            f" rounds x {settings.generations} fresh processes of one"
            f" ~{inprocess.BATCH_MS:g} ms batch per mode, order rotating, gc"
            " off while timing; batches descheduled part of the way are left"
            " out; µs = median batch; ratio = guarded / bare; range ="
            " interquartile range of the per-round ratios; CPU ratio = the"
            " same with each batch's CPU time (thread_time), less sensitive"
            " to other load, not the budget"
        )
    lines.append("")
    return lines


def _main_table(
    summaries: list[inprocess.Summary],
    served: list[server.ServerResult],
    mem: list[memory.MemoryResult],
) -> tuple[list[str], bool]:
    lines = [
        "| workload | mode | bare | guarded | ratio | range | CPU ratio"
        " | budget | result |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    ok = True
    for s in summaries:
        budget = f"≤ {s.budget:.2f}" if s.budget is not None else "-"
        verdict = s.verdict
        if s.notes:
            verdict += " (" + "; ".join(s.notes) + ")"
            ok = False
        ok = ok and verdict != "FAIL"
        lines.append(
            f"| {_apps.WORKLOADS[s.workload].title} |"
            f" {MODE_TITLES.get(s.mode, s.mode)} |"
            f" {s.bare_us:,.1f} µs | {s.mode_us:,.1f} µs |"
            f" **{s.ratio:.3f}** | {s.low:.3f}-{s.high:.3f} |"
            f" {s.cpu_ratio:.3f} | {budget} | {verdict} |"
        )
    for r in served:
        bare, guarded = _common.median(r.bare), _common.median(r.guarded)
        low, high = _common.quantiles([1 / p for p in r.paired])
        errors = f" ({r.errors} errors)" if r.errors else ""
        cpu = r.cpu_ratio
        if cpu is not None:
            errors = f"; server CPU/req x{cpu:.3f}{errors}"
        lines.append(
            f"| {_apps.WORKLOADS[r.workload].title}, gunicorn |"
            f" {MODE_TITLES.get(r.mode, r.mode)} |"
            f" {bare:,.0f} rps | {guarded:,.0f} rps |"
            f" **{1 / r.ratio:.3f}** | {low:.3f}-{high:.3f} | - | - |"
            f" rps x{r.ratio:.3f}{errors} |"
        )
    if mem:
        flat, why = memory.verdict(mem)
        ok = ok and flat
        by_mode = {m.mode: m for m in mem}
        bare_m, guard_m = by_mode.get("bare"), by_mode.get("log")
        live = guard_m.live if guard_m else {}
        lives = ", ".join(f"{v} {k}" for k, v in live.items())
        requests = mem[0].requests
        lines.append(
            f"| memory, {requests:,} requests | log (default) |"
            f" {bare_m.growth if bare_m else 0:+,} B |"
            f" {guard_m.growth if guard_m else 0:+,} B | - |"
            f" alive after: {lives} | - | flat |"
            f" {'pass' if flat else 'FAIL: ' + why} |"
        )
    lines.append("")
    if served:
        lines += [
            "gunicorn rows: ratio = bare rps / guarded rps (time per"
            " request, like the rows above), the median of the rounds'"
            " ratios; range = their interquartile range; the result column"
            " shows guarded rps as a fraction of bare, and the gunicorn"
            " worker's CPU time per request (/proc schedstat, less sensitive"
            " to other load), guarded over bare.",
            "",
        ]
    if mem:
        lines += [
            "Memory row: traced memory growth after warm-up and"
            " gc.collect(); budget: at most"
            f" {memory.GROWTH_LIMIT // 1024} KiB more than bare Flask and"
            " no request object alive.",
            "",
        ]
    return lines, ok


def _checks_table(found: list[checks.Check], violations: int) -> list[str]:
    lines = [
        "## Cost of each check (ns per operation, median)",
        "",
        "| operation | bare Flask | guarded (log) | added |",
        "|---|---:|---:|---:|",
    ]
    fmt = checks.format_ns
    for c in found:
        lines.append(
            f"| {c.name} | {fmt(c.plain)} | {fmt(c.guarded)} |"
            f" {fmt(c.delta)} |"
        )
    lines.append("")
    if violations:
        lines += [f"({violations} violations were reported: numbers off)", ""]
    return lines


class _Run:
    """The results of one run, part by part."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.info = _common.machine()
        self.lines = _header(self.info, settings)
        self.raw: dict[str, Any] = {"machine": self.info}
        self.summaries: list[inprocess.Summary] = []
        self.served: list[server.ServerResult] = []
        self.mem: list[memory.MemoryResult] = []
        self.found: list[checks.Check] = []
        self.violations = 0
        self.check_errors: dict[str, str] = {}
        self.failures: list[str] = []
        self.profiles: list[str] = []

    def part(self, name: str) -> None:
        """Run the part *name*; a failure is reported, not raised."""
        if name not in self.settings.parts:
            return
        try:
            getattr(self, f"_{name}")()
        except (_common.WorkerError, RuntimeError, OSError) as exc:
            _progress(f"  {name} failed: {exc}")
            first = str(exc).strip().splitlines()[:1] or ["?"]
            self.failures.append(f"- part '{name}' failed: {first[0]}")

    def _inprocess(self) -> None:
        _progress("in-process whole requests ...")
        measured = inprocess.measure(
            list(self.settings.workloads),
            self.settings.modes,
            generations=self.settings.generations,
            rounds=self.settings.rounds,
            progress=_progress,
        )
        self.summaries = inprocess.rows(measured)
        self.raw["inprocess"] = [dataclasses.asdict(r) for r in measured]

    def _server(self) -> None:
        _progress("gunicorn ...")
        settings = self.settings
        self.served, note = server.measure(
            list(self.settings.workloads),
            rounds=settings.server_rounds,
            duration=settings.server_seconds,
            clients=settings.clients,
            use_wrk=settings.wrk,
            progress=_progress,
        )
        self.raw["server"] = [dataclasses.asdict(r) for r in self.served]
        self.lines.insert(
            -1,
            f"- gunicorn: {note}; {settings.server_rounds} rounds of"
            f" {settings.server_seconds:g} s per side, alternating",
        )

    def _memory(self) -> None:
        _progress(f"memory over {self.settings.requests:,} requests ...")
        self.mem = memory.measure(self.settings.requests)
        self.raw["memory"] = [dataclasses.asdict(m) for m in self.mem]

    def _checks(self) -> None:
        _progress("checks ...")
        self.found, self.violations, self.check_errors = checks.measure(
            self.settings.check_repeats
        )
        self.raw["checks"] = [dataclasses.asdict(c) for c in self.found]

    def _profile(self) -> None:
        _progress("profiles ...")
        lines = ["## Differential profile (cProfile)", ""]
        for workload, n in (("hello", 20_000), ("realistic", 3_000)):
            lines += ["```", *profiling.profile(workload, "log", n), "```"]
            lines.append("")
        self.profiles = lines

    def report(self) -> tuple[list[str], bool]:
        """The report's lines, and whether every budget held."""
        lines = list(self.lines)
        table, ok = _main_table(self.summaries, self.served, self.mem)
        if self.summaries or self.served or self.mem:
            lines += table
        if self.found:
            lines += _checks_table(self.found, self.violations)
            lines += [
                f"- '{k}' failed: {v}" for k, v in self.check_errors.items()
            ]
        flat = memory.verdict(self.mem)[0] if self.mem else True
        for m in self.mem if not flat else ():
            if m.top:
                lines += [f"Top growth sites ({m.mode}):", "", "```"]
                lines += [*m.top, "```", ""]
        lines += self.profiles
        if self.failures:
            lines += [*self.failures, ""]
        return lines, ok and not self.failures


def run(settings: Settings) -> tuple[list[str], bool, dict[str, Any]]:
    """Run the selected parts; the report's lines, pass, raw data."""
    done = _Run(settings)
    for name in PARTS:
        done.part(name)
    lines, ok = done.report()
    return lines, ok, done.raw


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m benchmarks``."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="flask_ctxguard's overhead against bare Flask.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer rounds, shorter server runs, 10 000 requests for memory"
        " (about a minute)",
    )
    parser.add_argument(
        "--parts",
        help=f"comma-separated parts to run, of {', '.join(PARTS)}"
        f" (default: {','.join(DEFAULT_PARTS)})",
    )
    parser.add_argument(
        "--skip", action="append", choices=PARTS, help="a part to skip"
    )
    parser.add_argument(
        "--no-sentry",
        action="store_true",
        help="leave out the sentry-sdk reference rows",
    )
    parser.add_argument(
        "--workloads",
        help="comma-separated workloads, of"
        f" {', '.join(_apps.WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--modes",
        help=f"comma-separated modes, of {', '.join(_apps.MODES)} (default:"
        " all; bare Flask is always measured)",
    )
    parser.add_argument(
        "--generations",
        type=int,
        help="in-process: how many times to start fresh worker processes",
    )
    parser.add_argument(
        "--rounds", type=int, help="in-process rounds per generation"
    )
    parser.add_argument("--server-rounds", type=int)
    parser.add_argument(
        "--clients", type=int, default=2, help="load generator processes"
    )
    parser.add_argument(
        "--requests", type=int, help="requests for the memory part"
    )
    parser.add_argument(
        "--wrk", action="store_true", help="use wrk if it is installed"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=RESULTS / "latest.md",
        help="where to write the report (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    settings = _settings(args)
    started = time.monotonic()
    lines, ok, raw = run(settings)
    elapsed = time.monotonic() - started
    lines.append(f"Total time: {elapsed / 60:.1f} min.")
    report = "\n".join(lines) + "\n"
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")
    raw["elapsed_seconds"] = elapsed
    args.output.with_suffix(".json").write_text(
        json.dumps(raw, indent=2), encoding="utf-8"
    )
    _progress(f"written to {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
