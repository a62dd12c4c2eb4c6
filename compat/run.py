"""
Run well-known Flask projects' own test suites bare and under ctxguard.

Usage, from the repository root::

    python compat/run.py [--quick] [--only NAME[,NAME]] [--modes ...]

Everything lives under ``compat/work/`` (git-ignored): a venv made with
the Python running this script, the sdists downloaded from PyPI, their
unpacked sources, and per-run logs and JUnit XML files in ``results/``.

Each suite runs three ways, one run at a time, with plugin autoloading off
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``) and every plugin it needs loaded
with ``-p``: *bare* (no ctxguard), *warn* (``--ctxguard=warn``) and
*strict* (``--ctxguard``). The script prints a table of outcomes and
violations, then compares warn and strict with bare, test for test.

It exits non-zero when a bare run is not green, a run did not complete,
or a warn run differs from its bare run in any test: warn mode must never
change an outcome. Strict-mode failures are findings, listed for review.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree

from projects import PROJECTS, Project

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "work"
VENV = WORK / "venv"
SDISTS = WORK / "sdists"
SOURCES = WORK / "src"
RUNS = WORK / "run"
RESULTS = WORK / "results"
STAMPS = WORK / "stamps"
PLUGINS = HERE / "plugins"

BIN = VENV / "bin"
PYTHON = BIN / "python"
PYTEST = BIN / "pytest"

PLUGIN = "flask_ctxguard.pytest_plugin"
# Mode options go last on the command line, after the test paths, so that
# a bare '--ctxguard' cannot swallow a path as its value.
MODES: dict[str, tuple[str, ...]] = {
    "bare": (),
    "warn": ("-p", PLUGIN, "--ctxguard=warn"),
    "strict": ("-p", PLUGIN, "--ctxguard"),
}
COMMON_ARGS = ("-q", "--tb=short")
# Given with '-c' to a suite that has no pytest configuration of its own:
# pytest would otherwise search the parent directories and find this
# repository's pyproject.toml.
NO_CONFIG = WORK / "no-pytest-config.ini"
# pytest (pinned in constraints.txt) and flask_ctxguard's dependencies.
BASE_DEPS = ("pytest", "blinker", "structlog")

OUTCOME_WORDS = {
    "passed": "passed",
    "failed": "failed",
    "error": "errors",
    "errors": "errors",
    "skipped": "skipped",
    "xfailed": "xfailed",
    "xpassed": "xpassed",
    "deselected": "deselected",
    "warning": "warnings",
    "warnings": "warnings",
}
SUMMARY_RE = re.compile(
    r"^=*\s*(?P<body>.*?)\s+in\s+[\d.]+s(?:\s+\([\d:.]+\))?\s*=*$"
)
COUNT_RE = re.compile(r"(\d+) ([a-z]+)")
VIOLATIONS_RE = re.compile(
    # 'findings' since the plugin groups a test's violations by crossing.
    r"ctxguard: (?P<violations>\d+) (?:violations?|findings?)"
    r" in (?P<tests>\d+) tests?"
)
# The first line of each violation report in a failure message.
REPORT_RE = re.compile(r"^\s*(CG\d{3}) ([a-z-]+): (?:'([^']+)')?", re.M)
# The exception line of a failure in pytest's --tb=short format.
ERROR_RE = re.compile(r"^E\s+(\S.*)$", re.M)
# A failure message kept in the differences file is cut at this length.
MAX_MESSAGE = 20_000


@dataclasses.dataclass(slots=True)
class Outcome:
    """One test's outcome in one run, from the JUnit XML file."""

    outcome: str
    message: str = ""


@dataclasses.dataclass(slots=True)
class Run:
    """One pytest run of one suite in one mode."""

    project: str
    mode: str
    status: str  # "ok", "timeout", "usage-error", "crashed"
    returncode: int | None
    seconds: float
    counts: dict[str, int]
    tests: dict[str, Outcome]
    violations: int | None
    violating_tests: int | None
    log: Path

    def cell(self) -> str:
        """passed/failed/errors/skipped, with xfailed counted as skipped."""
        if self.status != "ok":
            return self.status
        c = self.counts
        skipped = c.get("skipped", 0) + c.get("xfailed", 0)
        passed = c.get("passed", 0) + c.get("xpassed", 0)
        failed, errors = c.get("failed", 0), c.get("errors", 0)
        return f"{passed}/{failed}/{errors}/{skipped}"

    def is_green(self) -> bool:
        """Completed with no failure and no error."""
        return (
            self.status == "ok"
            and not self.counts.get("failed")
            and not self.counts.get("errors")
        )


