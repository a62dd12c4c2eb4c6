"""
CG203 (ContextVar and structlog bindings set in a request and never reset)
and CG204 (module-level thread-locals written with request data), with the
resets that make them sanctioned, in the same module or in another one.
"""

from __future__ import annotations

import pytest

from tests.lint.checking import found, found_in_tree, marked, messages

REPORTED = {
    "ContextVar set in a view": """
        import contextvars
        from flask import Blueprint, g
        bp = Blueprint("b", __name__)
        tenant = contextvars.ContextVar("tenant")

        @bp.get("/report")
        def report():
            tenant.set(g.tenant)  # <- CG203
            return count()
    """,
    "reset that an exception skips": """
        from contextvars import ContextVar
        from flask import Flask, request
        app = Flask(__name__)
        user_id: ContextVar[str] = ContextVar("user_id")

        @app.get("/")
        def index():
            token = user_id.set(request.headers["X-User"])  # <- CG203
            work()
            user_id.reset(token)
            return ""
    """,
    "structlog bind without a clear": """
        import structlog
        from structlog.contextvars import bind_contextvars
        from flask import Flask, request
        app = Flask(__name__)

        @app.post("/imports")
        def imports():
            bind_contextvars(import_id=new_id())  # <- CG203
            structlog.contextvars.bind_contextvars(p=request.path)  # <- CG203
            return ""
    """,
    "conditional bind in a before_request": """
        from structlog.contextvars import bind_contextvars
        from flask import Flask
        from flask_login import current_user
        app = Flask(__name__)

        @app.before_request
        def bind_user():
            if current_user.is_authenticated:
                bind_contextvars(user=current_user.id)  # <- CG203
    """,
    "clear after the work, skipped by an exception": """
        from structlog.contextvars import bind_contextvars, clear_contextvars
        from flask import Flask, request
        app = Flask(__name__)

        @app.get("/")
        def index():
            bind_contextvars(q=request.args["q"])  # <- CG203
            work()
            clear_contextvars()
            return ""
    """,
    "thread-local memo of the request's data": """
        import threading
        from flask import Blueprint, request
        from flask_login import current_user
        bp = Blueprint("b", __name__)
        scratch = threading.local()

        @bp.post("/drafts")
        def save_draft():
            data = request.get_json()
            scratch.draft = {"author": current_user.name}  # <- CG204
            return ""
    """,
    "werkzeug Local and a threading.local subclass": """
        import threading
        from werkzeug.local import Local
        from flask import Flask, session
        app = Flask(__name__)

        class State(threading.local):
            pass

        local = Local()
        state = State()

        @app.get("/u/<name>")
        def user(name):
            local.user = session["user"]  # <- CG204
            setattr(state, "name", name)  # <- CG204
            return ""
    """,
}

SILENT = {
    "set and reset in a finally": """
        import contextvars
        from flask import Flask, g
        app = Flask(__name__)
        tenant = contextvars.ContextVar("tenant")

        @app.get("/")
        def index():
            token = tenant.set(g.tenant)
            try:
                return count()
            finally:
                tenant.reset(token)
    """,
    "set in before_request, reset in teardown_request": """
        import contextvars
        from flask import Flask, g, request
        app = Flask(__name__)
        tenant = contextvars.ContextVar("tenant")

        @app.get("/")
        def index():
            g.token = tenant.set(request.args["t"])
            return ""

        @app.teardown_request
        def reset(exc):
            tenant.reset(g.token)
    """,
    "set unconditionally at the start of every request": """
        import contextvars
        from structlog.contextvars import bind_contextvars
        from flask import Flask, request
        app = Flask(__name__)
        request_id = contextvars.ContextVar("request_id")

        @app.before_request
        def start():
            request_id.set(request.headers.get("X-Request-ID"))
            bind_contextvars(path=request.path)
    """,
    "clear_contextvars at the start of every request": """
        from structlog.contextvars import bind_contextvars, clear_contextvars
        from flask import Flask, request
        app = Flask(__name__)

        @app.before_request
        def clear():
            clear_contextvars()

        @app.get("/")
        def index():
            bind_contextvars(q=request.args["q"])
            return ""
    """,
    "clear then bind in the view, and bound_contextvars": """
        import structlog
        from flask import Flask, request
        app = Flask(__name__)

        @app.get("/")
        def index():
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(q=request.args["q"])
            with structlog.contextvars.bound_contextvars(user=1):
                work()
            return ""
    """,
    "tokens kept on g and reset in teardown": """
        from structlog.contextvars import bind_contextvars, reset_contextvars
        from flask import Flask, g, request
        app = Flask(__name__)

        def bind_request_values(**values):
            tokens = bind_contextvars(**values)
            g.log_tokens = [*g.get("log_tokens", ()), tokens]

        @app.get("/")
        def index():
            bind_request_values(user=request.args["u"])
            return ""

        @app.teardown_request
        def reset(exc):
            for tokens in reversed(g.pop("log_tokens", ())):
                reset_contextvars(**tokens)
    """,
    "ContextVar and set() outside request code": """
        import contextvars
        from flask import Flask
        app = Flask(__name__)
        mode = contextvars.ContextVar("mode")
        mode.set("cli")

        @app.cli.command()
        def seed():
            mode.set("seed")

        @app.get("/")
        def index():
            settings.set("x")
            cache.set("k", 1)
            return ""
    """,
    "thread-local connection cache and LocalManager": """
        import sqlite3
        import threading
        from werkzeug.local import Local, LocalManager
        from flask import Flask, current_app, request
        app = Flask(__name__)
        conns = threading.local()
        local = Local()
        manager = LocalManager([local])

        @app.get("/")
        def index():
            conns.db = sqlite3.connect(current_app.config["DB"])
            local.user = request.args["u"]
            return ""
    """,
    "thread-local reset per request": """
        import threading
        from flask import Flask, request
        app = Flask(__name__)
        state = threading.local()
        other = threading.local()

        @app.before_request
        def start():
            state.path = request.path

        @app.get("/")
        def index():
            other.user = request.args["u"]
            return ""

        @app.teardown_request
        def done(exc):
            del other.user
    """,
}


