"""
Context copies that outlive their request: work submitted through
``contextvars.copy_context().run`` (what ``loop.run_in_executor`` and many
task helpers do) by a view that returns at once reads the request after
the response was sent, in a copy of a context whose request has ended:
CG102 from the worker thread. The same work awaited before the view
returns, ``copy_current_request_context`` and ``asyncio.to_thread`` in an
async view are sanctioned and stay silent.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask, copy_current_request_context, request, session

from tests.helpers import TIMEOUT, reply, run_bare_and_guarded, wait


class ReportInTheBackground:
    """
    '/report' hands the report to a pool through a copy of its context
    and, unless '?wait=1', returns at once; the job reads 'request.args'
    when it runs (here: once the response is out).
    """

    def __init__(
        self, *, helper: str = "submit", reads: str = "request"
    ) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "reports"
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="jobs")
        self.response_sent = threading.Event()
        self.jobs: list[Future[str]] = []

        def job(awaited: bool) -> str:
            # Reads the request once: right away when awaited, else once
            # the response is out.
            if not awaited:
                wait(self.response_sent)
            if reads == "session":
                return f"report for {session['user']}"
            return f"report for {request.args['user']}"

        @app.get("/report")
        def report() -> str:
            session["user"] = request.args["user"]
            awaited = request.args.get("wait") == "1"
            context = contextvars.copy_context()
            if helper == "run_in_executor":
                loop = asyncio.new_event_loop()
                try:
                    future = loop.run_in_executor(
                        self.pool, context.run, job, awaited
                    )
                    if awaited:
                        loop.run_until_complete(future)
                        return future.result()
                    self.jobs.append(self.pool.submit(lambda: "queued"))
                finally:
                    loop.close()
                return "queued"
            submitted = self.pool.submit(context.run, job, awaited)
            self.jobs.append(submitted)
            if awaited:
                return submitted.result(TIMEOUT)
            return "queued"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        try:
            first = reply(client.get("/report?user=alice&wait=1"))
            second = reply(client.get("/report?user=bob"))
            self.response_sent.set()
            done = [job.result(TIMEOUT) for job in self.jobs]
        finally:
            self.pool.shutdown(wait=True)
        return [first, second, done]


class CopiedRequestContextThread:
    """
    The sanctioned way: 'copy_current_request_context' around a thread
    that outlives the request and reads 'request.args' and the session
    afterwards.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        app.secret_key = "notify"
        self.response_sent = threading.Event()
        self.threads: list[threading.Thread] = []
        self.seen: list[str] = []

        @app.get("/notify")
        def notify() -> str:
            session["user"] = request.args["user"]

            @copy_current_request_context
            def send() -> None:
                wait(self.response_sent)
                self.seen.append(request.args["user"])
                self.seen.append(session["user"])

            thread = threading.Thread(target=send, name="notifier")
            thread.start()
            self.threads.append(thread)
            return "sending"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        first = reply(client.get("/notify?user=carol"))
        self.response_sent.set()
        for thread in self.threads:
            thread.join(TIMEOUT)
        return [first, self.seen]


class AsyncViewToThread:
    """An async view awaits 'asyncio.to_thread' work that reads the
    request (the copy is used while the request is in flight)."""

    def __init__(self) -> None:
        self.app = app = Flask(__name__)

        def lookup() -> str:
            return f"profile of {request.args['user']}"

        @app.get("/profile")
        async def profile() -> str:
            return await asyncio.to_thread(lookup)

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.get("/profile?user=dave")),
            reply(client.get("/profile?user=erin")),
        ]


class TestRaceCopiedContext:
    @pytest.mark.parametrize(
        ("reads", "what"),
        [("request", "request.args"), ("session", "session")],
    )
    def test_race_copy_outlives_its_request(self, reads, what):
        """Work run through copy_context().run after its view returned,
        reading request.args or the session, is CG102 from the worker
        thread; the same work awaited by the view is silent."""
        run = run_bare_and_guarded(lambda: ReportInTheBackground(reads=reads))

        assert [
            (200, b"report for alice"),
            (200, b"queued"),
            ["report for alice", "report for bob"],
        ] == run.bare
        assert run.bare == run.guarded
        assert ["CG102"] == run.codes
        violation = run.violations[0]
        assert (reads, "/report", "jobs_0") == (
            violation.subject,
            violation.origin.path,
            violation.thread,
        )
        assert violation.accessor is None
        assert f"'{what}' of GET /report" in violation.message

    def test_race_run_in_executor_outlives_its_request(self):
        """loop.run_in_executor work that runs after its view returned is
        CG102; awaited, it is silent."""
        run = run_bare_and_guarded(
            lambda: ReportInTheBackground(helper="run_in_executor")
        )

        assert run.bare == run.guarded
        assert ["CG102"] == run.codes


class TestNoRaceCopiedContext:
    def test_norace_copy_current_request_context_outliving(self):
        """A copy_current_request_context thread that outlives its request
        is silent (the control: the copy_context().run test above)."""
        run = run_bare_and_guarded(CopiedRequestContextThread)

        assert [(200, b"sending"), ["carol", "carol"]] == run.bare
        assert run.bare == run.guarded
        assert [] == run.codes

    def test_norace_asyncio_to_thread_in_an_async_view(self):
        """asyncio.to_thread from an async view reads the request while it
        is in flight: silent; the control is a request kept past its end."""
        run = run_bare_and_guarded(AsyncViewToThread)

        assert [(200, b"profile of dave"), (200, b"profile of erin")] == (
            run.bare
        )
        assert run.bare == run.guarded
        assert [] == run.codes
        control = run_bare_and_guarded(ReportInTheBackground)
        assert ["CG102"] == control.codes
