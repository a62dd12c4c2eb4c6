"""
``python -m flask_ctxguard report``: JSON logs of many workers into
findings.
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flask_ctxguard import _cli
from flask_ctxguard._core.docs_site import rule_url
from flask_ctxguard._logs import findings as _findings
from tests._compat import needs_shared_g

ROOT = Path(__file__).resolve().parent.parent


def event(
    code: str = "CG103",
    *,
    subject: str = "request",
    token: str = "aaaa0001-2",
    origin_token: str | None = "aaaa0001-1",
    repeats: int | None = None,
    access_site: str = "app/views.py:12 in show",
    origin_site: str = "app/views.py:10 in show",
    path: str = "/notes",
    endpoint: str | None = "notes.show",
    timestamp: str | None = "2026-11-25T20:52:53.000000Z",
    app: str = "notes",
) -> dict[str, Any]:
    """A ``contamination`` event as the guard logs it."""
    side = {
        "method": "GET",
        "path": path,
        "endpoint": endpoint,
        "thread": "worker-1",
        "thread_id": 1,
        "started": 1795639973.5,
    }
    fields: dict[str, Any] = {
        "code": code,
        "kind": {"CG101": "g-leak", "CG103": "cross-request-access"}.get(
            code, "stale-access"
        ),
        "subject": subject,
        "message": f"'{subject}' of GET {path} was used.",
        "origin": (
            {**side, "token": origin_token}
            if origin_token is not None
            else None
        ),
        "accessor": (
            {**side, "token": token}
            if token
            else {"thread": "Thread-3 (late)"}
        ),
        "origin_site": origin_site,
        "access_site": access_site,
        "hint": "never share request objects.",
        "docs": rule_url(code),
        "app": app,
        "event": "contamination",
        "level": "warning",
    }
    if repeats is not None:
        fields["repeats"] = repeats
    if timestamp is not None:
        fields["timestamp"] = timestamp
    return fields


def lines(*items: object) -> bytes:
    """JSON lines of the dicts among *items*, other items as they are."""
    return b"".join(
        (json.dumps(item) if isinstance(item, dict) else str(item)).encode()
        + b"\n"
        for item in items
    )


def run(
    *args: str, stdin: bytes | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``python -m flask_ctxguard`` in a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "flask_ctxguard", *args],
        input=stdin.decode("latin-1") if stdin is not None else None,
        capture_output=True,
        text=True,
        encoding="latin-1",
        cwd=cwd,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def report_json(data: bytes) -> dict[str, Any]:
    """The ``--format json`` object of the report over *data*."""
    findings = _findings.Findings()
    findings.read(io.BytesIO(data))
    result: dict[str, Any] = json.loads(json.dumps(findings.to_dict()))
    return result


@pytest.fixture(name="worker_logs")
def _worker_logs(tmp_path):
    """
    Two worker processes' JSON logs: one plain with 5 CG103 and a CG101,
    one gzipped with 3 CG103, with unrelated and non-JSON lines.
    """
    plain, zipped = tmp_path / "a.log", tmp_path / "b.log.gz"
    for out, extra in (
        (plain, ["--remember", "5", "--shared-g"]),
        (zipped, ["--gzip", "--remember", "3"]),
    ):
        subprocess.run(
            [sys.executable, "-m", "tests.logworker", str(out), *extra],
            cwd=ROOT,
            check=True,
            timeout=120,
        )
    return plain, zipped


class TestWorkers:
    @needs_shared_g  # the workers' logs hold a CG101
    def test_two_workers_logs_become_findings(self, worker_logs):
        """
        Two workers' logs, one gzipped, give each bug once with counts summed
        per process.
        """
        plain, zipped = worker_logs

        result = run("report", "--format", "json", str(plain), str(zipped))

        assert 1 == result.returncode, result.stderr
        report = json.loads(result.stdout)
        # CG103: 5 in one worker (logged at 1, 2, 4), 3 in the other (1, 2).
        # CG101: once. Each of the 12 requests has two lines of noise.
        assert (6, 24) == (report["events"], report["skipped_lines"])
        summary = [
            (f["code"], f["subject"], f["count"], f["events"])
            for f in report["findings"]
        ]
        assert [
            ("CG103", "request", 6, 5),
            ("CG101", "g.user", 1, 1),
        ] == summary
        cg101 = report["findings"][1]
        assert (["login"], ["me"], ["worker"]) == (
            cg101["origin_endpoints"],
            cg101["accessor_endpoints"],
            cg101["apps"],
        )
        assert cg101["report"].startswith("CG101 g-leak: 'g.user' was read")
        assert cg101["first_seen"] == cg101["last_seen"]
        assert cg101["first_seen"].endswith("Z")

    @needs_shared_g  # the workers' logs hold a CG101
    def test_text_report_of_two_workers(self, worker_logs):
        """
        The text report has a table, worst first, and each finding's full
        report.
        """
        result = run("report", *map(str, worker_logs))

        assert 1 == result.returncode
        out = result.stdout.splitlines()
        assert (
            "2 findings, 7 occurrences, from 6 contamination events"
            " (24 other lines skipped)."
        ) == out[0]
        assert out[2].split() == [
            "#",
            "count",
            "events",
            "code",
            "subject",
            "/",
            "origin",
            "site",
            "/",
            "access",
            "site",
        ]
        assert out[3].split()[:5] == ["1", "6", "5", "CG103", "request"]
        assert out[4].strip().startswith("origin: tests/logworker.py:")
        assert out[5].strip().startswith("access: tests/logworker.py:")
        assert out[6].split()[:5] == ["2", "1", "1", "CG101", "g.user"]
        assert "[1] CG103 cross-request-access on 'request': 6 times" in (
            result.stdout
        )
        assert "      used at:    tests/logworker.py:" in result.stdout
        assert (
            "      docs: https://flask-ctxguard.readthedocs.io/en/latest/"
            "rules/cg101.html (offline: 'python -m flask_ctxguard explain"
            " CG101')"
        ) in result.stdout

    @needs_shared_g  # the workers' logs hold a CG101
    def test_standard_input_and_dash(self, worker_logs):
        """
        Logs piped in, as '-' or with no file, give the same findings as the
        files.
        """
        plain, zipped = worker_logs
        data = plain.read_bytes() + gzip.decompress(zipped.read_bytes())

        piped = run("report", "--format", "json", stdin=data)
        dashed = run("report", "--format", "json", "-", stdin=data)

        assert 1 == piped.returncode == dashed.returncode
        assert json.loads(piped.stdout) == json.loads(dashed.stdout)
        assert 6 == json.loads(piped.stdout)["events"]

    def test_clean_log_exits_0(self, tmp_path):
        """A log without contamination events exits 0 and says so."""
        log = tmp_path / "clean.log"
        log.write_bytes(lines({"event": "request"}, "gunicorn booting", ""))

        result = run("report", str(log))

        assert 0 == result.returncode
        assert (
            "No findings: 0 contamination events, 3 other lines skipped.\n"
            == result.stdout
        )

    def test_missing_file_exits_2_with_one_line(self, tmp_path, worker_logs):
        """
        A missing file is a usage error: exit 2, one line on stderr, nothing on
        stdout.
        """
        missing = tmp_path / "nope.log"

        result = run("report", str(worker_logs[0]), str(missing))

        assert 2 == result.returncode
        assert "" == result.stdout
        assert [
            "python -m flask_ctxguard report: error: cannot read"
            f" {str(missing)!r}: No such file or directory"
        ] == result.stderr.splitlines()

    def test_console_script(self, tmp_path):
        """The 'ctxguard' console script runs the same command."""
        script = Path(sys.executable).with_name("ctxguard")
        log = tmp_path / "one.log"
        log.write_bytes(lines(event()))

        result = subprocess.run(
            [str(script), "report", str(log)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert 1 == result.returncode
        assert result.stdout.startswith("1 finding, 1 occurrence,")


class TestUsage:
    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (
                ["report", "--format", "xml"],
                "argument --format: invalid choice: 'xml'",
            ),
            (["report", "--colour"], "unrecognized arguments: --colour"),
            (["frobnicate"], "invalid choice: 'frobnicate'"),
        ],
    )
    def test_usage_errors_exit_2(self, capsys, args, message):
        """
        A bad argument exits 2 with one line naming it and pointing at --help.
        """
        status = _cli.main(args, prog="ctxguard")

        err = capsys.readouterr().err
        assert 2 == status
        assert 1 == len(err.splitlines())
        assert message in err
        assert err.startswith("ctxguard")
        assert "--help'" in err

    def test_no_command_prints_help(self, capsys):
        """Without a command, the usage is printed and the exit status is 2."""
        status = _cli.main([], prog="ctxguard")

        assert 2 == status
        assert "report" in capsys.readouterr().out

    def test_terminal_without_input_is_a_usage_error(
        self, capsys, monkeypatch
    ):
        """No file and a terminal on stdin is refused rather than waited on."""

        class Terminal(io.StringIO):
            def isatty(self):
                return True

        monkeypatch.setattr(sys, "stdin", Terminal())

        status = _cli.main(["report"], prog="ctxguard")

        assert 2 == status
        assert "no input" in capsys.readouterr().err

    def test_corrupt_gzip_exits_2(self, tmp_path):
        """A truncated gzip file is unreadable: exit 2 with one line."""
        log = tmp_path / "cut.log.gz"
        log.write_bytes(gzip.compress(lines(event()) * 200)[:-40])

        result = run("report", str(log))

        assert 2 == result.returncode
        assert 1 == len(result.stderr.splitlines())
        assert f"cannot read {str(log)!r}" in result.stderr

    def test_directory_exits_2(self, tmp_path):
        """A directory given as a file exits 2."""
        result = run("report", str(tmp_path))

        assert 2 == result.returncode
        assert "cannot read" in result.stderr

    def test_reader_going_away_is_not_an_error(self, tmp_path):
        """Piping the report into a reader that stops early ends quietly."""
        log = tmp_path / "many.log"
        log.write_bytes(
            lines(
                *(
                    event(subject=f"g.item{n}", access_site=f"a.py:{n} in f")
                    for n in range(3000)
                )
            )
        )
        command = (
            f"{sys.executable} -m flask_ctxguard report {log} | head -n 1"
        )

        result = subprocess.run(
            command,
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert "" == result.stderr
        assert result.stdout.startswith("3000 findings")


class TestInput:
    def test_skipped_lines_are_counted(self):
        """
        Non-JSON, non-object, other events and blank lines are skipped and
        counted.
        """
        data = lines(
            "not json at all",
            "[1, 2, 3]",
            '"contamination"',
            {"event": "request", "path": "/contamination"},
            {"event": "contamination"},
            "",
            '{"event": "contamination", "code": 103, "subject": "request"}',
            event(),
        )

        report = report_json(data)

        assert (1, 7) == (report["events"], report["skipped_lines"])

    def test_docker_and_kubernetes_wrappers(self):
        """
        Events inside Docker's 'log' field, a shipper's 'message' and Loki's
        'line' are read.
        """
        inner = json.dumps(event())
        data = lines(
            {
                "log": inner + "\n",
                "stream": "stdout",
                "time": "2026-11-25T20:52:54Z",
            },
            {"message": inner, "timestamp": 1795639975000},
            {"line": inner, "labels": {"app": "notes"}},
            {"_source": event()},
            {"log": "plain text", "stream": "stderr"},
        )

        report = report_json(data)

        assert (4, 1) == (report["events"], report["skipped_lines"])
        assert 4 == report["findings"][0]["events"]

    def test_wrapper_time_is_used_when_the_event_has_none(self):
        """
        Without its own timestamp, an event is dated by its wrapper's time.
        """
        bare = event(timestamp=None)
        data = lines(
            {"log": json.dumps(bare), "time": "2026-11-25T20:52:54.5Z"},
            {"message": json.dumps(bare), "timestamp": 1795639980000},
        )

        finding = report_json(data)["findings"][0]

        assert "2026-11-25T20:52:54.500000Z" == finding["first_seen"]
        assert "2026-11-25T20:53:00Z" == finding["last_seen"]

    def test_prefixed_lines(self):
        """
        A JSON event after a plain-text prefix (containerd, syslog) is read.
        """
        inner = json.dumps(event())
        data = lines(
            f"2026-11-25T20:52:53.1Z stdout F {inner}",
            f"Nov 25 20:52:53 host notes[812]: {inner}",
        )

        assert 2 == report_json(data)["events"]

    def test_nesting_is_one_level_only(self):
        """An event nested two wrappers deep is not read."""
        twice = {"log": json.dumps({"log": json.dumps(event())})}

        report = report_json(lines(twice))

        assert (0, 1) == (report["events"], report["skipped_lines"])

    def test_gzip_is_recognised_by_content(self, tmp_path, capsys):
        """A gzipped log is read whatever its name."""
        log = tmp_path / "rotated.1"
        log.write_bytes(gzip.compress(lines(event(), "noise")))

        status = _cli.main(["report", "--format", "json", str(log)])

        assert 1 == status
        report = json.loads(capsys.readouterr().out)
        assert (1, 1) == (report["events"], report["skipped_lines"])

    @pytest.mark.parametrize(
        "stamp", ["Infinity", "-Infinity", "NaN", '"9' + "9" * 400 + '"']
    )
    def test_absurd_timestamps_are_ignored(self, stamp):
        """
        A timestamp that is not a time (infinite, not a number, huge) is
        ignored, and the request's start time is used.
        """
        line = (
            json.dumps(event(timestamp=None))[:-1]
            + f', "timestamp": {stamp}}}'
        )

        finding = report_json(lines(line))["findings"][0]

        assert "2026-11-25T20:52:53.500000Z" == finding["first_seen"]

    def test_invalid_utf8_is_skipped(self):
        """
        A line of broken bytes mentioning contamination is skipped, not fatal.
        """
        data = b'{"event": "contamination", "\xff\xfe": 1}\n' + lines(event())

        report = report_json(data)

        assert (1, 1) == (report["events"], report["skipped_lines"])


class TestCounting:
    def test_repeats_are_summed_across_processes(self):
        """
        The highest repeat of each process is summed; the token prefix tells
        processes apart.
        """
        data = lines(
            event(token="aaaa0001-2"),
            event(token="aaaa0001-3", repeats=2),
            event(token="aaaa0001-9", repeats=4),
            event(token="bbbb0002-2"),
            event(token="bbbb0002-5", repeats=2),
        )

        finding = report_json(data)["findings"][0]

        assert (6, 5) == (finding["count"], finding["events"])

    def test_one_process_is_not_summed(self):
        """Running repeats of one process count once, at their highest."""
        data = lines(
            *(
                event(token=f"cccc0003-{n}", repeats=n if n > 1 else None)
                for n in (1, 2, 4, 8, 16)
            )
        )

        assert 16 == report_json(data)["findings"][0]["count"]

    def test_events_outside_requests_use_the_origin_process(self):
        """
        A late thread's events (no accessor token) count in the origin's
        process.
        """
        data = lines(
            event("CG102", token="", origin_token="dddd0004-1"),
            event("CG102", token="", origin_token="dddd0004-2", repeats=2),
            event("CG102", token="", origin_token="eeee0005-1"),
        )

        assert 3 == report_json(data)["findings"][0]["count"]

    def test_count_is_never_less_than_events(self):
        """Events without any request token still count once each."""
        data = lines(
            *(
                event(
                    "CG105", token="", origin_token=None, subject="app context"
                )
                for _ in range(3)
            )
        )

        finding = report_json(data)["findings"][0]

        assert (3, 3) == (finding["count"], finding["events"])
        assert ["(no request)"] == finding["accessor_endpoints"]
        assert ["(no request)"] == finding["origin_endpoints"]

    def test_apps_of_one_process_count_apart(self):
        """
        Two apps in one process rate-limit apart, so their repeats add up.
        """
        data = lines(
            event(app="notes", repeats=4),
            event(app="admin", repeats=2),
        )

        finding = report_json(data)["findings"][0]

        assert (6, ["admin", "notes"]) == (finding["count"], finding["apps"])

    def test_findings_are_grouped_by_code_subject_and_origin_site(self):
        """
        A different code, subject or origin site is another finding; access
        sites of one origin site are one finding; ordering is worst first.
        """
        data = lines(
            event(),
            event(repeats=2, token="aaaa0001-4"),
            event(subject="session"),
            event(origin_site="app/views.py:50 in edit", repeats=8),
            event(access_site="app/views.py:99 in other", token="aaaa0001-5"),
            event("CG101", subject="g.user"),
        )

        findings = report_json(data)["findings"]

        assert [
            ("CG103", "request", "app/views.py:50 in edit", 8, 1),
            ("CG103", "request", "app/views.py:10 in show", 3, 3),
            ("CG101", "g.user", "app/views.py:10 in show", 1, 1),
            ("CG103", "session", "app/views.py:10 in show", 1, 1),
        ] == [
            (
                f["code"],
                f["subject"],
                f["origin_site"],
                f["count"],
                f["events"],
            )
            for f in findings
        ]
        assert [
            {"site": "app/views.py:12 in show", "events": 2},
            {"site": "app/views.py:99 in other", "events": 1},
        ] == findings[1]["access_sites"]

    def test_without_origin_site_the_access_site_groups(self):
        """
        Events that logged no origin site are grouped by their access site.
        """
        data = lines(
            event(origin_site=None),
            event(origin_site=None, token="aaaa0001-4"),
            event(origin_site=None, access_site="app/views.py:99 in other"),
        )

        findings = report_json(data)["findings"]

        assert [
            ("access_site", None, "app/views.py:12 in show", 2),
            ("access_site", None, "app/views.py:99 in other", 1),
        ] == [
            (f["grouped_by"], f["origin_site"], f["access_site"], f["events"])
            for f in findings
        ]

    def test_endpoints_on_each_side(self):
        """Endpoints are listed per side; an unrouted request shows as such."""
        data = lines(
            event(endpoint="notes.show"),
            event(endpoint=None, path="/nowhere"),
        )

        finding = report_json(data)["findings"][0]

        assert ["(no route)", "notes.show"] == finding["origin_endpoints"]

    def test_names_kept_per_finding_are_bounded(self):
        """However many endpoints a finding sees, it keeps a bounded number."""
        data = lines(*(event(endpoint=f"view{n}") for n in range(500)))

        finding = report_json(data)["findings"][0]

        assert 500 == finding["events"]
        assert _findings.MAX_NAMES == len(finding["accessor_endpoints"])

    def test_json_schema(self):
        """The JSON object has the documented keys and types."""
        report = report_json(lines(event(), "x"))

        assert {"events", "skipped_lines", "findings"} == set(report)
        assert {
            "code",
            "kind",
            "subject",
            "origin_site",
            "access_site",
            "count",
            "events",
            "first_seen",
            "last_seen",
            "apps",
            "origin_endpoints",
            "accessor_endpoints",
            "grouped_by",
            "requests",
            "threads",
            "access_sites",
            "occurrences",
            "more_locations",
            "omitted_occurrences",
            "report",
        } == set(report["findings"][0])

    def test_unknown_rule_still_renders(self):
        """
        An event of a code this version does not know gets a plain report.
        """
        future = event(code="CG199")
        future["kind"] = "future-leak"

        finding = report_json(lines(future))["findings"][0]

        assert finding["report"].startswith("CG199 future-leak: ")
        assert (
            "  docs: https://flask-ctxguard.readthedocs.io/en/latest/rules/"
            "cg199.html"
        ) in finding["report"]


class TestText:
    def test_control_characters_are_escaped(self, tmp_path, capsys):
        """
        Request-derived text reaches the terminal with control characters
        escaped.
        """
        hostile = event(
            path="/x\x1b[2J\r\nCG999 fake finding\u202e",
            subject="g.\x07bell",
            endpoint="ep\x1b]0;title\x07",
        )
        hostile["message"] = "GET /x\x1b[2J\nfake line was used."
        log = tmp_path / "hostile.log"
        log.write_bytes(lines(hostile))

        status = _cli.main(["report", str(log)])

        out = capsys.readouterr().out
        assert 1 == status
        assert "\x1b" not in out
        assert "\x07" not in out
        assert "\r" not in out
        assert "\u202e" not in out
        assert "\\x1b[2J\\nfake line" in out
        assert "g.\\x07bell" in out
        assert "cross-request-access on 'g.\\x07bell': 1 time" in out
        assert "ep\\x1b]0;title\\x07" in out

    def test_table_fits_100_columns(self, tmp_path, capsys):
        """
        Long subjects and sites are clipped so the table fits 100 columns.
        """
        log = tmp_path / "long.log"
        log.write_bytes(
            lines(
                event(
                    subject="ContextVar " + "very_long_name_" * 6,
                    access_site="/srv/app/" + "deep/" * 30 + "views.py:1 in f",
                    repeats=123456,
                )
            )
        )

        _cli.main(["report", str(log)])

        out = capsys.readouterr().out.splitlines()
        table = out[2 : out.index("", 2)]
        assert 4 == len(table)
        assert all(len(line) <= 100 for line in table)
        assert table[3].endswith("views.py:1 in f")
        assert "..." in table[3]

    def test_details_of_a_finding(self, tmp_path, capsys):
        """
        Each finding lists when it was seen, its apps and both sides'
        endpoints.
        """
        log = tmp_path / "one.log"
        later = event(
            timestamp="2026-11-25T21:00:00Z", token="aaaa0001-7", repeats=2
        )
        log.write_bytes(lines(event(), later))

        _cli.main(["report", str(log)])

        out = capsys.readouterr().out
        assert (
            "[1] CG103 cross-request-access on 'request':"
            " 2 times in 2 events\n"
            "    grouped by: origin site (where the value was set or kept)\n"
            "    seen: 2026-11-25T20:52:53Z to 2026-11-25T21:00:00Z\n"
            "    apps: notes\n"
            "    origin endpoints: notes.show\n"
            "    accessor endpoints: notes.show\n"
            "    requests: notes.show (GET) x2\n"
            "    threads: worker-1 x2\n"
            "    access sites: app/views.py:12 in show x2\n"
            f"    read at: {log}:1, {log}:2\n"
            "    CG103 cross-request-access: 'request' of GET /notes"
            " was used.\n"
        ) in out

    def test_event_is_not_mutated(self):
        """
        Reading an event does not change it (the example is kept as read).
        """
        original = event(repeats=2)
        kept = copy.deepcopy(original)
        findings = _findings.Findings()

        findings.add(original)

        assert kept == original


class TestBenchmark:
    def test_throughput_benchmark_runs(self, capsys):
        """The report command's benchmark runs on a small log."""
        from benchmarks import report_logs

        status = report_logs.main(["--megabytes", "0.2", "--every", "3"])

        out = capsys.readouterr().out
        assert 0 == status
        assert "peak RSS" in out
        assert "json.loads alone" in out


