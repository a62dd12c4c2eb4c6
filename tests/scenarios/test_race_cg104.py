"""
CG104 cross-thread-access: programs in which a thread with no context of an
in-flight request uses that request's request or ``g`` object.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask, g, has_request_context, request

from tests.helpers import (
    TIMEOUT,
    Worker,
    drive_in_raise_mode,
    http_get,
    last_user_frame,
    line_of,
    reply,
    run_bare_and_guarded,
    serve,
    wait,
)


class MailWorkerReadsTheActiveRequest:
    """
    A background mail worker addresses each order's receipt to the user of
    "the active request" (a module global): bob's receipt is mailed to
    alice, whose request is in flight when the worker runs.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.active: dict[str, Any] = {}
        self.outbox: queue.Queue[str] = queue.Queue()
        self.sent: list[tuple[str, str]] = []
        self.alice_in_flight = threading.Event()
        self.mail_sent = threading.Event()

        @app.before_request
        def track() -> None:
            self.active["request"] = request._get_current_object()  # type: ignore[attr-defined]

        @app.post("/orders/<order>")
        def place_order(order: str) -> str:
            self.outbox.put(order)
            return f"order {order} placed"

        @app.get("/catalog")
        def catalog() -> str:
            self.alice_in_flight.set()
            wait(self.mail_sent)
            return "catalog"

    def mail_worker(self) -> None:
        """Runs outside any request, in a thread of its own."""
        order = self.outbox.get(timeout=TIMEOUT)
        wait(self.alice_in_flight)
        try:
            recipient = self.active["request"].headers["X-User"]  # <- CG104
            self.sent.append((order, recipient))
        finally:
            self.mail_sent.set()

    def drive(self) -> list[Any]:
        with serve(self.app) as port:
            worker = Worker(self.mail_worker, name="mail-worker")
            worker.start()
            ordered = http_get(
                port, "/orders/42", {"X-User": "bob"}, method="POST"
            )
            browsed = http_get(port, "/catalog", {"X-User": "alice"})
            worker.outcome()
        return [ordered, browsed, self.sent]


class PdfRenderedOnAPool:
    """
    A view renders a PDF on a module-level thread pool and hands the pool
    its request object instead of the values the renderer needs.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="pdf")

        def render(req: Any) -> str:
            title = req.args["title"]  # <- CG104 args
            return f"%PDF {title} (request context: {has_request_context()})"

        @app.get("/invoice.pdf")
        def invoice() -> str:
            req = request._get_current_object()  # type: ignore[attr-defined]
            return self.pool.submit(render, req).result(timeout=TIMEOUT)

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        try:
            return [reply(client.get("/invoice.pdf?title=Invoice+7"))]
        finally:
            self.pool.shutdown(wait=True)


class ImpersonationAuditReadsG:
    """
    An admin's impersonation view hands its 'g' to an audit-log thread,
    then switches 'g.user' to the impersonated user: the slower audit
    thread records the wrong actor.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        self.switched = threading.Event()

        def audit(request_g: Any, target: str) -> str:
            wait(self.switched)  # the audit writer is slower than the view
            return f"{request_g.user} impersonated {target}"  # <- CG104 g

        @app.post("/impersonate/<target>")
        def impersonate(target: str) -> str:
            g.user = request.headers["X-User"]
            request_g = g._get_current_object()  # type: ignore[attr-defined]
            auditor = Worker(lambda: audit(request_g, target), name="audit")
            auditor.start()
            g.user = target  # from here on, the request acts as the target
            self.switched.set()
            return f"acting as {g.user}; audit: {auditor.outcome()}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(
                client.post("/impersonate/carol", headers={"X-User": "root"})
            )
        ]


class MailLanguageFromTheRequest:
    """
    A signup view hands its request to a confirmation-mail thread that
    picks the mail's language from the request's 'Accept-Language'.
    """

    def __init__(self) -> None:
        self.app = app = Flask(__name__)
        subjects = {"en": "Welcome", "fr": "Bienvenue"}

        def confirmation(req: Any) -> str:
            language = req.accept_languages.best_match(subjects, "en")
            return subjects[language]

        @app.post("/signup")
        def signup() -> str:
            req = request._get_current_object()  # type: ignore[attr-defined]
            mailer = Worker(lambda: confirmation(req), name="mailer")
            mailer.start()
            return f"mail sent: {mailer.outcome()}"

    def drive(self) -> list[Any]:
        client = self.app.test_client()
        return [
            reply(client.post("/signup", headers={"Accept-Language": "fr"}))
        ]


class TestRaceCG104:
    def test_race_worker_mails_bobs_receipt_to_alice(self):
        """A background thread reading an in-flight request it has no
        context of is CG104; on plain Flask bob's receipt goes to alice."""
        run = run_bare_and_guarded(MailWorkerReadsTheActiveRequest)

        assert [
            (200, b"order 42 placed"),
            (200, b"catalog"),
            [("42", "alice")],
        ] == run.bare
        assert run.bare == run.guarded
        assert ["CG104"] == run.codes
        violation = run.violations[0]
        assert ("request", "/catalog", None, "mail-worker") == (
            violation.subject,
            violation.origin.path,
            violation.accessor,
            violation.thread,
        )

    def test_race_pool_reads_the_request(self):
        """A pool thread reading the in-flight request handed to it is
        CG104; on plain Flask it reads it with no request context."""
        run = run_bare_and_guarded(PdfRenderedOnAPool)

        assert [(200, b"%PDF Invoice 7 (request context: False)")] == (
            run.bare
        )
        assert run.bare == run.guarded
        assert ["CG104"] == run.codes
        assert "request" == run.violations[0].subject
        assert run.violations[0].thread.startswith("pdf")

    def test_race_audit_thread_reads_the_request_g(self):
        """A thread reading the 'g' of an in-flight request is CG104; on
        plain Flask the audit log names the wrong actor."""
        run = run_bare_and_guarded(ImpersonationAuditReadsG)

        assert [
            (200, b"acting as carol; audit: carol impersonated carol")
        ] == run.bare
        assert run.bare == run.guarded
        assert ["CG104"] == run.codes
        assert ("g", "audit") == (
            run.violations[0].subject,
            run.violations[0].thread,
        )

    def test_race_thread_reads_the_accept_language(self):
        """A thread reading the 'Accept-Language' of an in-flight request
        through 'request.accept_languages' is CG104."""
        run = run_bare_and_guarded(MailLanguageFromTheRequest)

        assert [(200, b"mail sent: Bienvenue")] == run.bare
        assert run.bare == run.guarded
        assert run.codes
        assert {("CG104", "request", "mailer")} == {
            (v.code, v.subject, v.thread) for v in run.violations
        }


class TestRaceCG104RaiseMode:
    def test_race_raises_in_the_pool_thread(self):
        """In raise mode the pool thread's read raises there and reaches
        the view through the future; the traceback ends at that line."""
        program = PdfRenderedOnAPool()
        program.app.testing = True
        error = drive_in_raise_mode(program)

        assert "CG104" == error.violation.code
        assert (line_of(__file__, "# <- CG104 args"), "render") == (
            last_user_frame(error.__traceback__, __file__)
        )

    def test_race_raises_in_the_mail_worker(self):
        """In raise mode the mail worker's read of alice's request raises
        in the worker, at that line; alice's request is unaffected."""
        program = MailWorkerReadsTheActiveRequest()
        error = drive_in_raise_mode(program)

        assert "CG104" == error.violation.code
        assert (line_of(__file__, "# <- CG104"), "mail_worker") == (
            last_user_frame(error.__traceback__, __file__)
        )