class TestContextVars:
    @pytest.mark.parametrize("name", sorted(REPORTED))
    def test_values_left_for_the_next_request_are_reported(self, name):
        """Sets and binds that the next request inherits: CG203, CG204."""
        source = REPORTED[name]

        assert marked(source) == found(source)

    @pytest.mark.parametrize("name", sorted(SILENT))
    def test_resets_and_per_request_sets_are_silent(self, name):
        """A reset, a clear, a set on every request: silent."""
        assert [] == found(SILENT[name])

    def test_reset_not_in_finally_says_so(self):
        """The message of a skippable reset names its line."""
        (message,) = messages(REPORTED["reset that an exception skips"])

        assert message.startswith(
            "'user_id.set()' is reset at line 11, but not in a 'finally'"
        )


class TestAcrossModules:
    def test_teardown_in_the_app_factory_resets_a_view_module(self, tmp_path):
        """A reset in another module's teardown_request is seen."""
        files = {
            "app/context.py": """
                import contextvars
                tenant = contextvars.ContextVar("tenant")
            """,
            "app/views.py": """
                from flask import Blueprint, request
                from .context import tenant
                bp = Blueprint("v", __name__)

                @bp.get("/")
                def index():
                    tenant.set(request.args["t"])
                    return ""
            """,
        }

        assert [("app/views.py", 8, "CG203")] == found_in_tree(tmp_path, files)

        files["app/__init__.py"] = """
            from flask import Flask
            from .context import tenant

            def create_app():
                app = Flask(__name__)

                @app.teardown_request
                def reset(exc):
                    tenant.set(None)

                return app
        """

        assert [] == found_in_tree(tmp_path, files)

    def test_structlog_clear_in_a_middleware_elsewhere(self, tmp_path):
        """A clear_contextvars() in another module's middleware is seen."""
        files = {
            "views.py": """
                from flask import Flask, request
                from structlog.contextvars import bind_contextvars
                app = Flask(__name__)

                @app.get("/")
                def index():
                    bind_contextvars(q=request.args["q"])
                    return ""
            """,
            "middleware.py": """
                from structlog.contextvars import clear_contextvars

                class Clear:
                    def __init__(self, wsgi):
                        self.wsgi = wsgi

                    def __call__(self, environ, start_response):
                        clear_contextvars()
                        return self.wsgi(environ, start_response)
            """,
        }

        assert [] == found_in_tree(tmp_path, files)

    def test_set_of_an_unknown_imported_object_is_silent(self, tmp_path):
        """'x.set(v)' on an import that is no known ContextVar is silent."""
        files = {
            "views.py": """
                from flask import Flask, request
                from .flags import feature
                app = Flask(__name__)

                @app.get("/")
                def index():
                    feature.set(request.args["on"])
                    return ""
            """,
        }

        assert [] == found_in_tree(tmp_path, files)


MORE = """
    import threading
    import contextvars
    from flask import Flask, request
    app = Flask(__name__)
    try:
        import gevent.local as _unused
    except ImportError:
        fallback = None
    state = threading.local()
    other = threading.local()
    a, b = contextvars.ContextVar("a"), None
    var = contextvars.ContextVar("var")

    @app.before_request
    def start():
        if request.path == "/skip":
            return None
        var.set(request.path)
        return None

    @app.get("/u")
    def user():
        state.name = request.args["n"]
        other.name = request.args["n"]  # <- CG204
        other.count = 1
        token = var.set(request.path)
        a.set(1)
        return ""

    @app.teardown_request
    def done(exc):
        state.__dict__.clear()
"""


def test_more_shapes_of_per_thread_state():
    """
    A set in a before_request hook, even after an early return, counts as
    the variable's per-request reset; __dict__.clear() in a teardown resets
    a thread-local; a ContextVar bound by tuple unpacking is not known.
    """
    assert marked(MORE) == found(MORE)
