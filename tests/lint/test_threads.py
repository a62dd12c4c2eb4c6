"""
CG202: work that leaves the request (threads, executors, asyncio, gevent,
streamed generators) and reaches its request objects; and the sanctioned
ways to hand work off, which stay silent.
"""

from __future__ import annotations

import pytest

from tests.lint.checking import found, found_in_tree, marked, messages

REPORTED = {
    "executor handed the raw request through a helper": """
        from concurrent.futures import ThreadPoolExecutor
        from flask import Blueprint, request
        bp = Blueprint("b", __name__)
        pool = ThreadPoolExecutor(4)

        def in_parallel(req, *searches):
            return [pool.submit(s, req) for s in searches]

        @bp.get("/search")
        def search():
            req = request._get_current_object()
            return in_parallel(req, titles, bodies)  # <- CG202
    """,
    "executor handed the proxy": """
        import concurrent.futures
        from flask import Flask, request
        app = Flask(__name__)
        executor = concurrent.futures.ThreadPoolExecutor()

        @app.post("/send")
        def send():
            executor.submit(work, request)  # <- CG202
            executor.map(work, [request._get_current_object()])  # <- CG202
            return ""
    """,
    "thread whose target reads the request": """
        import threading
        from flask import Flask, request
        app = Flask(__name__)

        def notify():
            send_mail(request.form["email"])

        @app.post("/signup")
        def signup():
            threading.Thread(target=notify).start()  # <- CG202
            threading.Timer(5, lambda: log(request.path)).start()  # <- CG202
            return ""
    """,
    "thread args and closures over the raw session": """
        from threading import Thread
        from flask import Flask, session
        app = Flask(__name__)

        @app.get("/")
        def index():
            raw = session._get_current_object()

            def later():
                return raw.get("user")

            Thread(target=later).start()  # <- CG202
            Thread(None, save, args=(raw,)).start()  # <- CG202
            return ""
    """,
    "partial over the request, gevent and eventlet": """
        import functools
        import gevent
        import eventlet
        from flask import Flask, request
        from flask_login import current_user
        app = Flask(__name__)

        @app.get("/")
        def index():
            gevent.spawn(functools.partial(work, current_user))  # <- CG202
            eventlet.spawn(work, request._get_current_object())  # <- CG202
            gevent.spawn_later(1, work, request)  # <- CG202
            return ""
    """,
    "fire-and-forget asyncio task and another loop": """
        import asyncio
        from flask import Flask, request
        app = Flask(__name__)

        async def audit():
            await store(request.remote_addr)

        @app.get("/")
        async def index():
            asyncio.create_task(audit())  # <- CG202
            asyncio.run_coroutine_threadsafe(save(request), loop2)  # <- CG202
            loop = asyncio.get_running_loop()
            raw = request._get_current_object()
            await loop.run_in_executor(None, work, raw)  # <- CG202
            return ""
    """,
    "streamed generator reading the request": """
        from flask import Flask, Response, request
        app = Flask(__name__)

        @app.get("/stream")
        def stream():
            def generate():
                for row in rows(request.args["q"]):
                    yield row
            return Response(generate(), mimetype="text/csv")  # <- CG202

        @app.get("/stream2")
        def stream2():
            return app.response_class(request.path for _ in x)  # <- CG202

        def lines():
            yield request.args["q"]

        @app.get("/stream3")
        def stream3():
            return lines()  # <- CG202
    """,
}

