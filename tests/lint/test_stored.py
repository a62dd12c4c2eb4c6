"""
CG201 (a request-bound object stored where it outlives the request) and
CG207 (a module global assigned request data), on real shapes and on the
sanctioned patterns beside them.
"""

from __future__ import annotations

import pytest

from tests.lint.checking import found, marked, messages

REPORTED = {
    "module-level cache of the raw g": """
        from flask import Blueprint, g
        bp = Blueprint("b", __name__)
        cache = {}

        def cached_viewer():
            viewer = cache.get("g")
            if viewer is None:
                viewer = cache["g"] = g._get_current_object()  # <- CG201
            return viewer

        @bp.get("/whoami")
        def whoami():
            return cached_viewer().tenant
    """,
    "aliased import and module attribute": """
        import flask
        from flask import request as req
        LAST = []

        @flask.Blueprint("b", __name__).route("/a")
        def view():
            LAST.append(req._get_current_object())  # <- CG201
            return ""
    """,
    "global declared in a view": """
        from flask import Flask, request
        app = Flask(__name__)
        CURRENT = None

        @app.route("/")
        def index():
            global CURRENT
            CURRENT = request._get_current_object()  # <- CG201
            return ""
    """,
    "container of an app factory used by its views": """
        from flask import Flask
        from flask_login import current_user

        def create_app():
            app = Flask(__name__)
            seen = {}

            @app.get("/me")
            def me():
                seen[current_user.id] = current_user  # <- CG201
                return ""

            return app
    """,
    "class attribute and an object created at import": """
        from flask import Flask, request, session
        app = Flask(__name__)

        class State:
            pass

        state = State()

        @app.post("/upload")
        def upload():
            state.file = request.files["file"]  # <- CG201
            State.session = session  # <- CG207
            return ""
    """,
    "raw request handed to an app-wide service": """
        from flask import Blueprint, request, current_app
        bp = Blueprint("b", __name__)

        def audit_trail():
            return current_app.extensions["audit"]

        @bp.post("/share")
        def share():
            raw = request._get_current_object()
            audit_trail().record("shared", source=raw)  # <- CG201
            current_app.extensions["queue"].put(raw)  # <- CG201
            return ""
    """,
    "class-based view storing on cls": """
        from flask.views import MethodView
        from flask import request

        class Items(MethodView):
            last = None

            def get(self):
                type(self).last = request._get_current_object()  # <- CG201
                return ""
    """,
    "mutable default argument": """
        from flask import g

        def remember(memo={}):
            memo["g"] = g._get_current_object()  # <- CG201
    """,
}

SILENT = {
    "plain values in a module cache": """
        from flask import Flask, request, g
        from flask_login import current_user
        app = Flask(__name__)
        cache = {}

        @app.get("/t")
        def tenant():
            cache[current_user.id] = current_user.tenant_id
            cache[current_user.id, "q"] = request.args.get("q")
            return str(cache[g.user.id])
    """,
    "request objects kept on g and in locals": """
        from flask import Flask, request, g, session
        app = Flask(__name__)

        @app.before_request
        def load():
            g.req = request._get_current_object()
            items = []
            items.append(session._get_current_object())
            local = {"r": request._get_current_object()}
            return None
    """,
    "proxies in Jinja globals at set-up": """
        from flask import Flask, request, session, g
        app = Flask(__name__)
        app.jinja_env.globals.update(request=request, session=session, g=g)
        helpers = {"request": request}

        def setup(app):
            app.jinja_env.globals["request"] = request
    """,
    "instance attributes of a per-request object": """
        from flask import request
        from flask.views import MethodView

        class Form:
            def __init__(self):
                self.req = request._get_current_object()

        class View(MethodView):
            def get(self):
                self.request = request._get_current_object()
                return ""
    """,
    "signals sent with the raw request": """
        from flask import Flask, request, current_app
        from blinker import Namespace
        app = Flask(__name__)
        done = Namespace().signal("done")

        @app.get("/")
        def index():
            raw = request._get_current_object()
            done.send(current_app._get_current_object(), request=raw)
            return ""
    """,
    "a local shadowing a module name": """
        from flask import Flask, request
        app = Flask(__name__)
        seen = {}

        @app.get("/")
        def index():
            seen = {}
            seen["r"] = request._get_current_object()
            return ""
    """,
}


