"""
CG205 (a cache over a function that reads the request or the user) and
CG206 (contexts pushed and never popped, and test-client requests sharing
one app context), with the sanctioned shapes beside them.
"""

from __future__ import annotations

import pytest

from tests.lint.checking import found, found_in_tree, marked

CACHES = """
    import functools
    from functools import lru_cache
    from flask import Flask, request, g
    from flask_caching import Cache
    from flask_login import current_user
    app = Flask(__name__)
    cache = Cache(app)

    def _user():
        return current_user.id

    @functools.lru_cache(maxsize=128)  # <- CG205
    def tenant_settings():
        return load(current_user.tenant_id)

    @lru_cache  # <- CG205
    def language():
        return request.accept_languages.best

    @functools.cache  # <- CG205
    def profile():
        return load(_user())

    @cache.memoize(60)  # <- CG205
    def dashboard():
        return load(g.user)

    @app.get("/me")
    @cache.cached(timeout=50)  # <- CG205
    def me():
        return current_user.name

    @lru_cache
    def tenant_of(user_id):
        return load(user_id)

    @cache.cached(timeout=50)
    def page():
        return request.path

    @cache.cached(key_prefix=lambda: current_user.id)
    def mine():
        return current_user.name

    @cache.cached(unless=lambda: current_user.is_authenticated)
    def public():
        return current_user.name

    @lru_cache
    def in_own_context():
        with app.test_request_context():
            return request.path
"""


class TestCaches:
    def test_caches_over_request_reads_are_reported(self):
        """lru_cache, cache, memoize and cached over request reads: CG205."""
        assert marked(CACHES) == found(CACHES)


PUSHES = """
    import pytest
    from flask import Flask
    app = Flask(__name__)
    app.app_context().push()  # <- CG206

    def post_fork(server, worker):
        ctx = app.app_context()
        ctx.push()  # <- CG206

    @pytest.fixture
    def leaky(app):
        app.test_request_context().push()  # <- CG206
        return app

    @pytest.fixture
    def fine(app):
        ctx = app.test_request_context()
        ctx.push()
        yield ctx
        ctx.pop()

    @pytest.fixture
    def finer(app):
        with app.app_context():
            yield app

    def make_context():
        ctx = app.app_context()
        ctx.push()
        return ctx

    def with_finalizer(request, app):
        ctx = app.app_context()
        ctx.push()
        request.addfinalizer(ctx.pop)

    @pytest.fixture(autouse=True)
    def _push_request_context(request):
        # pytest-flask's own fixture, as it ships.
        app = getfixturevalue(request, "app")
        ctx = app.test_request_context()
        ctx.push()

        def teardown():
            ctx.pop()

        request.addfinalizer(teardown)

    class TestCase:
        def setUp(self):
            self.ctx = app.app_context()
            self.ctx.push()

        def tearDown(self):
            self.ctx.pop()

    class Leaky:
        def setUp(self):
            self.context = app.test_request_context()
            self.context.push()  # <- CG206
"""

SHARED = """
    import pytest
    from flask import Flask, g
    from myapp import create_app, db

    def test_profile(app, client):
        with app.app_context():  # <- CG206
            db.create_all()
            client.post("/login", data={"user": "alice"})
            client.get("/profile")

    def test_digests(app):
        with app.app_context():  # <- CG206
            for user in users():
                app.test_client(user=user).get("/digest")

    @pytest.fixture
    def shared_client(app):
        with app.app_context():  # <- CG206
            yield app.test_client()

    def test_nested(app):
        with app.app_context():  # <- CG206
            with app.test_client() as c:
                c.get("/a")
                c.get("/b")

    def test_set_up_only(app, client):
        with app.app_context():
            db.create_all()
        client.get("/a")
        client.get("/b")

    def test_one_request(app, client):
        with app.app_context():
            db.create_all()
            assert client.get("/a").status_code == 200

    def test_injected_fake(app, client):
        with app.app_context():
            g.user = "fake-admin"
            client.get("/a")
            client.get("/b")

    def script():
        app = create_app()
        with app.app_context():
            db.create_all()
            db.session.commit()
"""


class TestContexts:
    def test_unpopped_pushes_are_reported(self):
        """A push nobody pops is CG206; push/yield/pop and with are not."""
        assert marked(PUSHES) == found(PUSHES)

    def test_requests_sharing_an_app_context_are_reported(self):
        """Several test-client requests in one 'with app.app_context()'."""
        assert marked(SHARED) == found(SHARED, name="test_app.py")

    def test_fixture_context_around_a_tests_requests(self, tmp_path):
        """A test taking a conftest fixture that yields in a context."""
        files = {
            "tests/conftest.py": """
                import pytest

                @pytest.fixture(name="app_ctx")
                def _app_ctx(app):
                    with app.app_context() as ctx:
                        yield ctx
            """,
            "tests/test_csrf.py": """
                import pytest

                @pytest.fixture
                def logged_in(app_ctx, client):
                    return client

                def test_protect(app, client, app_ctx):
                    assert client.post("/").status_code == 400
                    assert client.get("/").status_code == 200

                def test_single(client, app_ctx):
                    assert client.get("/").status_code == 200

                def test_without(client):
                    client.get("/")
                    client.get("/")

                def test_through_another_fixture(logged_in, client):
                    client.get("/")
                    client.get("/")
            """,
        }

        assert [
            ("tests/conftest.py", 6, "CG206"),
            ("tests/test_csrf.py", 8, "CG206"),
            ("tests/test_csrf.py", 19, "CG206"),
        ] == found_in_tree(tmp_path, files)


