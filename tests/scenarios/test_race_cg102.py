"""
CG102 stale-access: programs that use a request's own request, session or
``g`` object after the request ended, outside any request.
"""

from __future__ import annotations

import io
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, g, request, session

from flask_ctxguard import ContaminationError
from tests.helpers import (
    Worker,
    drive_in_raise_mode,
    guarded,
    isolated,
    last_user_frame,
    line_of,
    reply,
    run_bare_and_guarded,
    wait,
)


class SessionUpdatedWhileStreaming:
    """
    A download view counts downloads in the session from inside its
    streamed generator, without 'stream_with_context': the session was
    already saved, so every update is silently lost.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "scenario"

        @app.get("/download")
        def download() -> Any:
            store = session._get_current_object()  # type: ignore[attr-defined]

            def generate() -> Iterator[str]:
                yield "report.csv\n"
                store["downloads"] = store.get("downloads", 0) + 1

            return app.response_class(generate())

        @app.get("/downloads")
        def downloads() -> str:
            return str(session.get("downloads", 0))

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.get("/download")),
            reply(client.get("/download")),
            reply(client.get("/downloads")),
        ]


class LateUploadScanner:
    """
    An upload view hands its request to a virus-scan thread that gets to it
    after the response went out: by then Flask closed the uploaded file.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.response_sent = threading.Event()
        self.scanners: list[Worker] = []

        def scan(upload_request: Any) -> str:
            wait(self.response_sent)
            try:
                upload = upload_request.files["doc"]  # <- CG102 files
                return f"scanned {len(upload.read())} bytes"
            except ValueError as exc:
                return f"scan failed: {exc}"

        @app.post("/upload")
        def upload() -> str:
            name = request.files["doc"].filename
            req = request._get_current_object()  # type: ignore[attr-defined]
            scanner = Worker(lambda: scan(req), name="scanner")
            scanner.start()
            self.scanners.append(scanner)
            return f"{name} queued for scanning"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        response = reply(
            client.post(
                "/upload",
                data={"doc": (io.BytesIO(b"%PDF-1.7 ..."), "cv.pdf")},
            )
        )
        self.response_sent.set()
        return [response, [scanner.outcome() for scanner in self.scanners]]


class ReceiptJobKeepsG:
    """
    An order view queues a receipt job that keeps the request's 'g' for its
    database connection; the job runs after the request, when teardown has
    closed that connection.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.jobs: list[Callable[[], str]] = []

        @app.before_request
        def open_db() -> None:
            g.db = sqlite3.connect(":memory:", check_same_thread=False)

        @app.teardown_appcontext
        def close_db(exc: BaseException | None) -> None:
            db = g.pop("db", None)
            if db is not None:
                db.close()

        @app.post("/orders/<int:order>")
        def place_order(order: int) -> str:
            g.order = order
            request_g = g._get_current_object()  # type: ignore[attr-defined]
            self.jobs.append(lambda: send_receipt(request_g))
            return f"order {order} placed"

        def send_receipt(request_g: Any) -> str:
            db = getattr(request_g, "db", None)  # <- CG102 g
            if db is None:
                return f"receipt {request_g.order} failed: no connection"
            (total,) = db.execute("select 7 * 100").fetchone()
            return f"receipt {request_g.order}: {total}"

    def run_jobs(self) -> list[str]:
        """The job runner: after the response, outside any request."""
        return [job() for job in self.jobs]

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [reply(client.post("/orders/7")), self.run_jobs()]


class TestRaceCG102:
    def test_race_session_written_after_the_response(self):
        """A session kept by a streamed generator and updated after the
        request ended is CG102; its updates are lost."""
        run = run_bare_and_guarded(SessionUpdatedWhileStreaming)

        assert [
            (200, b"report.csv\n"),
            (200, b"report.csv\n"),
            (200, b"0"),
        ] == run.bare
        assert run.bare == run.guarded
        assert run.codes
        assert {"CG102"} == set(run.codes)
        assert {("session", "/download", None)} == {
            (v.subject, v.origin.path, v.accessor) for v in run.violations
        }

    def test_race_late_thread_reads_a_closed_upload(self):
        """A thread reading the uploaded file of a request that ended is
        CG102; on plain Flask the file is already closed."""
        run = run_bare_and_guarded(LateUploadScanner)

        assert [
            (200, b"cv.pdf queued for scanning"),
            ["scan failed: I/O operation on closed file."],
        ] == run.bare
        assert run.bare == run.guarded
        assert ["CG102"] == run.codes
        violation = run.violations[0]
        assert ("request", "/upload", "scanner") == (
            violation.subject,
            violation.origin.path,
            violation.thread,
        )

    def test_race_deferred_job_uses_the_request_g(self):
        """A job using the 'g' of a request that ended is CG102; on plain
        Flask its connection was already closed and removed by teardown."""
        run = run_bare_and_guarded(ReceiptJobKeepsG)

        assert [
            (200, b"order 7 placed"),
            ["receipt 7 failed: no connection"],
        ] == run.bare
        assert run.bare == run.guarded
        # Both reads of the stale 'g': its 'db', then its 'order'.
        assert ["CG102", "CG102"] == run.codes
        assert {("g", "/orders/7", None)} == {
            (v.subject, v.origin.path, v.accessor) for v in run.violations
        }


class TestRaceCG102RaiseMode:
    def test_race_raises_in_the_job_at_the_stale_read(self):
        """In raise mode the job's read of the stale 'g' raises, and the
        traceback ends at that line."""
        program = ReceiptJobKeepsG()
        guarded(program, CTXGUARD_MODE="raise")
        client = program.app.test_client()

        placed = isolated(lambda: reply(client.post("/orders/7")))
        with pytest.raises(ContaminationError) as excinfo:
            isolated(program.run_jobs)

        assert (200, b"order 7 placed") == placed
        assert "CG102" == excinfo.value.violation.code
        assert (line_of(__file__, "# <- CG102 g"), "send_receipt") == (
            last_user_frame(excinfo.value.__traceback__, __file__)
        )

    def test_race_raises_in_the_late_thread(self):
        """In raise mode the late thread's read of the request raises in
        that thread, at that line."""
        program = LateUploadScanner()
        error = drive_in_raise_mode(program)

        assert "CG102" == error.violation.code
        assert (line_of(__file__, "# <- CG102 files"), "scan") == (
            last_user_frame(error.__traceback__, __file__)
        )