class _Stdin:
    """A piped standard input holding *data*."""

    def __init__(self, data: bytes) -> None:
        self.buffer = io.BufferedReader(io.BytesIO(data))

    def isatty(self) -> bool:
        return False


class TestInProcess:
    @pytest.mark.parametrize("args", [["report"], ["report", "-"]])
    def test_piped_input(self, capsys, monkeypatch, args):
        """Without a file, or with '-', the report reads standard input."""
        monkeypatch.setattr(sys, "stdin", _Stdin(lines(event(), "x")))

        status = _cli.main([*args, "--format", "json"])

        assert 1 == status
        assert 1 == json.loads(capsys.readouterr().out)["skipped_lines"]

    def test_clean_input(self, capsys, monkeypatch):
        """Input without events exits 0 and says so."""
        monkeypatch.setattr(sys, "stdin", _Stdin(b"hello\n"))

        status = _cli.main(["report"])

        assert 0 == status
        assert (
            "No findings: 0 contamination events, 1 other line skipped.\n"
            == capsys.readouterr().out
        )

    def test_unreadable_files(self, capsys, tmp_path):
        """A missing file, a directory or a cut gzip each exit 2."""
        cut = tmp_path / "cut.gz"
        cut.write_bytes(gzip.compress(lines(event()) * 100)[:-30])
        for name in (tmp_path / "nope.log", tmp_path, cut):
            status = _cli.main(["report", str(name)], prog="ctxguard")

            err = capsys.readouterr().err
            assert 2 == status
            assert err.startswith(
                f"ctxguard report: error: cannot read {str(name)!r}: "
            )

    def test_broken_pipe_keeps_the_status(self, monkeypatch, tmp_path):
        """A reader that goes away ends the report quietly, status kept."""

        class Gone(io.StringIO):
            def write(self, text: str) -> int:
                raise BrokenPipeError

        log = tmp_path / "one.log"
        log.write_bytes(lines(event()))
        monkeypatch.setattr(sys, "stdout", Gone())

        assert 1 == _cli.main(["report", str(log)])

    @pytest.mark.parametrize(
        ("argv0", "prog"),
        [
            ("/srv/venv/lib/flask_ctxguard/__main__.py", "python -m"),
            ("/srv/venv/bin/ctxguard", "ctxguard"),
        ],
    )
    def test_program_name(self, capsys, monkeypatch, argv0, prog):
        """Messages name the command as it was run."""
        monkeypatch.setattr(sys, "argv", [argv0])

        _cli.main(["explain", "CG999"])

        assert capsys.readouterr().err.startswith(prog)