SILENT = {
    "plain values to an executor": """
        from concurrent.futures import ThreadPoolExecutor
        from flask import Flask, request
        from flask_login import current_user
        app = Flask(__name__)
        executor = ThreadPoolExecutor()

        def send(address, user_id):
            mail(address, user_id)

        @app.post("/send")
        def send_view():
            executor.submit(send, request.args["x"], current_user.id)
            to = request.form.get("to")
            executor.submit(send, to, user_id=current_user.get_id())
            return ""
    """,
    "copy_current_request_context and copy_context().run": """
        import contextvars
        import threading
        from flask import Flask, request, copy_current_request_context
        app = Flask(__name__)

        @app.get("/")
        def index():
            @copy_current_request_context
            def work():
                return request.args

            def other():
                return request.path

            threading.Thread(target=work).start()
            threading.Thread(target=copy_current_request_context(other)).start()
            ctx = contextvars.copy_context()
            threading.Thread(target=ctx.run, args=(other,)).start()
            return ""
    """,
    "stream_with_context": """
        from flask import Flask, Response, request, stream_with_context
        app = Flask(__name__)

        @app.get("/stream")
        def stream():
            @stream_with_context
            def generate():
                yield request.args["q"]

            def plain():
                yield request.args["q"]

            Response(generate())
            return Response(stream_with_context(plain()))
    """,
    "values bound when the lambda or generator is made": """
        from concurrent.futures import ThreadPoolExecutor
        from flask import Flask, Response, request
        app = Flask(__name__)
        pool = ThreadPoolExecutor()

        @app.get("/")
        def index():
            pool.submit(lambda q=request.args["q"]: search(q))
            return Response(line for line in rows(request.args["q"]))
    """,
    "values read before streaming": """
        from flask import Flask, Response, request
        app = Flask(__name__)

        @app.get("/stream")
        def stream():
            query = request.args["q"]

            def generate(q):
                yield from rows(q)

            return Response(generate(query))
    """,
    "a thread that pushes its own app context": """
        import threading
        from flask import Flask, g, current_app
        app = Flask(__name__)

        def job(app):
            with app.app_context():
                g.db = connect()

        @app.post("/jobs")
        def start():
            app = current_app._get_current_object()
            threading.Thread(target=job, args=(app,)).start()
            return ""
    """,
    "Flask-Executor and unknown executors": """
        from flask import Flask, request
        from flask_executor import Executor
        from .ext import pool
        app = Flask(__name__)
        executor = Executor(app)

        @app.get("/")
        def index():
            executor.submit(work, request)
            pool.submit(work, request)
            return ""
    """,
    "awaited tasks and to_thread": """
        import asyncio
        from flask import Flask, request
        app = Flask(__name__)

        async def fetch():
            return request.args

        @app.get("/")
        async def index():
            task = asyncio.create_task(fetch())
            await asyncio.gather(asyncio.ensure_future(fetch()))
            await asyncio.to_thread(fetch_sync, request)
            return await task
    """,
    "threads started outside request code": """
        import threading
        from flask import Flask
        app = Flask(__name__)

        def warm_cache():
            load_all()

        threading.Thread(target=warm_cache, daemon=True).start()

        def create_app():
            threading.Thread(target=warm_cache).start()
            return app
    """,
}


class TestThreads:
    @pytest.mark.parametrize("name", sorted(REPORTED))
    def test_request_objects_leaving_the_request_are_reported(self, name):
        """Work handed request objects, or reading them, outside: CG202."""
        source = REPORTED[name]

        assert marked(source) == found(source)

    @pytest.mark.parametrize("name", sorted(SILENT))
    def test_sanctioned_hand_offs_are_silent(self, name):
        """Copied contexts, plain values, own contexts are silent."""
        assert [] == found(SILENT[name])

    def test_messages_name_the_start_and_the_fix(self):
        """The message names how the work starts, what it reaches, the fix."""
        thread, timer = messages(
            REPORTED["thread whose target reads the request"]
        )

        assert thread == (
            "'threading.Thread' runs 'notify' outside the request, and it"
            " reads 'request' (line 7): pass plain values (request.args['q'],"
            " the user id), or wrap the function with"
            " 'flask.copy_current_request_context'"
        )
        assert "runs 'a lambda'" in timer

    def test_streamed_message_names_stream_with_context(self):
        """A streamed generator's message names 'stream_with_context'."""
        first, *_ = messages(
            REPORTED["streamed generator reading the request"]
        )

        assert first.startswith("a streamed response's generator 'generate'")
        assert "'flask.stream_with_context'" in first


MORE = """
    import threading
    import asyncio
    import contextvars
    from concurrent.futures import ThreadPoolExecutor
    from flask import Flask, request, g
    app = Flask(__name__)

    @app.get("/a")
    def a():
        raw = request._get_current_object()
        threading.Thread(target=work, kwargs={"req": raw}).start()  # <- CG202
        threading.Thread(target=work, args=packed).start()
        threading.Thread(target=lambda: raw.args).start()  # <- CG202
        with ThreadPoolExecutor() as pool:
            pool.submit(len, g)  # <- CG202
        ctx = contextvars.copy_context()
        pool.submit(ctx.run, work, raw)
        asyncio.create_task(coro)
        asyncio.run_coroutine_threadsafe(coro, loop)
        threading.Thread(target=imported_work).start()
        threading.Thread().start()
        return ""

    @app.get("/b")
    def b():
        def inner():
            return 1
        threading.Thread(target=inner).start()
        threading.Thread(target=lambda: 1).start()
        with app.test_request_context():
            pass
        threading.Thread(target=lambda: g.x or None).start()  # <- CG202
        return ""
"""


