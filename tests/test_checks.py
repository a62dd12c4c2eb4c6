"""
The checks on a request's own objects (request, session and 'g'): their
use after the request (CG102), by another request (CG103) and by another
thread (CG104); the sanctioned patterns that stay silent; when a request
is retired; and the generated request classes.
"""

from __future__ import annotations

import inspect
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import (
    Flask,
    after_this_request,
    copy_current_request_context,
    g,
    request,
    session,
    stream_with_context,
)

from flask_ctxguard import ContaminationError, CtxGuard
from flask_ctxguard._guard import lifecycle as _lifecycle
from flask_ctxguard._guard.g_escape import escaped_g_class
from flask_ctxguard._guard.request import (
    CHECKED_REQUEST_ATTRIBUTES,
)
from tests.helpers import (
    KEPT,
    add_keep_route,
    codes,
    kept_request_control,
)


@pytest.fixture(name="app")
def _app():
    app = Flask("objects")
    app.config.update(SECRET_KEY="k", CTXGUARD_MODE="log")

    add_keep_route(app)
    return app


class TestStaleAccess:
    """CG102: an object used after its request ended, outside requests."""

    def test_request(self, app):
        """A kept request read after the request is CG102."""
        guard = CtxGuard(app)
        app.test_client().get("/keep/alice?page=2")

        value = KEPT[0][0].args["page"]

        assert "2" == value
        violation = guard.violations[0]
        assert "CG102" == violation.code
        assert "request" == violation.subject
        assert "'request.args'" in violation.message
        assert "/keep/alice" == violation.origin.path
        assert violation.accessor is None
        assert violation.access_site.endswith("in test_request")
        assert violation.origin_site.endswith("in keep")

    def test_every_attribute_after_the_request(self, app):
        """After the request its plain attributes are checked too, environ
        included (not Flask's own read of it as it pops the context)."""
        guard = CtxGuard(app)
        app.test_client().get("/keep/alice")
        kept = KEPT[0][0]

        _ = (kept.path, kept.method, kept.url_rule, kept.environ)

        assert [
            "request.path",
            "request.method",
            "request.url_rule",
            "request.environ",
        ] == [v.message.split("'")[1] for v in guard.violations]

    def test_session(self, app):
        """A kept session read after the request is CG102."""
        guard = CtxGuard(app)
        app.test_client().get("/keep/alice")

        assert "alice" == KEPT[0][1]["user"]
        assert ["session"] == [v.subject for v in guard.violations]
        assert ["CG102"] == codes(guard)

    def test_g(self, app):
        """A kept g read after the request is CG102."""
        guard = CtxGuard(app)
        app.test_client().get("/keep/alice")

        assert "alice" == KEPT[0][2].user
        assert ["g"] == [v.subject for v in guard.violations]
        assert ["CG102"] == codes(guard)

    def test_late_thread(self, app):
        """A thread that reads the request after the response: CG102."""
        done = threading.Event()
        seen = []

        @app.route("/audit")
        def audit():
            kept = request._get_current_object()

            def later():
                done.wait(timeout=10)
                seen.append(kept.path)

            threading.Thread(target=later, name="audit").start()
            return "ok"

        guard = CtxGuard(app)
        app.test_client().get("/audit")
        done.set()
        for thread in threading.enumerate():
            if thread.name == "audit":
                thread.join(timeout=10)

        assert ["/audit"] == seen
        assert ["CG102"] == codes(guard)
        assert "thread 'audit'" in guard.violations[0].message

    def test_raise_mode_raises_at_the_access(self, app):
        """Raise mode raises ContaminationError at the user's line."""
        app.config["CTXGUARD_MODE"] = "raise"
        CtxGuard(app)
        app.test_client().get("/keep/alice")

        with pytest.raises(ContaminationError) as excinfo:
            _ = KEPT[0][0].args

        assert "CG102" == excinfo.value.violation.code
        assert "test_raise_mode_raises_at_the_access" == (
            excinfo.traceback[0].name
        )