class TestStoredObjects:
    @pytest.mark.parametrize("name", sorted(REPORTED))
    def test_stored_request_objects_are_reported(self, name):
        """A request-bound object kept beyond its request is CG201."""
        source = REPORTED[name]

        assert marked(source) == found(source)

    @pytest.mark.parametrize("name", sorted(SILENT))
    def test_sanctioned_stores_are_silent(self, name):
        """Plain values, per-request holders and set-up code are silent."""
        assert [] == found(SILENT[name])

    def test_message_names_the_object_the_place_and_the_fix(self):
        """The message says what was stored, where, and the way out."""
        (message,) = messages(REPORTED["module-level cache of the raw g"])

        assert message.startswith(
            "'g._get_current_object()' is stored in the module-level"
            " 'cache', which outlives the request"
        )
        assert "store plain values" in message


GLOBALS = """
    import settings
    from flask import Flask, request, session
    app = Flask(__name__)
    CURRENT_USER = None
    HITS = 0
    ENGINE = None

    class Locale:
        lang = "en"

    @app.before_request
    def remember():
        global CURRENT_USER, HITS, ENGINE
        CURRENT_USER = session.get("user")  # <- CG207
        settings.LANG = request.args.get("lang")  # <- CG207
        Locale.lang = request.accept_languages.best  # <- CG207
        HITS += 1
        ENGINE = make_engine()

    @app.get("/u/<user_id>")
    def user(user_id):
        global LAST_ID
        LAST_ID = f"user {user_id}"  # <- CG207
        g_user = session.get("user")
        return g_user

    STATE = {"user": None}
    stats = Stats()
    online = {}

    @app.get("/seen")
    def seen():
        STATE["user"] = session.get("user")  # <- CG207
        stats.last_path = request.path  # <- CG207
        online[session.get("user")] = now()
        stats.hits = stats.hits + 1
        app.config["LAST_USER"] = session.get("user")  # <- CG207
        return ""
"""


class TestGlobals:
    def test_globals_assigned_request_data_are_reported(self):
        """Globals, module and class attributes set from the request: CG207."""
        assert marked(GLOBALS) == found(GLOBALS)

    def test_globals_outside_request_code_are_silent(self):
        """A global set at import or in a CLI command is not request data."""
        source = """
            import click
            from flask import Flask, current_app
            app = Flask(__name__)
            CONFIG = None

            def load(path):
                global CONFIG
                CONFIG = current_app.config["X"]

            @app.cli.command()
            def seed():
                global CONFIG
                CONFIG = click.get_current_context()
        """

        assert [] == found(source)


MORE_STORES = """
    from flask import Flask, request, g, current_app
    from flask_login import current_user
    from .extensions import registry, cache
    app = Flask(__name__)
    STATE = {}

    class Holder:
        @classmethod
        def keep(cls):
            cls.current = request._get_current_object()  # <- CG201

        def mine(self):
            self.items.append(request._get_current_object())

    def create_app():
        shared = []

        @app.get("/x")
        def view():
            local = []
            local.append(g._get_current_object())
            registry.setdefault("g", g._get_current_object())  # <- CG201
            shared.append(current_user)  # <- CG201
            raw = request._get_current_object()
            current_app.extensions["jobs"].run(raw)  # <- CG201
            current_app.x.y.append(current_user)
            db.session.add(current_user)
            STATE["user"] = current_user  # <- CG207
            (a, b) = (request._get_current_object(), 1)
            return ""

        def helper():
            shared = []
            shared.append(request._get_current_object())

        return app

    @cache.memoize(30)  # <- CG205
    def slow():
        return request.args

    @cache.cached(make_cache_key=lambda: current_user.id)
    def page():
        return current_user.name

    @cache.cached(key_prefix="p/%s")  # <- CG205
    def page2():
        return current_user.name
"""


def test_more_stores():
    """cls attributes, imported registries, factory closures, caches."""
    assert marked(MORE_STORES) == found(MORE_STORES)


def test_globals_in_test_modules_are_the_tests_own():
    """A test's view noting request data in a module dict is silent."""
    source = """
        from flask import Flask, request
        app = Flask(__name__)
        SEEN = {}

        @app.get("/")
        def index():
            SEEN["q"] = request.args["q"]
            return ""

        def test_index():
            app.test_client().get("/?q=1")
            assert "1" == SEEN["q"]
    """

    assert [] == found(source, name="test_views.py")
    assert [(8, "CG207")] == found(source, name="views.py")