@dataclasses.dataclass(slots=True)
class Difference:
    """A test whose outcome differs between two runs."""

    test: str
    before: str
    after: str
    message: str


# ---------------------------------------------------------------- helpers


def say(*parts: object) -> None:
    """Print progress at once, even when stdout is a pipe."""
    print(*parts, flush=True)


def duration(seconds: float) -> str:
    """Seconds as '1m05s' or '12.3s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s"


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_call(args: Sequence[str | Path]) -> None:
    """Run a setup command, showing it; stop the script if it fails."""
    say("  $", " ".join(str(a) for a in args))
    result = subprocess.run([str(a) for a in args], check=False)
    if result.returncode:
        msg = f"command failed with exit code {result.returncode}"
        raise SystemExit(msg)


def pip(*args: str | Path) -> None:
    """Run pip of the compat venv."""
    check_call([PYTHON, "-m", "pip", "--disable-pip-version-check", *args])


# ------------------------------------------------------------------ setup


def ensure_venv() -> None:
    """Create the compat venv with the Python running this script."""
    want = "{}.{}.{}".format(*sys.version_info[:3])
    cfg = VENV / "pyvenv.cfg"
    if cfg.exists():
        text = cfg.read_text()
        match = re.search(r"^version(?:_info)?\s*=\s*([\d.]+)", text, re.M)
        if match and match.group(1).startswith(want) and PYTHON.exists():
            return
        say(f"compat venv is not Python {want}: recreating it")
        shutil.rmtree(VENV)
        shutil.rmtree(STAMPS, ignore_errors=True)
    say(f"creating {VENV.relative_to(REPO)} with {sys.executable}")
    check_call([sys.executable, "-m", "venv", VENV])


def find_sdist(project: Project) -> Path | None:
    """The downloaded sdist of *project*, if any."""
    for path in SDISTS.glob("*"):
        stem = path.name.removesuffix(".tar.gz").removesuffix(".zip")
        name, _, version = stem.rpartition("-")
        if (
            normalize(name) == normalize(project.dist)
            and version == project.version
        ):
            return path
    return None


def download(project: Project) -> Path:
    """Download *project*'s sdist from PyPI unless it is already there."""
    found = find_sdist(project)
    if found is not None:
        return found
    SDISTS.mkdir(parents=True, exist_ok=True)
    say(f"downloading {project.dist}=={project.version}")
    pip(
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "-d",
        SDISTS,
        f"{project.dist}=={project.version}",
    )
    found = find_sdist(project)
    if found is None:
        msg = f"pip downloaded no sdist for {project.dist}=={project.version}"
        raise SystemExit(msg)
    return found


def unpack(sdist: Path) -> Path:
    """Unpack *sdist* once into work/src; returns its top directory."""
    stem = sdist.name.removesuffix(".tar.gz").removesuffix(".zip")
    target = SOURCES / stem
    if target.is_dir():
        return target
    SOURCES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=SOURCES) as tmp:
        if sdist.name.endswith(".zip"):
            with zipfile.ZipFile(sdist) as archive:
                archive.extractall(tmp)
        else:
            with tarfile.open(sdist) as archive:
                if hasattr(tarfile, "data_filter"):  # 3.10.12+, 3.11.4+
                    archive.extractall(tmp, filter="data")
                else:
                    archive.extractall(tmp)
        entries = list(Path(tmp).iterdir())
        top = entries[0] if len(entries) == 1 else Path(tmp)
        shutil.move(str(top), target)
    return target


def missing_tests(project: Project, source: Path) -> str | None:
    """Why *project*'s sdist cannot be tested, or None if it can."""
    workdir = source / project.workdir
    if not workdir.is_dir():
        return f"sdist ships no '{project.workdir}'"
    for path in project.testpaths:
        if not (workdir / path).exists():
            return f"sdist ships no '{Path(project.workdir, path)}'"
    return None


