"""
What the pytest plugin costs a suite that does not use it.

Generates a large suite without Flask in a temporary directory and times
``python -m pytest --collect-only`` on it, with the plugin installed and
with ``-p no:ctxguard``, alternating the two, each in a fresh process.
Prints the median of each side and their ratio.

    python -m benchmarks.plugin_cost [--files 200] [--tests 50] [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _write_suite(root: Path, files: int, tests: int) -> None:
    (root / "pytest.ini").write_text(
        "[pytest]\naddopts = -p no:cacheprovider -p no:randomly\n"
    )
    body = "".join(
        f"def test_{n}():\n    assert {n} == {n}\n\n\n" for n in range(tests)
    )
    for index in range(files):
        (root / f"test_gen_{index}.py").write_text(body)


def _time(root: Path, *extra: str) -> float:
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q"]
    start = time.perf_counter()
    subprocess.run(
        [*command, *extra],
        cwd=root,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        _write_suite(root, args.files, args.tests)
        _time(root)  # warm the file system cache and the bytecode
        with_plugin: list[float] = []
        without: list[float] = []
        for _ in range(args.runs):
            with_plugin.append(_time(root))
            without.append(_time(root, "-p", "no:ctxguard"))
    a, b = statistics.median(with_plugin), statistics.median(without)
    print(
        f"{args.files} files x {args.tests} tests, median of {args.runs}:"
        f" with the plugin {a:.2f} s, with -p no:ctxguard {b:.2f} s,"
        f" ratio {a / b:.3f}"
    )


if __name__ == "__main__":
    main()
