"""
The cost of each check alone, in nanoseconds per operation.

Whole-request ratios say whether the budget holds; these say which check
got slower when it stops holding. Each operation is timed on a bare Flask
app ("plain") and on a guarded one (log mode), in the same worker process,
the two sides alternating, in short samples (about a millisecond) repeated
many times; a sample that was descheduled part of the way (wall time above
CPU time, as in `benchmarks.inprocess`) is left out, and the median of the
rest is reported. The loop overhead (an empty ``timeit`` statement) is
subtracted.

Operations measured inside a request:

- ``request.method`` (a plain instance attribute that the guard turns into
  a checked descriptor), ``request.args`` (a cached property) and
  ``request.environ`` (unchecked: the control), on the request object
  itself and through Flask's ``request`` proxy.
- ``session.get`` and ``session[...]``, ``g.user`` on the request's own
  ``g`` and on a ``g`` shared by requests (an app context pushed around
  them, watched for CG101).
- arming a request (the guard's ``before_request`` function).

And per request, outside one: constructing the request object (Werkzeug
assigns its attributes), a whole request-context cycle (push,
``preprocess_request``, pop: arming, retiring and the ContextVar
comparison), ``contextvars.copy_context()``, comparing two snapshots, and
the guard's leak detection on an unchanged context.

Run alone: ``python -m benchmarks.checks [--quick]``.
"""

from __future__ import annotations

import argparse
import contextvars
import functools
import inspect
import time
import timeit
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, cast

import flask

from . import _apps, _common
from .inprocess import MIN_KEPT, PREEMPTED

__all__ = ["Check", "measure"]

_RECORD = "_ctxguard_record"  # the guard's private per-request attribute

# name, statement, loop count, where it runs:
# "request": inside the realistic app's request; "shared": inside a request
# whose app context was pushed before it; "none": outside any context.
OPERATIONS: tuple[tuple[str, str, int, str], ...] = (
    ("request.method (attribute)", "req.method", 20_000, "request"),
    ("request.args (cached property)", "req.args", 10_000, "request"),
    ("request.environ (unchecked)", "req.environ", 20_000, "request"),
    ("proxy request.args", "request.args", 2_000, "request"),
    ("session.get('user_id')", "sess.get('user_id')", 5_000, "request"),
    ("session['user_id']", "sess['user_id']", 5_000, "request"),
    ("g.user (own g)", "gobj.user", 10_000, "request"),
    ("proxy g.user (own g)", "g.user", 2_000, "request"),
    ("g.user (shared g, CG101 watch)", "gobj.user", 2_000, "shared"),
    ("arm a request", "state.pop(KEY, None); arm()", 600, "request"),
    ("request object: construct", "make_request(copy())", 500, "none"),
    (
        "request cycle: push, arm, pop",
        "c = ctx(copy()); c.push(); pre(); c.pop()",
        50,
        "none",
    ),
    ("contextvars.copy_context()", "copy_context()", 50_000, "none"),
    ("snapshot == snapshot", "snap_a == snap_b", 50_000, "none"),
    (
        "detect_leaks (no change)",
        "detect(snap_a, record, *extra)",
        10_000,
        "request",
    ),
)
#: Operations that only exist on one side.
GUARDED_ONLY = {"detect_leaks (no change)"}
SHARED = {
    "contextvars.copy_context()",
    "snapshot == snapshot",
}

_structlog_vars: list[contextvars.ContextVar[str | None]] = [
    contextvars.ContextVar(f"bench_var_{i}", default=None) for i in range(5)
]


def _noop() -> None:
    pass


def _no_ids() -> tuple[int, ...]:
    return ()


