"""
``report`` reads the logs people write: the same events rendered by
structlog's real renderers (JSON, console with and without colors,
key=value, logfmt), through the standard library's ``logging`` (the
``ProcessorFormatter`` and a plain format), and wrapped by a shipper, give
the same findings; a line that claims to be an event but cannot be read
exits 2 with its file and line.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from flask import Flask, request
from structlog.testing import capture_logs

from flask_ctxguard import CtxGuard, _cli
from flask_ctxguard._logs.text_formats import parse_key_values

#: The fields of a finding that must not depend on the log's format.
SAME = (
    "code",
    "kind",
    "subject",
    "grouped_by",
    "origin_site",
    "access_site",
    "count",
    "events",
    "apps",
    "origin_endpoints",
    "accessor_endpoints",
    "requests",
    "threads",
    "access_sites",
    "report",
)


def buggy_app() -> Flask:
    """
    An app with two bugs: '/login/<name>' binds a structlog value no one
    clears (CG106 for every later request), '/read' reads the request
    '/keep' kept (CG103).
    """
    app = Flask("formats")
    app.config.update(CTXGUARD_MODE="log", CTXGUARD_STACKS=True)
    CtxGuard(app)
    kept: list[Any] = []

    @app.get("/login/<name>")
    def login(name: str) -> str:
        structlog.contextvars.bind_contextvars(user_id=name)
        return name

    @app.get("/keep")
    def keep() -> str:
        kept.append(request._get_current_object())
        return ""

    @app.get("/read")
    def read() -> str:
        return kept[-1].path

    @app.get("/a")
    def a() -> str:
        return "a"

    return app


@pytest.fixture(name="events", scope="module")
def _events() -> list[dict[str, Any]]:
    """The guard's events of one run of the buggy app, as logged."""
    structlog.reset_defaults()
    app = buggy_app()
    client = app.test_client()
    try:
        with capture_logs() as logs:
            for path in (
                "/login/alice\u202e",
                "/a",
                "/keep",
                "/read",
                "/wp-admin",
                "/.env",
                "/read",
                "/a",
            ):
                client.get(path)
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
    found = [e for e in logs if e["event"] == "contamination"]
    assert {"CG103", "CG106"} == {e["code"] for e in found}
    return found


def replay(
    events: list[dict[str, Any]], configure: Callable[[], None]
) -> None:
    """Log *events* again through the structlog configuration given."""
    configure()
    logger = structlog.get_logger("flask_ctxguard")
    for event in events:
        fields = {
            k: v for k, v in event.items() if k not in ("event", "log_level")
        }
        logger.warning("contamination", **fields)


def _processors(renderer: Any) -> list[Any]:
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        renderer,
    ]


def direct(renderer: Any) -> Callable[[io.StringIO], None]:
    """structlog rendering with *renderer*, printing to the stream."""

    def configure(out: io.StringIO) -> None:
        structlog.configure(
            processors=_processors(renderer),
            logger_factory=structlog.PrintLoggerFactory(out),
        )

    return configure


def through_logging(
    renderer: Any, *, formatter: bool
) -> Callable[[io.StringIO], None]:
    """
    structlog through the standard library: *renderer* in a
    ProcessorFormatter (*formatter*), or as structlog's last processor with
    a plain '%(asctime)s %(levelname)s %(name)s %(message)s' format.
    """

    def configure(out: io.StringIO) -> None:
        handler = logging.StreamHandler(out)
        if formatter:
            handler.setFormatter(
                structlog.stdlib.ProcessorFormatter(
                    processors=[
                        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                        renderer,
                    ],
                )
            )
            last = structlog.stdlib.ProcessorFormatter.wrap_for_formatter
        else:
            handler.setFormatter(
                logging.Formatter(
                    "%(asctime)s %(levelname)s %(name)s %(message)s"
                )
            )
            last = renderer
        logger = logging.getLogger("flask_ctxguard")
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)
        structlog.configure(
            processors=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                last,
            ],
            logger_factory=structlog.stdlib.LoggerFactory(),
            wrapper_class=structlog.stdlib.BoundLogger,
        )

    return configure


def default_config(out: io.StringIO) -> None:
    """structlog as the README's quick start leaves it: no configure()."""
    structlog.reset_defaults()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(out))


def console(colors: bool) -> Any:
    return structlog.dev.ConsoleRenderer(colors=colors)