class TestCrossRequestAccess:
    """CG103: an object of request A used while B is handled."""

    def test_after_a_ended(self, app):
        """A module-level "current request" read by the next request."""

        @app.route("/last")
        def last():
            return KEPT[-1][0].path

        guard = CtxGuard(app)
        client = app.test_client()
        client.get("/keep/alice")
        response = client.get("/last")

        assert b"/keep/alice" == response.data
        violation = guard.violations[0]
        assert "CG103" == violation.code
        assert "/last" == violation.accessor.path
        assert "after that request ended" in violation.message

    def test_while_a_is_in_flight(self, app):
        """Request B reads request A's object while A is still running."""
        stored = threading.Event()
        read = threading.Event()

        @app.route("/slow")
        def slow():
            KEPT.append((request._get_current_object(),))
            stored.set()
            read.wait(timeout=10)
            return "slow"

        @app.route("/peek")
        def peek():
            stored.wait(timeout=10)
            value = KEPT[-1][0].args.get("q", "")
            read.set()
            return value

        guard = CtxGuard(app)
        client = app.test_client()
        with ThreadPoolExecutor(2) as pool:
            slow_response = pool.submit(client.get, "/slow?q=secret")
            peek_response = pool.submit(client.get, "/peek")
            assert b"secret" == peek_response.result(timeout=10).data
            assert b"slow" == slow_response.result(timeout=10).data

        violation = guard.violations[0]
        assert "CG103" == violation.code
        assert "/slow" == violation.origin.path
        assert "/peek" == violation.accessor.path
        assert "still in flight" in violation.message


class TestCrossThreadAccess:
    """CG104: an in-flight request's object used from another thread."""

    def test_thread_pool_helper(self, app):
        """A pool worker handed the raw request during the view: CG104."""

        @app.route("/search")
        def search():
            raw = request._get_current_object()
            with ThreadPoolExecutor(1) as pool:
                return pool.submit(lambda: raw.args["q"]).result(timeout=10)

        guard = CtxGuard(app)
        response = app.test_client().get("/search?q=shoes")

        assert b"shoes" == response.data
        violation = guard.violations[0]
        assert "CG104" == violation.code
        assert violation.accessor is None
        assert "while it was in flight" in violation.message

    def test_session_and_g_from_a_thread(self, app):
        """The session and g of an in-flight request, read from another
        thread, are CG104 too (g once the request changed it while the
        thread held it: until then the thread reads what the request
        sees, see test_g_reads)."""

        @app.route("/both")
        def both():
            session["user"] = "alice"
            g.user = "anonymous"
            raw_session = session._get_current_object()
            raw_g = g._get_current_object()
            g.user = "alice"
            out = []
            thread = threading.Thread(
                target=lambda: out.append((raw_session["user"], raw_g.user))
            )
            thread.start()
            thread.join(timeout=10)
            return "|".join(out[0])

        guard = CtxGuard(app)
        response = app.test_client().get("/both")

        assert b"alice|alice" == response.data
        assert [("CG104", "session"), ("CG104", "g")] == [
            (v.code, v.subject) for v in guard.violations
        ]


