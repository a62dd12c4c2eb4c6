"""
How long ``python -m flask_ctxguard lint`` takes on a 100,000-line tree.

Generates a tree of Flask-like modules (blueprints with views, request
hooks, class-based views, helpers, executors and ContextVars used the
sanctioned way, a few bugs, and tests) of about ``--lines`` lines in a
temporary directory, or uses ``--path``, and times the whole command in a
fresh process (interpreter start, parallel workers and all), ``--runs``
times after one warm-up run. Prints the median and every run.

    python -m benchmarks.lint_speed [--lines 100000] [--runs 3] [--jobs 0]
    python -m benchmarks.lint_speed --path /some/flask/project
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODULE = '''\
"""Views of part {n}."""

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Blueprint, Response, current_app, g, request, session
from flask import copy_current_request_context, stream_with_context
from flask.views import MethodView
from structlog.contextvars import bind_contextvars, clear_contextvars

bp = Blueprint("part{n}", __name__)
pool = ThreadPoolExecutor(4)
tenant = contextvars.ContextVar("tenant{n}")
CACHE = {{}}


@bp.before_request
def start():
    clear_contextvars()
    bind_contextvars(path=request.path, part={n})
    g.started = request.args.get("t")


@bp.teardown_request
def end(exc=None):
    g.pop("started", None)


def load_items(user_id, query):
    rows = []
    for index in range(10):
        rows.append({{"id": index, "user": user_id, "q": query}})
    return rows


def send_report(address, rows):
    return len(rows), address


@bp.get("/items")
def items():
    query = request.args.get("q", "")
    rows = load_items(session.get("user"), query)
    pool.submit(send_report, request.args.get("to"), rows)
    CACHE[session.get("user")] = len(rows)
    return {{"items": rows}}


@bp.get("/items/<int:item_id>")
def item(item_id):
    token = tenant.set(g.get("tenant"))
    try:
        return {{"item": item_id, "tenant": tenant.get()}}
    finally:
        tenant.reset(token)


@bp.get("/stream")
def stream():
    @stream_with_context
    def generate():
        for row in load_items(session.get("user"), request.args["q"]):
            yield str(row)

    return Response(generate())


@bp.post("/jobs")
def jobs():
    @copy_current_request_context
    def work():
        return request.form.get("name")

    threading.Thread(target=work).start()
    app = current_app._get_current_object()
    threading.Thread(target=background, args=(app,)).start()
    return {{"started": True}}


def background(app):
    with app.app_context():
        return current_app.config.get("X")


class Things(MethodView):
    def get(self):
        return {{"things": load_items(session.get("user"), "")}}

    def post(self):
        data = request.get_json(silent=True) or {{}}
        return {{"created": data.get("name")}}, 201


bp.add_url_rule("/things", view_func=Things.as_view("things"))


def helper_{n}(values):
    total = 0
    for value in values:
        if value % 2:
            total += value
        else:
            total -= value
    return total
'''

TEST = '''\
"""Tests of part {n}."""

import pytest


@pytest.fixture
def ctx(app):
    context = app.test_request_context()
    context.push()
    yield context
    context.pop()


def test_items(client):
    assert client.get("/items?q=x").status_code == 200
    assert client.get("/items/1").status_code == 200


def test_setup_only(app, client):
    with app.app_context():
        app.config["X"] = 1
    assert client.get("/things").status_code == 200
'''


def write_tree(root: Path, lines: int) -> tuple[int, int]:
    """Write modules under *root* until *lines* lines; (files, lines)."""
    written = files = 0
    n = 0
    while written < lines:
        package = root / f"pkg{n // 50}"
        (package / "tests").mkdir(parents=True, exist_ok=True)
        for path, template in (
            (package / f"views{n}.py", MODULE),
            (package / "tests" / f"test_views{n}.py", TEST),
        ):
            text = template.format(n=n)
            path.write_text(text)
            written += text.count("\n")
            files += 1
        n += 1
    return files, written


def time_lint(root: Path, jobs: int) -> tuple[float, float]:
    """
    Wall-clock and CPU seconds (user + system, all processes) of one
    'lint' command on *root*, in a fresh process. The CPU time moves less
    with the machine's load than the wall clock.
    """
    command = [sys.executable, "-m", "flask_ctxguard", "lint", "--jobs"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        [*command, str(jobs), "--format", "json", str(root)],
        check=False,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    return wall, cpu


def count(root: Path) -> tuple[int, int]:
    """Python files and their lines under *root*."""
    paths = list(root.rglob("*.py"))
    total = sum(len(p.read_bytes().splitlines()) for p in paths)
    return len(paths), total


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the median."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--path", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        if args.path is not None:
            root = args.path
            files, lines = count(root)
        else:
            root = Path(directory)
            files, lines = write_tree(root, args.lines)
        time_lint(root, args.jobs)  # warm the file cache and the bytecode
        runs = [time_lint(root, args.jobs) for _ in range(args.runs)]
    jobs = args.jobs or "auto"
    walls = [wall for wall, _ in runs]
    cpus = [cpu for _, cpu in runs]
    print(
        f"lint of {files} files, {lines} lines (--jobs {jobs}): median of"
        f" {len(runs)} {statistics.median(walls):.2f} s"
        f" (runs: {', '.join(f'{r:.2f}' for r in walls)});"
        f" CPU {statistics.median(cpus):.2f} s"
    )


if __name__ == "__main__":
    main()