FORMATS: dict[str, Callable[[io.StringIO], None]] = {
    "console": direct(console(False)),
    "console-colors": direct(console(True)),
    "key-value": direct(structlog.processors.KeyValueRenderer()),
    "logfmt": direct(structlog.processors.LogfmtRenderer()),
    "default": default_config,
    "stdlib-formatter-kv": through_logging(
        structlog.processors.KeyValueRenderer(), formatter=True
    ),
    "stdlib-formatter-json": through_logging(
        structlog.processors.JSONRenderer(), formatter=True
    ),
    "stdlib-formatter-console": through_logging(
        console(False), formatter=True
    ),
    "stdlib-formatter-console-colors": through_logging(
        console(True), formatter=True
    ),
    "stdlib-plain-kv": through_logging(
        structlog.processors.KeyValueRenderer(), formatter=False
    ),
    "stdlib-plain-json": through_logging(
        structlog.processors.JSONRenderer(), formatter=False
    ),
    "stdlib-plain-console": through_logging(console(False), formatter=False),
}


def rendered(
    events: list[dict[str, Any]], configure: Callable[[io.StringIO], None]
) -> str:
    """*events* as the configuration writes them."""
    out = io.StringIO()
    try:
        replay(events, lambda: configure(out))
    finally:
        structlog.reset_defaults()
        logger = logging.getLogger("flask_ctxguard")
        logger.handlers[:] = []
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
    return out.getvalue()


def report(path: Path, capsys: Any) -> tuple[int, dict[str, Any]]:
    """The status and JSON report of ``report`` over *path*."""
    status = _cli.main(["report", "--format", "json", str(path)])
    return status, json.loads(capsys.readouterr().out)


