"""
The audit trail: who did what to which note, written off the request path.

Views call `AuditTrail.record`, which only queues the entry; one background
thread writes queued entries to the ``audit_log`` table in batches, every
``AUDIT_FLUSH_INTERVAL`` seconds (or only on `AuditTrail.flush` when it is
`None`, as in tests). The writer runs outside any request, so an entry must
carry plain values: `Source.of` copies them out of the request.
"""

from __future__ import annotations

import atexit
import dataclasses
import queue
import threading
from typing import Any, Protocol

import structlog
from flask import Flask, Request, current_app

from .db import connect

__all__ = ["AuditTrail", "Source", "audit_trail", "init_app"]

log = structlog.get_logger("example_app.audit")


class HasClientInfo(Protocol):
    """Where an action came from: the client's address and agent."""

    @property
    def remote_addr(self) -> str | None: ...

    @property
    def user_agent(self) -> Any: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """The client of a request, copied out of it."""

    remote_addr: str | None
    user_agent: str

    @classmethod
    def of(cls, request: Request) -> Source:
        """Copy the client's address and agent out of *request*."""
        return cls(request.remote_addr, request.user_agent.string)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """One queued audit entry."""

    event: str
    tenant_id: int | None
    actor_id: int | None
    note_id: int | None
    source: HasClientInfo


class AuditTrail:
    """
    A queue of audit entries and the thread that writes them.

    Args:
        database: Path of the SQLite database.
        interval: Seconds between batch writes, or `None` to write only on
            `flush`.
    """

    def __init__(self, database: str, interval: float | None) -> None:
        self.database = database
        self.interval = interval
        self._queue: queue.SimpleQueue[Entry | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(
        self,
        event: str,
        *,
        source: HasClientInfo,
        tenant_id: int | None = None,
        actor_id: int | None = None,
        note_id: int | None = None,
    ) -> None:
        """Queue an entry; the writer thread stores it soon."""
        self._start()
        self._queue.put(Entry(event, tenant_id, actor_id, note_id, source))

    def flush(self, timeout: float = 10) -> bool:
        """
        Write every entry queued so far; whether that finished within
        *timeout* seconds.
        """
        if self._thread is None:
            return True
        done = threading.Event()
        self._queue.put(done)
        self._wake.set()
        return done.wait(timeout)

    def close(self, timeout: float = 10) -> None:
        """Write what is queued and stop the writer thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        atexit.unregister(self.close)
        self._queue.put(None)
        self._wake.set()
        thread.join(timeout)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="audit-writer", daemon=True
                )
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        db = connect(self.database)
        try:
            while True:
                self._wake.wait(self.interval)
                self._wake.clear()
                if not self._write_batch(db):
                    return
        finally:
            db.close()

    def _write_batch(self, db: Any) -> bool:
        """Write what is queued; whether the writer should go on."""
        waiting: list[threading.Event] = []
        go_on = True
        written = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                go_on = False
            elif isinstance(item, threading.Event):
                waiting.append(item)
            else:
                written += self._write(db, item)
        if written:
            db.commit()
            log.debug("audit.written", entries=written)
        for done in waiting:
            done.set()
        return go_on

    def _write(self, db: Any, entry: Entry) -> int:
        try:
            source = entry.source
            address, agent = source.remote_addr, str(source.user_agent)
            db.execute(
                "INSERT INTO audit_log (event, tenant_id, actor_id, note_id,"
                " remote_addr, user_agent) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    entry.event,
                    entry.tenant_id,
                    entry.actor_id,
                    entry.note_id,
                    address,
                    agent,
                ),
            )
        except Exception:
            # One bad entry must not stop the audit trail.
            log.exception("audit.write_failed", audit_event=entry.event)
            return 0
        return 1


def audit_trail() -> AuditTrail:
    """The current app's audit trail."""
    return current_app.extensions["audit"]  # type: ignore[no-any-return]


def init_app(app: Flask) -> None:
    """Give *app* an audit trail; its thread starts with the first entry."""
    app.extensions["audit"] = AuditTrail(
        app.config["DATABASE"], app.config["AUDIT_FLUSH_INTERVAL"]
    )