@pytest.mark.parametrize(
    "source",
    [
        "def f(:\n",
        "x = '\\0'\0\n",
    ],
)
def test_unparsable_source_is_an_error_not_a_crash(source):
    """Source that does not parse gives an error, never an exception."""
    from flask_ctxguard._lint.runner import check_source

    result = check_source(source, "bad.py")

    assert () == result.findings
    assert result.error


class TestContextsAcrossModules:
    def test_a_base_class_teardown_in_another_module_pops(self, tmp_path):
        """'self.ctx.push()' popped by a base class elsewhere is silent."""
        files = {
            "tests/test_views.py": """
                from tests.base import Base

                class TestViews(Base):
                    def setUp(self):
                        self.ctx = self.app.app_context()
                        self.ctx.push()
            """,
        }

        assert [("tests/test_views.py", 7, "CG206")] == found_in_tree(
            tmp_path, files
        )

        files["tests/base.py"] = """
            class Base:
                def tearDown(self):
                    self.ctx.pop()
        """

        assert [] == found_in_tree(tmp_path, files)


def test_request_context_and_a_request_share_the_app_context():
    """A test_request_context and a request in one app context: CG206."""
    source = """
        def test_ajax(app, client):
            with app.app_context():  # <- CG206
                with app.test_request_context("/admin/"):
                    form = render_widgets()
                client.post("/admin/new/", data=form)

        def test_url_only(app):
            with app.app_context():
                with app.test_request_context("/"):
                    url = url_for("index")
    """

    assert marked(source) == found(source, name="test_admin.py")


SET_UP = """
    import unittest
    from myapp import create_app

    class AuthTests(unittest.TestCase):
        def setUp(self):
            self.app = create_app("testing")
            self.app_context = self.app.app_context()
            self.app_context.push()
            self.client = self.app.test_client()

        def tearDown(self):
            self.app_context.pop()

        def test_login_logout(self):  # <- CG206
            self.client.post("/auth/login", data={"email": "a@b.c"})
            self.client.get("/auth/logout")

        def test_one(self):
            self.client.get("/")

    class MoreAuthTests(AuthTests):
        def test_again(self):  # <- CG206
            for path in ("/a", "/b"):
                self.client.get(path)

    class Plain(unittest.TestCase):
        def setUp(self):
            self.client = create_app().test_client()

        def test_two(self):
            self.client.get("/a")
            self.client.get("/b")
"""


def test_tests_in_the_context_their_set_up_pushed():
    """setUp pushes an app context; a test's requests then share it."""
    assert marked(SET_UP) == found(SET_UP, name="test_auth.py")


def test_an_http_library_client_is_no_test_client():
    """A 'client' bound from an HTTP library makes no test-client request."""
    source = """
        import httpx
        from myapp import create_app

        def sync_prices():
            app = create_app()
            client = httpx.Client()
            with app.app_context():
                client.get("https://example.com/a")
                client.get("https://example.com/b")
    """

    assert [] == found(source, name="sync.py")


def test_a_fixture_is_reported_only_when_tests_request_through_it(tmp_path):
    """A fixture yielding in a context is reported once a test uses it."""
    files = {
        "tests/conftest.py": """
            import pytest

            @pytest.fixture
            def app_ctx(app):
                with app.app_context():
                    yield app

            @pytest.fixture
            def db(app_ctx):
                return make_db()
        """,
        "tests/test_models.py": """
            def test_model(db):
                assert db.query()
        """,
    }

    assert [] == found_in_tree(tmp_path, files)

    files["tests/test_views.py"] = """
        def test_pages(db, client):
            client.get("/a")
            client.get("/b")
    """

    assert [
        ("tests/conftest.py", 6, "CG206"),
        ("tests/test_views.py", 2, "CG206"),
    ] == found_in_tree(tmp_path, files)


def test_a_fixture_that_pushes_and_yields_a_client():
    """Push, yield a client, pop: the requests share the pushed context."""
    source = """
        import pytest

        @pytest.fixture
        def client(app):
            ctx = app.app_context()
            ctx.push()  # <- CG206
            yield app.test_client()
            ctx.pop()

        @pytest.fixture
        def app_ctx(app):
            ctx = app.app_context()
            ctx.push()
            yield ctx
            ctx.pop()

        @pytest.fixture
        def setup_only(app):
            ctx = app.app_context()
            ctx.push()
            init_db()
            ctx.pop()
            yield app
    """

    assert marked(source) == found(source, name="conftest.py")