class TestSanctioned:
    """The sanctioned patterns of docs/rules.md: never reported."""

    def test_copy_current_request_context(self, app):
        """A thread running with a copy of the request context is clean,
        also when it outlives the request."""
        release = threading.Event()
        seen = []

        @app.route("/work")
        def work():
            @copy_current_request_context
            def job():
                release.wait(timeout=10)
                seen.append(
                    (request.args["n"], session.get("user"), g.get("x"))
                )

            session["user"] = "alice"
            threading.Thread(target=job, name="job").start()
            return "started"

        guard = CtxGuard(app)
        response = app.test_client().get("/work?n=1")
        release.set()
        for thread in threading.enumerate():
            if thread.name == "job":
                thread.join(timeout=10)

        assert b"started" == response.data
        assert [("1", "alice", None)] == seen
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_stream_with_context(self, app):
        """A streamed generator wrapped in stream_with_context is clean."""

        @app.route("/stream")
        def stream():
            def rows():
                yield request.args["a"]
                yield session.get("user", "-")
                yield request.path

            return app.response_class(stream_with_context(rows()))

        guard = CtxGuard(app)
        response = app.test_client().get("/stream?a=x")

        assert b"x-/stream" == response.data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_preserved_context(self, app):
        """The test client's `with client:` preserved context is clean."""
        guard = CtxGuard(app)
        client = app.test_client()

        with client:
            client.get("/keep/alice?x=1")
            assert "1" == request.args["x"]
            assert "alice" == session["user"]
            assert "alice" == g.user

        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_handlers(self, app):
        """after_this_request, after_request and teardown handlers are
        clean."""
        seen = []

        @app.after_request
        def after(response):
            seen.append(request.path)
            return response

        @app.teardown_request
        def teardown(exc):
            seen.append(request.args.get("q"))
            seen.append(session.get("user"))

        @app.teardown_appcontext
        def teardown_app(exc):
            seen.append(g.get("user"))

        @app.route("/handled")
        def handled():
            @after_this_request
            def later(response):
                seen.append(request.method)
                return response

            session["user"] = "alice"
            g.user = "alice"
            return "ok"

        guard = CtxGuard(app)
        app.test_client().get("/handled?q=1")

        assert ["GET", "/handled", "1", "alice", "alice"] == seen
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_nested_app_context(self, app):
        """A nested app context inside a view is clean."""

        @app.route("/nested")
        def nested():
            g.outer = 1
            with app.app_context():
                g.inner = 2
            return str(g.outer) + request.path

        guard = CtxGuard(app)
        response = app.test_client().get("/nested")

        assert b"1/nested" == response.data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_thread_with_its_own_app_context(self, app):
        """A background thread with its own app context is clean."""
        seen = []

        @app.route("/background")
        def background():
            def job():
                with app.app_context():
                    g.job = "mine"
                    seen.append(g.job)

            thread = threading.Thread(target=job)
            thread.start()
            thread.join(timeout=10)
            return "ok"

        guard = CtxGuard(app)
        app.test_client().get("/background")

        assert ["mine"] == seen
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_async_view(self, app):
        """An async view run by asgiref on another thread is clean."""

        @app.route("/async")
        async def view():
            session["user"] = "alice"
            g.user = "alice"
            return request.args["a"] + session["user"] + g.user

        guard = CtxGuard(app)
        response = app.test_client().get("/async?a=1")

        assert b"1alicealice" == response.data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_many_ordinary_requests(self, app):
        """Ordinary requests touching everything are clean."""

        @app.route("/everything", methods=["POST"])
        def everything():
            session["n"] = session.get("n", 0) + 1
            g.user = request.form["user"]
            return (
                f"{request.method} {request.path} {request.args.get('a')}"
                f" {request.headers.get('X-A')} {request.cookies.get('c')}"
                f" {g.user} {session['n']} {request.get_json(silent=True)}"
            )

        guard = CtxGuard(app)
        client = app.test_client()
        client.set_cookie("c", "1")
        for _ in range(3):
            response = client.post(
                "/everything?a=1", data={"user": "u"}, headers={"X-A": "2"}
            )

        assert b"POST /everything 1 2 1 u 3 None" == response.data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)


class TestRetiring:
    """A request's class is switched when it ends only if it outlives its
    context: the switch costs about as much as everything else the guard
    does per request."""

    @pytest.fixture(autouse=True)
    def _use(self, app):
        @app.route("/use/<name>")
        def use(name):
            session["user"] = name
            g.user = name
            return f"{request.path} {request.args} {session['user']}"

    def test_a_request_freed_with_its_context_is_not_switched(
        self, app, switches
    ):
        """Ordinary requests end and are freed without a class switch."""
        guard = CtxGuard(app)
        client = app.test_client()

        for _ in range(3):
            client.get("/use/alice")
        with client:
            client.get("/use/bob")
        with app.test_request_context("/"):
            pass

        assert [] == switches
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_a_kept_request_is_switched(self, app, switches, escapes):
        """A request something still holds is switched when it ends, and
        so is its g, to its escaped class."""
        CtxGuard(app)

        app.test_client().get("/keep/alice")

        assert [type(KEPT[0][0])] == switches
        assert [escaped_g_class(app.app_ctx_globals_class)] == escapes

    @pytest.mark.parametrize("keep", [False, True])
    def test_after_a_copied_context_was_popped(self, app, switches, keep):
        """A copy of the context popped in a thread unlinks the request from
        its environ: one reference less, which must not hide a kept one."""

        @app.route("/copied")
        def copied():
            @copy_current_request_context
            def work():
                return request.path

            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
            if keep:
                KEPT.append((request._get_current_object(),))
            return "ok"

        guard = CtxGuard(app)
        app.test_client().get("/copied")

        assert [] == guard.violations
        assert ([type(KEPT[0][0])] if keep else []) == switches
        assert _lifecycle.REFS_AT_CLOSE == _lifecycle._refs_at_close
        assert ["CG104"] == kept_request_control(app, guard)

    def test_the_reference_count_is_learnt_downwards(
        self, app, switches, monkeypatch
    ):
        """A count too high is lowered by the first ordinary request, after
        which kept requests are switched again."""
        monkeypatch.setattr(_lifecycle, "_refs_at_close", 50)
        guard = CtxGuard(app)
        client = app.test_client()

        client.get("/keep/alice")
        client.get("/use/bob")
        client.get("/keep/carol")

        assert 50 > _lifecycle._refs_at_close
        too_early, switched = KEPT[0][0], KEPT[1][0]
        assert [type(switched)] == switches
        assert type(switched) is not type(too_early)
        assert [] == guard.violations
        # Not switched, its data attributes are still checked; its plain
        # ones are not.
        assert "/keep/alice" == too_early.path
        assert {} == too_early.args.to_dict()
        assert ["'request.args'"] == [
            v.message.split(" of ")[0] for v in guard.violations
        ]