def constraints_text() -> str:
    """compat/constraints.txt plus every project's own pin."""
    pins = sorted({f"{normalize(p.dist)}=={p.version}" for p in PROJECTS})
    return (
        (HERE / "constraints.txt").read_text()
        + "\n# The projects under test, from compat/projects.py.\n"
        + "\n".join(pins)
        + "\n"
    )


def install(projects: Sequence[Project], sources: dict[str, Path]) -> None:
    """Install what the suites need, then flask_ctxguard from this repo."""
    WORK.mkdir(parents=True, exist_ok=True)
    constraints = WORK / "constraints.txt"
    text = constraints_text()
    constraints.write_text(text)
    STAMPS.mkdir(parents=True, exist_ok=True)

    todo: list[tuple[Project, Path, str]] = []
    for project in projects:
        key = hashlib.sha256(
            f"{text}\n{project!r}\n{sys.version}".encode()
        ).hexdigest()
        stamp = STAMPS / project.slug
        if not stamp.exists() or stamp.read_text() != key:
            todo.append((project, stamp, key))
    if todo:
        say("installing:", ", ".join(p.name for p, _, _ in todo))
        requirements: list[str | Path] = [*BASE_DEPS]
        for project, _, _ in todo:
            requirements.extend(project.test_deps)
            source = sources[project.name]
            requirements.extend(source / path for path in project.install)
        unique = list(dict.fromkeys(requirements))
        pip("install", "-qq", "-c", constraints, *unique)
        for _, stamp, key in todo:
            stamp.write_text(key)
    # Always reinstall ours: the plugin is what is under test.
    say("installing flask_ctxguard from", REPO)
    pip(
        "install",
        "--quiet",
        "--no-deps",
        "--force-reinstall",
        "-c",
        constraints,
        REPO,
    )
    check = subprocess.run(
        [PYTHON, "-m", "pip", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode:
        say("pip check reports conflicts in the compat venv:")
        say(check.stdout.rstrip())


def fingerprint() -> str:
    """
    Which flask_ctxguard is under test: the commit, and a hash of the
    package's sources when they differ from it.
    """
    digest = hashlib.sha256()
    for path in sorted((REPO / "flask_ctxguard").rglob("*.py")):
        digest.update(path.relative_to(REPO).as_posix().encode())
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "flask_ctxguard"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head, dirty = "unknown", "?"
    state = f", uncommitted changes, sources {digest.hexdigest()[:12]}"
    return f"commit {head}{state if dirty else ''}"


# -------------------------------------------------------------- running


def environment(project: Project) -> dict[str, str]:
    """The environment a suite runs in: ours, minus what would leak in."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTEST_", "FLASK_"))
        and key not in {"PYTHONPATH", "VIRTUAL_ENV", *project.unset_env}
    }
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["VIRTUAL_ENV"] = str(VENV)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Our stand-in plugins, loaded with -p only where a suite needs them.
    env["PYTHONPATH"] = str(PLUGINS)
    env["COMPAT_DESELECT"] = "\n".join(
        path for path, _ in project.leave_out if "::" in path
    )
    return env


def has_pytest_config(top: Path, start: Path) -> bool:
    """
    Whether pytest finds a configuration file between *start* and *top*.

    The same files, in the same sections, that pytest looks for.
    """
    sections = {
        "pytest.ini": None,
        ".pytest.ini": None,
        "pyproject.toml": r"^\[tool\.pytest(\.ini_options)?\]",
        "tox.ini": r"^\[pytest\]",
        "setup.cfg": r"^\[tool:pytest\]",
    }
    directory = start
    while True:
        for name, section in sections.items():
            path = directory / name
            if path.is_file() and (
                section is None
                or re.search(section, path.read_text(errors="replace"), re.M)
            ):
                return True
        if directory in (top, directory.parent):
            return False
        directory = directory.parent


def command(
    project: Project, mode: str, copy: Path, junit: Path, tmp: Path
) -> list[str]:
    """The pytest command line of one run, in *copy* of the sdist."""
    args = [str(PYTEST), *COMMON_ARGS]
    args += [f"--junitxml={junit}", f"--basetemp={tmp}"]
    workdir = copy / project.workdir
    if not has_pytest_config(copy, workdir):
        NO_CONFIG.write_text("# Stops pytest's search for a config file.\n")
        args += ["-c", str(NO_CONFIG), f"--rootdir={workdir}"]
    if not project.cacheprovider:
        args += ["-p", "no:cacheprovider"]
    for plugin in project.plugins:
        args += ["-p", plugin]
    args += project.args
    if any("::" in path for path, _ in project.leave_out):
        args += ["-p", "compat_deselect"]  # exact node ids, see the plugin
    args += [f"--ignore={p}" for p, _ in project.leave_out if "::" not in p]
    args += project.testpaths
    args += MODES[mode]
    return args


def run_suite(
    project: Project, source: Path, mode: str, timeout: float
) -> Run:
    """Run *project*'s suite once in *mode*, in a fresh copy of the sdist."""
    out = RESULTS / project.slug
    out.mkdir(parents=True, exist_ok=True)
    junit = out / f"{mode}.xml"
    log = out / f"{mode}.log"
    junit.unlink(missing_ok=True)
    # A fresh copy per run: a suite that writes into its own tree must not
    # change what the next mode sees.
    copy = RUNS / project.slug
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(source, copy, symlinks=True)
    tmp = WORK / "tmp" / project.slug / mode
    tmp.parent.mkdir(parents=True, exist_ok=True)
    args = command(project, mode, copy, junit, tmp)
    log.write_text(
        f"$ cd {copy / project.workdir}\n$ {' '.join(args)}\n\n",
    )
    start = time.monotonic()
    status = "ok"
    with log.open("a") as sink:
        proc = subprocess.Popen(
            args,
            cwd=copy / project.workdir,
            env=environment(project),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # The run is in its own session: end it and its children.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            returncode = None
            status = "timeout"
        except BaseException:  # Ctrl-C: leave nothing running behind us
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    seconds = time.monotonic() - start
    output = log.read_text(errors="replace")
    if returncode == 4:
        status = "usage-error"
    elif returncode is not None and returncode not in {0, 1, 5}:
        status = "crashed"
    counts = parse_counts(output)
    if counts is None:
        counts = {}
        if status == "ok":
            status = "crashed"
    violations = violating = None
    found = VIOLATIONS_RE.findall(output)
    if found:
        violations, violating = (int(n) for n in found[-1])
    return Run(
        project=project.name,
        mode=mode,
        status=status,
        returncode=returncode,
        seconds=seconds,
        counts=counts,
        tests=parse_junit(junit),
        violations=violations,
        violating_tests=violating,
        log=log,
    )


def parse_counts(output: str) -> dict[str, int] | None:
    """The counts of pytest's closing line, or None if there is none."""
    for line in reversed(output.splitlines()):
        match = SUMMARY_RE.match(line.strip())
        if not match:
            continue
        body = match.group("body")
        if body == "no tests ran":
            return {}
        counts: dict[str, int] = {}
        for number, word in COUNT_RE.findall(body):
            if word in OUTCOME_WORDS:
                key = OUTCOME_WORDS[word]
                counts[key] = counts.get(key, 0) + int(number)
        if counts:
            return counts
    return None


def parse_junit(path: Path) -> dict[str, Outcome]:
    """Every test's outcome in a JUnit XML file written by pytest."""
    if not path.exists():
        return {}
    tests: dict[str, Outcome] = {}
    for case in ElementTree.parse(path).getroot().iter("testcase"):
        key = f"{case.get('classname', '')}::{case.get('name', '')}"
        kinds: list[str] = []
        message = ""
        for child in case:
            if child.tag == "failure":
                kinds.append("failed")
            elif child.tag == "error":
                kinds.append("error")
            elif child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                kinds.append("xfailed" if xfail else "skipped")
            else:
                continue
            # The text holds the whole report; the attribute, when there
            # is text, only its first line or a repeat of it.
            text = child.text or child.get("message") or ""
            message = f"{message}\n{text}" if message else text
        outcome = "+".join(kinds) or "passed"
        if key in tests:
            # pytest writes a second testcase for a test that failed and
            # then errored at teardown: one test, one combined outcome.
            old = tests[key]
            outcome = f"{old.outcome}+{outcome}"
            message = f"{old.message}\n{message}"
        tests[key] = Outcome(outcome, message.strip())
    return tests


def compare(before: Run, after: Run) -> list[Difference]:
    """Tests whose outcome in *after* differs from *before*."""
    diffs = []
    for test in sorted(before.tests.keys() | after.tests.keys()):
        old = before.tests.get(test, Outcome("absent"))
        new = after.tests.get(test, Outcome("absent"))
        if old.outcome != new.outcome:
            diffs.append(
                Difference(test, old.outcome, new.outcome, new.message)
            )
    return diffs


# -------------------------------------------------------------- reporting


def first_line(message: str, width: int = 100) -> str:
    """The first meaningful line of a failure message, shortened."""
    for line in message.splitlines():
        line = line.strip()  # noqa: PLW2901
        if line:
            return line if len(line) <= width else line[: width - 3] + "..."
    return ""


def describe(message: str) -> str:
    """
    What a failure is about: the violations it reports, by code and
    subject with their counts, or else its first line.
    """
    error = ERROR_RE.search(message)
    reports = collections.Counter(
        f"{code} '{subject}'" if subject else f"{code} {kind}"
        for code, kind, subject in REPORT_RE.findall(message)
    )
    parts = []
    if error or not reports:
        parts.append(first_line(error.group(1) if error else message))
    if reports:
        found = [
            text if n == 1 else f"{text} x{n}"
            for text, n in reports.most_common(3)
        ]
        if len(reports) > 3:
            found.append("...")
        parts.append("violations: " + ", ".join(found))
    return "; ".join(parts)


def grouped(
    found: Sequence[Difference],
) -> list[tuple[str, list[Difference]]]:
    """Differences grouped by test function, parametrizations together."""
    groups: dict[str, list[Difference]] = {}
    for diff in found:
        base = diff.test.split("[", 1)[0]
        key = f"{base}: {diff.before} -> {diff.after}"
        groups.setdefault(key, []).append(diff)
    return list(groups.items())


def print_table(
    projects: Sequence[Project], runs: dict[tuple[str, str], Run]
) -> None:
    """The outcome table: p/f/e/s and violations for each mode."""
    modes = [m for m in MODES if any(k[1] == m for k in runs)]
    header = ["project"]
    for mode in modes:
        header.append(f"{mode} p/f/e/s")
        if mode != "bare":
            header.append("viol")
    header.append("time")
    rows = [header]
    for project in projects:
        row = [project.name]
        total = 0.0
        for mode in modes:
            run = runs.get((project.name, mode))
            row.append(run.cell() if run else "-")
            if mode != "bare":
                count = run.violations if run else None
                row.append("-" if count is None else str(count))
            total += run.seconds if run else 0.0
        row.append(duration(total))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    say()
    for i, row in enumerate(rows):
        say(
            "  ".join(
                cell.ljust(w) if j == 0 else cell.rjust(w)
                for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            say("  ".join("-" * w for w in widths))
    say()
    say("p/f/e/s = passed/failed/errors/skipped (xfailed count as skipped);")
    say("viol = findings in the plugin's 'ctxguard: N findings' line;")
    say("time = all its runs together.")


def print_differences(
    title: str, diffs: dict[str, list[Difference]], *, detail: bool
) -> None:
    """Per-test differences against the bare run, grouped by project."""
    say()
    say(title)
    if not any(diffs.values()):
        say("  none: every test has the same outcome.")
        return
    for name, found in diffs.items():
        if not found:
            continue
        say(f"  {name}: {len(found)} tests")
        for key, group in grouped(found):
            cases = f" ({len(group)} cases)" if len(group) > 1 else ""
            say(f"    {key}{cases}")
            if detail and group[0].message:
                say(f"      {describe(group[0].message)}")


def write_failures(name: str, mode: str, found: list[Difference]) -> Path:
    """Full messages of the tests that differ, for review."""
    path = RESULTS / name / f"{mode}-differences.txt"
    parts = []
    for d in found:
        message = d.message
        if len(message) > MAX_MESSAGE:
            cut = len(message) - MAX_MESSAGE
            message = (
                f"{message[:MAX_MESSAGE]}\n... {cut} more characters;"
                " see the run's log."
            )
        parts.append(f"=== {d.test}: {d.before} -> {d.after}\n{message}")
    path.write_text("\n\n".join(parts) + "\n")
    return path


# ------------------------------------------------------------------ main


def select(only: str | None, *, quick: bool) -> list[Project]:
    """The projects asked for on the command line."""
    chosen = [p for p in PROJECTS if p.quick] if quick else list(PROJECTS)
    if only:
        wanted = {normalize(n) for n in only.split(",") if n.strip()}
        known = {normalize(p.name) for p in PROJECTS} | {
            normalize(p.slug) for p in PROJECTS
        }
        unknown = wanted - known
        if unknown:
            names = ", ".join(p.name for p in PROJECTS)
            msg = f"unknown project(s) {sorted(unknown)}; known: {names}"
            raise SystemExit(msg)
        chosen = [
            p
            for p in PROJECTS
            if normalize(p.name) in wanted or normalize(p.slug) in wanted
        ]
    return chosen


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description=(
            "Run Flask projects' own test suites bare, under"
            " --ctxguard=warn and under --ctxguard (strict)."
        )
    )
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help="run only these projects"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="run the small subset meant for CI (Flask and Flask-Login)",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="comma-separated subset of: %(default)s",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        help="seconds one pytest run may take (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = set(args.modes) - set(MODES)
    if bad or not args.modes:
        parser.error(f"--modes takes some of {', '.join(MODES)}")
    return args


@dataclasses.dataclass(slots=True)
class Setup:
    """The suites ready to run, and what setting them up found."""

    projects: list[Project]
    sources: dict[str, Path]
    dropped: dict[str, str]
    tested: str
    seconds: float


def set_up(projects: Sequence[Project], started: float) -> Setup:
    """
    The venv, the sdists unpacked, every project and flask_ctxguard
    installed; projects whose sdist has no tests are dropped.
    """
    ensure_venv()
    sources: dict[str, Path] = {}
    dropped: dict[str, str] = {}
    for project in projects:
        source = unpack(download(project))
        reason = missing_tests(project, source)
        if reason:
            dropped[project.name] = reason
        else:
            sources[project.name] = source
    kept = [p for p in projects if p.name in sources]
    # Read just before flask_ctxguard is installed from the working tree.
    tested = fingerprint()
    install(kept, sources)
    say(f"flask_ctxguard under test: {tested}")
    seconds = time.monotonic() - started
    say(f"setup took {duration(seconds)}")
    return Setup(kept, sources, dropped, tested, seconds)


def run_all(
    setup: Setup, modes: Sequence[str], timeout: float
) -> dict[tuple[str, str], Run]:
    """Every suite in every mode, one run at a time."""
    runs: dict[tuple[str, str], Run] = {}
    for project in setup.projects:
        for mode in modes:
            say(f"running {project.name} ({mode})...")
            source = setup.sources[project.name]
            run = run_suite(project, source, mode, timeout)
            runs[project.name, mode] = run
            violations = (
                f", {run.violations} findings"
                if run.violations is not None
                else ""
            )
            say(f"  {run.cell()} in {duration(run.seconds)}{violations}")
    return runs


def print_left_out(setup: Setup) -> None:
    """The suites dropped, and the tests left out or stubbed, with why."""
    if setup.dropped:
        say()
        say("Dropped (no runnable tests in the sdist):")
        for name, reason in setup.dropped.items():
            say(f"  {name}: {reason}")
    left_out = [p for p in setup.projects if p.leave_out or p.plugins]
    if left_out:
        say()
        say("Left out or stubbed:")
        for project in left_out:
            for path, reason in project.leave_out:
                how = "deselected" if "::" in path else "--ignore"
                say(f"  {project.name}: {how} {path}: {reason}")
            if "compat_docker_stub" in project.plugins:
                say(
                    f"  {project.name}: tests needing Redis, Memcached or"
                    " MongoDB skip through compat/plugins/"
                    "compat_docker_stub.py"
                )


def check_runs(runs: dict[tuple[str, str], Run]) -> bool:
    """
    Print the runs that did not complete and the bare runs that are not
    green; whether there were any.
    """
    broken = [r for r in runs.values() if r.status != "ok"]
    if broken:
        say()
        say("Runs that did not complete:")
        for run in broken:
            say(f"  {run.project} ({run.mode}): {run.status}, see {run.log}")
    not_green = [
        r for (_, m), r in runs.items() if m == "bare" and not r.is_green()
    ]
    if not_green:
        say()
        say("Bare runs that are not green (the baseline is broken):")
        for run in not_green:
            say(f"  {run.project}: {run.cell()}, see {run.log}")
    return bool(broken or not_green)


def differences_from_bare(
    projects: Sequence[Project],
    runs: dict[tuple[str, str], Run],
    mode: str,
) -> dict[str, list[Difference]]:
    """
    Each project's tests whose outcome in *mode* differs from bare; their
    full messages are written to the project's results.
    """
    diffs: dict[str, list[Difference]] = {}
    for project in projects:
        bare = runs.get((project.name, "bare"))
        other = runs.get((project.name, mode))
        if bare is None or other is None or other.status != "ok":
            continue
        found = compare(bare, other)
        diffs[project.name] = found
        if found:
            write_failures(project.slug, mode, found)
    return diffs


def as_summary(
    diffs: dict[str, list[Difference]],
) -> dict[str, list[dict[str, str]]]:
    """Differences as JSON-ready records, one line of description each."""
    return {
        name: [
            {
                "test": d.test,
                "before": d.before,
                "after": d.after,
                "about": describe(d.message),
            }
            for d in found
        ]
        for name, found in diffs.items()
    }


def compare_modes(
    projects: Sequence[Project],
    runs: dict[tuple[str, str], Run],
    modes: Sequence[str],
) -> tuple[bool, dict[str, dict[str, list[dict[str, str]]]]]:
    """
    Compare warn and strict with bare, test for test, and print the
    differences; whether warn changed any outcome, and the differences.
    """
    warn_differs = False
    differences: dict[str, dict[str, list[dict[str, str]]]] = {}
    for mode in ("warn", "strict"):
        if mode not in modes or "bare" not in modes:
            continue
        diffs = differences_from_bare(projects, runs, mode)
        if mode == "warn":
            title = "warn vs bare, test for test (must be identical):"
            warn_differs = any(diffs.values())
        else:
            title = "strict vs bare, test for test (to review):"
        print_differences(title, diffs, detail=mode == "strict")
        if any(diffs.values()):
            where = RESULTS.relative_to(REPO) / "PROJECT"
            say(f"  full messages: {where}/{mode}-differences.txt")
        differences[mode] = as_summary(diffs)
    return warn_differs, differences


def write_summary(
    setup: Setup,
    runs: dict[tuple[str, str], Run],
    differences: dict[str, dict[str, list[dict[str, str]]]],
    total: float,
) -> None:
    """``results/summary.json``: every run's figures and differences."""
    summary = {
        "python": sys.version.split()[0],
        "flask_ctxguard": setup.tested,
        "total_seconds": round(total, 1),
        "setup_seconds": round(setup.seconds, 1),
        "dropped": setup.dropped,
        "runs": [
            {
                "project": run.project,
                "mode": run.mode,
                "status": run.status,
                "returncode": run.returncode,
                "seconds": round(run.seconds, 1),
                "counts": run.counts,
                "violations": run.violations,
                "violating_tests": run.violating_tests,
                "log": str(run.log.relative_to(REPO)),
            }
            for run in runs.values()
        ],
        "differences": differences,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.json").write_text(json.dumps(summary, indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """Set up, run every selected suite in every mode, report."""
    args = parse_args(argv)
    started = time.monotonic()
    setup = set_up(select(args.only, quick=args.quick), started)
    runs = run_all(setup, args.modes, args.timeout)

    say()
    say("=" * 72)
    print_table(setup.projects, runs)
    print_left_out(setup)
    incomplete = check_runs(runs)
    warn_differs, differences = compare_modes(setup.projects, runs, args.modes)

    total = time.monotonic() - started
    write_summary(setup, runs, differences, total)
    say()
    say(f"flask_ctxguard under test: {setup.tested}")
    say(
        f"total {duration(total)} (setup {duration(setup.seconds)});"
        f" logs and JUnit XML in {RESULTS.relative_to(REPO)}/"
    )
    return 1 if incomplete or warn_differs else 0


if __name__ == "__main__":
    sys.exit(main())