class Side:
    """One app (bare or guarded) and the contexts its operations run in."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.app, self.guard = _apps.make_app("realistic", mode)
        self.hello, _ = _apps.make_app("hello", mode)
        self.hello_environ = _apps.WORKLOADS["hello"].environ(self.hello)
        self.environ = _apps.WORKLOADS["realistic"].environ(self.app)

    def namespace(self) -> dict[str, Any]:
        """The globals of every statement that runs outside a context."""
        for i, var in enumerate(_structlog_vars):
            var.set(f"value {i}")
        return {
            "ctx": self.hello.request_context,
            "copy": self.hello_environ.copy,
            "pre": _preprocess(self.hello),
            "make_request": self.hello.request_class,
            "copy_context": contextvars.copy_context,
            "snap_a": contextvars.copy_context(),
            "snap_b": contextvars.copy_context(),
        }

    def enter(self, stack: ExitStack, where: str) -> dict[str, Any]:
        """
        Push the contexts of *where* onto *stack*; the statements' globals.
        """
        if where == "shared":
            stack.enter_context(self.app.app_context())
        stack.enter_context(self.app.request_context(self.environ.copy()))
        _preprocess(self.app)()
        req = flask.request._get_current_object()  # type: ignore[attr-defined]
        arm: Callable[[], None] = _noop
        if self.guard is not None:
            from flask_ctxguard._guard.lifecycle import arm_request

            state = self.app.extensions["ctxguard"]
            arm = functools.partial(arm_request, state)
        namespace = {
            "req": req,
            "request": flask.request,
            "sess": flask.session._get_current_object(),  # type: ignore[attr-defined]
            "gobj": flask.g._get_current_object(),
            "g": flask.g,
            "state": req.__dict__,
            "KEY": _RECORD,
            "arm": arm,
        }
        record = req.__dict__.get(_RECORD)
        if record is not None:
            try:
                from flask_ctxguard._rules.contextvar_leaks import detect_leaks
            except ImportError:  # renamed: the row shows n/a
                pass
            else:
                namespace["detect"] = detect_leaks
                # Later versions take the request's own values too.
                wants = len(inspect.signature(detect_leaks).parameters)
                namespace["extra"] = (_no_ids,) if wants > 2 else ()
                namespace["record"] = record
                namespace["snap_a"] = contextvars.copy_context()
        return namespace


def _preprocess(app: flask.Flask) -> Callable[[], Any]:
    """
    *app*'s ``preprocess_request``, called without arguments (Flask 3.2
    takes the current context).
    """
    pre = app.preprocess_request
    if "ctx" not in inspect.signature(pre).parameters:
        return pre
    from flask_ctxguard._core.flaskcompat import request_ctx_var

    return lambda: pre(request_ctx_var.get())  # type: ignore[call-arg]


class _Stamp:
    """A timeit timer reading both clocks; a difference is (wall, CPU)."""

    __slots__ = ("cpu", "wall")

    def __init__(self) -> None:
        self.wall = time.perf_counter_ns()
        self.cpu = time.thread_time_ns()

    def __sub__(self, start: _Stamp) -> tuple[int, int]:
        return self.wall - start.wall, self.cpu - start.cpu


def _time(
    statement: str, number: int, namespace: dict[str, Any]
) -> tuple[float, float]:
    """Wall and CPU ns per run of *statement* (timeit turns gc off)."""
    # timeit subtracts two readings of *timer*: with _Stamp, that gives a
    # (wall, CPU) pair rather than the float its annotations promise.
    clock = cast("Callable[[], float]", _Stamp)
    timer = timeit.Timer(statement, timer=clock, globals=namespace)
    timing = cast("tuple[int, int]", timer.timeit(number))
    return timing[0] / number, timing[1] / number


def _typical(samples: Sequence[tuple[float, float]]) -> float:
    """The median wall time of the samples that ran alone."""
    kept = [w for w, c in samples if w <= c * PREEMPTED]
    if len(kept) < len(samples) * MIN_KEPT:
        kept = [w for w, _ in samples]
    return _common.median(kept)


def _run_side(
    side: Side, wanted: set[str], errors: dict[str, str]
) -> dict[str, tuple[float, float]]:
    found: dict[str, tuple[float, float]] = {}
    base = side.namespace()
    for op in OPERATIONS:
        if op[3] == "none" and op[0] in wanted:
            _try(op, base, found, errors)
    for group in ("request", "shared"):
        with ExitStack() as stack:
            namespace = side.enter(stack, group)
            for op in OPERATIONS:
                name = op[0]
                if op[3] != group or name not in wanted:
                    continue
                if name in GUARDED_ONLY and "detect" not in namespace:
                    continue
                _try(op, namespace, found, errors)
    return found


def _try(
    op: tuple[str, str, int, str],
    namespace: dict[str, Any],
    found: dict[str, tuple[float, float]],
    errors: dict[str, str],
) -> None:
    """Time one operation; a failure (private API changed) is noted."""
    name, statement, number, _ = op
    try:
        found[name] = _time(statement, number, namespace)
    except Exception as exc:  # noqa: BLE001 - report, measure the rest
        errors[name] = f"{type(exc).__name__}: {exc}"


def worker(repeats: int) -> None:
    """Time every operation on both sides; print the medians."""
    sides = [Side("bare"), Side("log")]
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    names = [op[0] for op in OPERATIONS]
    plain_wanted = set(names) - GUARDED_ONLY
    guarded_wanted = set(names) - SHARED
    empty = []
    errors: dict[str, str] = {}
    for repeat in range(repeats):
        empty.append(_time("pass", 20_000, {}))
        order = sides if repeat % 2 == 0 else sides[::-1]
        for side in order:
            wanted = plain_wanted if side.mode == "bare" else guarded_wanted
            for name, value in _run_side(side, wanted, errors).items():
                samples.setdefault((name, side.mode), []).append(value)
    loop = _typical(empty)
    violations = len(sides[1].guard.violations) if sides[1].guard else 0
    _common.emit(
        {
            "ns": {
                f"{name}|{mode}": _typical(values) - loop
                for (name, mode), values in samples.items()
            },
            "violations": violations,
            "errors": errors,
        }
    )


@dataclass
class Check:
    """One operation: plain and guarded ns/op (`None`: not applicable)."""

    name: str
    plain: float | None
    guarded: float | None

    @property
    def delta(self) -> float | None:
        """What the guard adds, in ns per operation."""
        if self.plain is None or self.guarded is None:
            return None
        return self.guarded - self.plain


def measure(repeats: int = 41) -> tuple[list[Check], int, dict[str, str]]:
    """
    Run the worker; the checks, the violations it reported, and the
    operations that failed (a private name changed), with the error.
    """
    out = _common.run_worker("checks", ["--repeats", str(repeats)])
    ns = out["ns"]
    checks = []
    for name, *_ in OPERATIONS:
        plain = ns.get(f"{name}|bare")
        guarded = ns.get(f"{name}|log")
        if name in SHARED:
            checks.append(Check(name, None, plain))
        else:
            checks.append(Check(name, plain, guarded))
    return checks, out["violations"], out["errors"]


def format_ns(value: float | None) -> str:
    """*value* in ns, or ``n/a``."""
    return "n/a" if value is None else f"{value:,.0f}"


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: a worker, or this part on its own."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.checks")
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--repeats", type=int, default=41)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.repeats)
        return
    checks, violations, errors = measure(11 if args.quick else args.repeats)
    _print(checks, print)
    for name, error in errors.items():
        print(f"{name}: failed: {error}")
    if violations:
        print(f"{violations} violations were reported: the numbers are off")


def _print(checks: list[Check], out: Callable[[str], None]) -> None:
    for check in checks:
        out(
            f"{check.name:34} {format_ns(check.plain):>8}"
            f" {format_ns(check.guarded):>8} {format_ns(check.delta):>8}"
        )


if __name__ == "__main__":
    main()