def test_more_shapes_of_starting_work():
    """kwargs, lambdas over raw objects, with-bound executors, plain work."""
    assert marked(MORE) == found(MORE)


def test_an_executor_imported_from_another_module(tmp_path):
    """A pool defined in extensions.py is known in views.py; Flask-Executor
    and unknown imports stay silent."""
    files = {
        "app/extensions.py": """
            from concurrent.futures import ThreadPoolExecutor
            from flask_executor import Executor
            pool = ThreadPoolExecutor(4)
            executor = Executor()
        """,
        "app/views.py": """
            from flask import Blueprint, request
            from .extensions import pool, executor
            from .other import jobs
            bp = Blueprint("v", __name__)

            @bp.post("/send")
            def send():
                pool.submit(work, request._get_current_object())
                executor.submit(work, request._get_current_object())
                jobs.submit(work, request._get_current_object())
                return ""
        """,
    }

    assert [("app/views.py", 9, "CG202")] == found_in_tree(tmp_path, files)


APP_EXECUTOR_FACTORY = """
    from concurrent.futures import ThreadPoolExecutor
    from flask import Flask
    from flask_executor import Executor

    def create_app():
        app = Flask(__name__)
        app.executor = ThreadPoolExecutor(4)
        app.jobs = Executor(app)
        return app
"""

APP_EXECUTOR_VIEWS = """
    from flask import Blueprint, Flask, current_app, request
    bp = Blueprint("v", __name__)
    app = Flask(__name__)

    @bp.post("/send")
    def send():
        current_app.executor.submit(work, request._get_current_object())
        current_app.jobs.submit(work, request._get_current_object())
        current_app.executor.submit(work, request.args["x"])
        current_app.other.submit(work, request._get_current_object())
        app.executor.submit(work, request)
        return ""
"""


def test_an_executor_kept_on_the_app(tmp_path):
    """A pool an app factory keeps on the app is known where views use it
    through current_app or the app; Flask-Executor, plain values and
    attributes nobody set to a pool stay silent."""
    files = {
        "app/__init__.py": APP_EXECUTOR_FACTORY,
        "app/views.py": APP_EXECUTOR_VIEWS,
    }

    assert [
        ("app/views.py", 8, "CG202"),
        ("app/views.py", 12, "CG202"),
    ] == found_in_tree(tmp_path, files)


def test_an_app_attribute_also_set_to_something_else_is_unknown(tmp_path):
    """When the attribute is also set to something that is not a pool (a
    parameter, Flask-Executor), what it holds is unknown: silent."""
    files = {
        "app/__init__.py": APP_EXECUTOR_FACTORY
        + "\n    def configure(app, pool):\n        app.executor = pool\n",
        "app/views.py": APP_EXECUTOR_VIEWS,
    }

    assert [] == found_in_tree(tmp_path, files)


def test_work_started_in_another_module(tmp_path):
    """A view handing the request to another module's thread starter."""
    files = {
        "app/mail.py": """
            import threading
            from flask import request, copy_current_request_context

            def send_later(req, to):
                threading.Thread(target=deliver, args=(req, to)).start()

            def audit_later():
                threading.Thread(target=_audit).start()

            def _audit():
                store(request.remote_addr)

            def copied_later():
                threading.Thread(
                    target=copy_current_request_context(_audit)
                ).start()
        """,
        "app/views.py": """
            from flask import Blueprint, request
            from .mail import send_later, audit_later, copied_later
            bp = Blueprint("v", __name__)

            @bp.post("/send")
            def send():
                send_later(request._get_current_object(), "x")
                send_later("plain", to=request.form["to"])
                send_later(req=request, to="x")
                audit_later()
                copied_later()
                return ""
        """,
    }

    assert [
        ("app/views.py", 8, "CG202"),
        ("app/views.py", 10, "CG202"),
        ("app/views.py", 11, "CG202"),
    ] == found_in_tree(tmp_path, files)


def test_a_target_that_pushes_its_own_context():
    """A thread target that pushes (and pops) an app context is silent."""
    source = """
        import threading
        from flask import Flask, g, current_app
        app = Flask(__name__)

        def job(app):
            ctx = app.app_context()
            ctx.push()
            try:
                g.db = connect()
                return g.db.run()
            finally:
                ctx.pop()

        @app.post("/jobs")
        def start():
            app_ = current_app._get_current_object()
            threading.Thread(target=job, args=(app_,)).start()
            return ""
    """

    assert [] == found(source)