def comparable(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The format-independent part of each finding."""
    return [{k: f[k] for k in SAME} for f in result["findings"]]


class TestFormats:
    @pytest.mark.parametrize("name", sorted(FORMATS))
    def test_same_findings_as_json(self, name, events, tmp_path, capsys):
        """
        The events rendered by a real renderer give the findings their
        JSON lines give.
        """
        json_log = tmp_path / "events.jsonl"
        json_log.write_text(
            rendered(events, direct(structlog.processors.JSONRenderer()))
        )
        other = tmp_path / f"events.{name}.log"
        text = rendered(events, FORMATS[name])
        other.write_text(text)

        json_status, expected = report(json_log, capsys)
        status, actual = report(other, capsys)

        assert (1, 1) == (json_status, status)
        assert len(events) == actual["events"]
        assert comparable(expected) == comparable(actual)
        assert all(f["first_seen"] for f in actual["findings"])

    def test_the_grouping_is_by_root_cause(self, events, tmp_path, capsys):
        """
        The bind line is one CG106 finding over every endpoint that held
        it, the unrouted paths folded as '(no route)'; the kept request
        is one CG103.
        """
        log = tmp_path / "events.jsonl"
        log.write_text(
            rendered(events, direct(structlog.processors.JSONRenderer()))
        )

        _, result = report(log, capsys)

        findings = {f["code"]: f for f in result["findings"]}
        assert ["CG103", "CG106"] == sorted(findings)
        cg106 = findings["CG106"]
        assert "(endpoint 'login')" == cg106["origin_site"] or (
            cg106["origin_site"].startswith("tests/test_report_formats.py:")
        )
        assert [
            ("(no route)", ["/.env", "/wp-admin"]),
            ("a", ["/a"]),
            ("keep", ["/keep"]),
            ("read", ["/read"]),
        ] == sorted((r["name"], sorted(r["paths"])) for r in cg106["requests"])

    def test_shipper_prefix_and_docker_wrapper_of_console_lines(
        self, events, tmp_path, capsys
    ):
        """
        Console lines after a shipper's prefix, or inside Docker's JSON
        wrapper, are read too.
        """
        # Without stacks: a shipper makes each physical line a record, and
        # an older structlog (23.1) writes a stack's line breaks raw.
        events = [
            {k: v for k, v in e.items() if not k.endswith("_stack")}
            for e in events
        ]
        text = rendered(events, direct(console(True)))
        prefixed = tmp_path / "prefixed.log"
        prefixed.write_text(
            "".join(
                f"2026-12-07T10:00:00Z web-1 app[123]: {line}\n"
                for line in text.splitlines()
            )
        )
        docker = tmp_path / "docker.log"
        docker.write_text(
            "".join(
                json.dumps({"log": line + "\n", "stream": "stderr"}) + "\n"
                for line in text.splitlines()
            )
        )
        plain = tmp_path / "plain.log"
        plain.write_text(text)

        _, expected = report(plain, capsys)
        for log in (prefixed, docker):
            status, actual = report(log, capsys)

            assert 1 == status
            assert comparable(expected) == comparable(actual)


class TestInterleaved:
    def test_two_processes_events_on_one_line_are_both_read(
        self, events, tmp_path, capsys
    ):
        """
        Two workers writing to one stream can leave their JSON events back
        to back on one line (structlog's PrintLogger writes the newline
        apart): every event is read, and the lines are counted as lines.
        """
        lines = rendered(
            events, direct(structlog.processors.JSONRenderer())
        ).splitlines()
        joined = tmp_path / "joined.log"
        # Pairs of events on one line, an empty line for each lost newline.
        pairs = [
            "".join(lines[n : n + 2]) + "\n\n" for n in range(0, len(lines), 2)
        ]
        joined.write_text("".join(pairs))
        plain = tmp_path / "plain.log"
        plain.write_text("\n".join(lines) + "\n")

        _, expected = report(plain, capsys)
        status, actual = report(joined, capsys)

        assert 1 == status
        assert len(events) == actual["events"]
        assert comparable(expected) == comparable(actual)
        assert len(pairs) == actual["skipped_lines"]

    def test_a_brace_pair_inside_a_value_is_one_event(self, tmp_path, capsys):
        """'}{' inside a string value does not split the event."""
        log = tmp_path / "one.log"
        log.write_text(
            '{"event": "contamination", "code": "CG102",'
            ' "subject": "request.args", "path": "/a}{b"}\n'
        )

        status, result = report(log, capsys)

        assert (1, 1) == (status, result["events"])

    def test_an_event_cut_after_another_exits_2(self, tmp_path, capsys):
        """An event cut short after a whole one, on one line, is an
        unreadable event: exit 2 with the line, not a silent miss."""
        log = tmp_path / "cut.log"
        log.write_text(
            '{"event": "contamination", "code": "CG102",'
            ' "subject": "request.args"}'
            '{"event": "contamination", "code": "CG106", "subject": "Cont\n'
        )

        status = _cli.main(["report", str(log)])

        assert 2 == status
        assert f"{log}:1: cannot read" in capsys.readouterr().err


class TestUnreadable:
    @pytest.mark.parametrize(
        "name", ["console", "key-value", "stdlib-plain-json"]
    )
    def test_cut_event_line_exits_2_with_file_and_line(
        self, name, events, tmp_path, capsys
    ):
        """
        An event line cut in the middle of a value makes the command exit
        2, naming the file and the line, with nothing on standard output.
        """
        lines = rendered(events, FORMATS[name]).splitlines()
        number = next(n for n, line in enumerate(lines) if "origin" in line)
        cut = lines[number]
        lines[number] = cut[: cut.index("origin") + 20]
        log = tmp_path / "cut.log"
        log.write_text("\n".join(["some other line", *lines]) + "\n")

        status = _cli.main(["report", str(log)], prog="ctxguard")

        captured = capsys.readouterr()
        assert 2 == status, cut
        assert "" == captured.out
        assert captured.err.startswith(
            f"ctxguard report: error: {log}:{number + 2}: cannot read this"
            " contamination event: "
        )

    def test_event_without_subject_exits_2(self, tmp_path, capsys):
        """A JSON event line missing its subject is not skipped: exit 2."""
        log = tmp_path / "broken.log"
        log.write_text('{"event": "contamination", "code": "CG106"}\n')

        status = _cli.main(["report", "-"])  # no input: usage error
        capsys.readouterr()
        status = _cli.main(["report", str(log)])

        assert 2 == status
        assert f"{log}:1: cannot read" in capsys.readouterr().err

    def test_other_lines_mentioning_contamination_are_skipped(
        self, tmp_path, capsys
    ):
        """Lines that are no event of the guard's stay skipped lines."""
        log = tmp_path / "other.log"
        log.write_text(
            "checking for contamination\n"
            "event='contamination-scan' rule=CG106\n"
            '{"event": "contamination", "note": "no code"}\n'
            "contamination check note='it's broken\n"
            '{"event": "scan", "message": "contamination note=\'x"}\n'
        )

        status = _cli.main(["report", str(log)])

        assert 0 == status
        assert (
            "No findings: 0 contamination events, 5 other lines skipped.\n"
            == capsys.readouterr().out
        )


class TestKeyValues:
    def test_values_are_python_literals_or_bare_words(self):
        """Reprs, dicts, numbers, None and bare words are read back."""
        line = (
            "2026-12-07 10:00:00 [warning  ] contamination   [app]"
            " code=CG106 subject='ContextVar x' origin={'token': 'a-1',"
            " 'endpoint': None, 'path': '/a b'} repeats=2 rate=0.5"
            " docs=https://x.example/rules/cg106.html"
        )

        assert {
            "event": "contamination",
            "code": "CG106",
            "subject": "ContextVar x",
            "origin": {"token": "a-1", "endpoint": None, "path": "/a b"},
            "repeats": 2,
            "rate": 0.5,
            "docs": "https://x.example/rules/cg106.html",
            "timestamp": "2026-12-07 10:00:00",
        } == parse_key_values(line)

    def test_unquoted_text_with_spaces_stays_whole(self):
        """An older console renderer's unquoted text keeps its spaces."""
        line = "contamination code=CG106 subject=ContextVar x app=demo"

        assert {
            "event": "contamination",
            "code": "CG106",
            "subject": "ContextVar x",
            "app": "demo",
        } == parse_key_values(line)