_EVERY_HEADER = {
    "Accept": "text/html",
    "Accept-Charset": "utf-8",
    "Accept-Encoding": "gzip",
    "Accept-Language": "en",
    "Access-Control-Request-Headers": "X-A",
    "Access-Control-Request-Method": "PUT",
    "Authorization": "Basic dXNlcjpwYXNz",
    "Cache-Control": "no-cache",
    "Content-Encoding": "identity",
    "Content-MD5": "Q2hlY2sgSW50ZWdyaXR5IQ==",
    "Cookie": "c=1",
    "Date": "Wed, 25 Nov 2026 10:00:00 GMT",
    "If-Match": '"a"',
    "If-Modified-Since": "Wed, 25 Nov 2026 10:00:00 GMT",
    "If-None-Match": '"b"',
    "If-Range": '"c"',
    "If-Unmodified-Since": "Wed, 25 Nov 2026 10:00:00 GMT",
    "Origin": "https://example.com",
    "Pragma": "no-cache",
    "Range": "bytes=0-10",
    "Referer": "https://example.com/from",
    "User-Agent": "tests/1.0",
    "X-Forwarded-For": "10.0.0.1",
}


def _comparable(value):
    if inspect.ismethod(value):
        value = value()
    if hasattr(value, "read"):
        return type(value).__name__
    return repr(value)


class TestEveryCheckedAttribute:
    """Every checked request attribute reads as on plain Flask, and is
    checked."""

    @pytest.mark.parametrize("name", CHECKED_REQUEST_ATTRIBUTES)
    def test_reads_as_on_plain_flask(self, name):
        """In its own request, the attribute has the same value and is not
        reported; read on the kept request after its end, it is CG102."""
        seen = {}
        kept = []
        for guarded in (False, True):
            app = Flask("attributes")
            app.config.update(CTXGUARD_MODE="log")

            @app.post("/read")
            def read(guarded=guarded):
                seen[guarded] = _comparable(getattr(request, name))
                kept.append(request._get_current_object())
                return "ok"

            guard = CtxGuard(app) if guarded else None
            response = app.test_client().post(
                "/read?a=1", json={"x": 1}, headers=_EVERY_HEADER
            )
            assert 200 == response.status_code
        assert guard is not None
        in_request = codes(guard)

        getattr(kept[-1], name)

        assert seen[False] == seen[True]
        assert [] == in_request
        assert ["CG102"] == codes(guard)
        assert f"'request.{name}'" in guard.violations[0].message

    @pytest.mark.parametrize("name", CHECKED_REQUEST_ATTRIBUTES)
    def test_checked_from_another_thread(self, app, name):
        """Read from a thread while its request is in flight: CG104."""

        @app.post("/hand-off")
        def hand_off():
            kept = request._get_current_object()
            thread = threading.Thread(target=getattr, args=(kept, name))
            thread.start()
            thread.join()
            return "ok"

        guard = CtxGuard(app)
        app.test_client().post(
            "/hand-off?a=1", json={"x": 1}, headers=_EVERY_HEADER
        )

        # Werkzeug computes some attributes from others, each checked: one
        # code, the attribute read first.
        assert {"CG104"} == set(codes(guard))
        assert f"'request.{name}'" in guard.violations[0].message