class TestFields:
    @pytest.mark.parametrize(
        ("stamp", "seen"),
        [
            ("2026-11-25T20:52:54", "2026-11-25T20:52:54Z"),
            ("2026-11-25T20:52:54z", "2026-11-25T20:52:54Z"),
            ("2026-11-25T21:52:54+01:00", "2026-11-25T20:52:54Z"),
            ("2026-11-25 20:52:54,5", "2026-11-25T20:52:54.500000Z"),
            ("2026-11-25T20:52:54.1234567Z", "2026-11-25T20:52:54.123456Z"),
            ("1795639974.25", "2026-11-25T20:52:54.250000Z"),
            (1795639974250, "2026-11-25T20:52:54.250000Z"),
            (1795639974250000000, "2026-11-25T20:52:54.250000Z"),
            ("yesterday", "2026-11-25T20:52:53.500000Z"),
            ([1, 2], "2026-11-25T20:52:53.500000Z"),
        ],
    )
    def test_timestamps(self, stamp, seen):
        """ISO times with or without zone and epoch numbers are understood."""
        data = event()
        data["timestamp"] = stamp

        assert seen == report_json(lines(data))["findings"][0]["first_seen"]

    def test_odd_fields(self):
        """
        Odd repeats, a non-object accessor and tokens without a dash count
        once each.
        """
        odd = [event(repeats=4), event(), event(), event()]
        odd[0]["repeats"] = True
        odd[1]["accessor"] = "thread-1"
        odd[2]["accessor"]["token"] = "nodash"
        odd[2]["origin"]["token"] = 7
        odd[3]["repeats"] = "8"

        finding = report_json(lines(*odd))["findings"][0]

        assert (4, 4) == (finding["count"], finding["events"])
        assert "(no request)" in finding["accessor_endpoints"]

    def test_broken_wrappers_and_prefixes(self):
        """A prefix or wrapper that holds no event is skipped."""
        data = lines(
            "INFO contamination {broken",
            {"log": "contamination, in plain text"},
            {"message": 42, "event": "contamination?"},
        )

        assert (0, 3) == (
            report_json(data)["events"],
            report_json(data)["skipped_lines"],
        )

    def test_stacks_keep_their_lines(self):
        """Logged stacks are escaped line by line, keeping their breaks."""
        data = event()
        data["access_stack"] = 'File "a.py", line 1\n  x = "\x1b[1m"\n'

        report = report_json(lines(data))["findings"][0]["report"]

        assert '    File "a.py", line 1\n      x = "\\x1b[1m"' in report