class TestRequestClasses:
    """Checked attributes behave like the ones they replace, whatever the
    request class."""

    def test_plain_attribute_of_a_request_switched_late(self, app):
        """A request created before its class was guarded keeps its plain
        attributes: read, replaced and deleted as before."""
        guard = CtxGuard(app)
        app.request_class = guarded_base = app.request_class.__mro__[1]
        seen = []

        @app.route("/late")
        def late():
            seen.append(type(request._get_current_object()) is guarded_base)
            agent = request.headers.get("User-Agent")
            request.headers = {"User-Agent": "replaced"}
            replaced = request.headers["User-Agent"]
            del request.headers
            with pytest.raises(AttributeError):
                _ = request.headers
            with pytest.raises(AttributeError):
                del request.headers
            return f"{agent} {replaced}"

        response = app.test_client().get("/late", headers={"User-Agent": "a"})

        assert b"a replaced" == response.data
        assert [False] == seen
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_plain_attribute_deleted(self, app):
        """A deleted plain attribute is gone, under its own name."""
        CtxGuard(app)

        @app.route("/deleted")
        def deleted():
            del request.headers
            with pytest.raises(AttributeError, match=r"^headers$"):
                _ = request.headers
            request.headers = {"X": "again"}
            return request.headers["X"]

        assert b"again" == app.test_client().get("/deleted").data

    def test_a_method_replaced_on_the_instance(self, app):
        """A method set on the request object wins, as it would."""
        guard = CtxGuard(app)

        @app.post("/json")
        def json_view():
            first = request.get_json()
            request.get_json = lambda: {"x": "replaced"}
            replaced = request.get_json()
            del request.get_json
            with pytest.raises(AttributeError):
                del request.get_json
            return f"{first['x']} {replaced['x']} {request.get_json()['x']}"

        response = app.test_client().post("/json", json={"x": "sent"})

        assert b"sent replaced sent" == response.data
        assert [] == guard.violations
        assert ["CG104"] == kept_request_control(app, guard)

    def test_a_subclass_of_the_guarded_class(self, app):
        """A request class derived from the guarded one after init_app is
        guarded once: one report per access, not two."""
        guard = CtxGuard(app)

        class AppRequest(app.request_class):
            pass

        app.request_class = AppRequest

        @app.route("/hand-off")
        def hand_off():
            kept = request._get_current_object()
            thread = threading.Thread(target=lambda: kept.args)
            thread.start()
            thread.join()
            return "ok"

        app.test_client().get("/hand-off?a=1")

        assert ["CG104"] == codes(guard)
        assert "'request.args'" in guard.violations[0].message


_SESSION_USES = {
    "keys": lambda s: list(s.keys()),
    "items": lambda s: list(s.items()),
    "values": lambda s: list(s.values()),
    "copy": lambda s: s.copy(),
    "iter": list,
    "in": lambda s: "user" in s,
    "get": lambda s: s.get("user"),
    "get with a default": lambda s: s.get("missing", 1),
    "getitem": lambda s: s["user"],
    "setitem": lambda s: s.__setitem__("other", 1),
    "setdefault": lambda s: s.setdefault("user", "x"),
    "pop": lambda s: s.pop("user"),
    "pop with a default": lambda s: s.pop("missing", None),
    "popitem": lambda s: s.popitem(),
    "delitem": lambda s: s.__delitem__("user"),
    "update": lambda s: s.update(other=1),
    "clear": lambda s: s.clear(),
}


class TestKeptObjectsStayUsable:
    """A kept session or request still works after its request, like on
    plain Flask; every use is reported."""

    @pytest.mark.parametrize("use", sorted(_SESSION_USES))
    def test_every_session_method(self, app, use):
        """Each dict method of a kept session is checked, then works."""
        guard = CtxGuard(app)
        app.test_client().get("/keep/alice")
        kept = KEPT[0][1]

        _SESSION_USES[use](kept)

        assert ["CG102"] == codes(guard)[:1]
        assert {"session"} == {v.subject for v in guard.violations}

    def test_plain_attributes_of_a_kept_request(self, app):
        """Set, read and deleted after the request, as on plain Flask."""
        guard = CtxGuard(app)
        app.test_client().get("/keep/alice")
        kept = KEPT[0][0]

        kept.routing_exception = ValueError("late")
        assert "late" == str(kept.routing_exception)
        del kept.routing_exception
        assert kept.routing_exception is None  # the class's default
        with pytest.raises(AttributeError):
            del kept.routing_exception
        del kept.path
        with pytest.raises(AttributeError):
            _ = kept.path

        assert {"CG102"} == set(codes(guard))


def test_a_session_class_that_stores_attributes_as_data(app):
    """The guard's record never goes through the session class's own
    __setattr__, which may write into the session's data (and cookie)."""
    from flask.sessions import SecureCookieSession

    class KeyedSession(SecureCookieSession):
        def __setattr__(self, name, value):
            if name.startswith("_"):
                self[name] = value
            else:
                super().__setattr__(name, value)

    app.session_interface.session_class = KeyedSession
    guard = CtxGuard(app)
    seen = []

    @app.route("/login")
    def login():
        session["user"] = "ada"
        seen.append(sorted(session))
        return "ok"

    response = app.test_client().get("/login")

    assert 200 == response.status_code
    assert [["user"]] == seen
    assert [] == guard.violations
    assert ["CG104"] == kept_request_control(app, guard)
