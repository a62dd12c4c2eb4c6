"""
The Flask projects whose own test suites `compat/run.py` runs.

Each entry says which sdist to fetch from PyPI, what its tests need, how
to run them, and which tests must be left out because they need a service
this machine does not have. Versions of shared libraries are pinned in
`compat/constraints.txt`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Project:
    """
    One test suite to run bare and under the ctxguard plugin.
    """

    #: Name shown in the table and accepted by ``--only``.
    name: str
    #: Distribution name on PyPI.
    dist: str
    #: Version to download (``--no-binary :all:``) and install.
    version: str
    #: Test dependencies, installed into the shared compat venv.
    test_deps: tuple[str, ...] = ()
    #: Directory inside the unpacked sdist that pytest runs in.
    workdir: str = "."
    #: What to ``pip install`` from the unpacked sdist, relative to it.
    install: tuple[str, ...] = (".",)
    #: Test paths passed to pytest, relative to *workdir*.
    testpaths: tuple[str, ...] = ("tests",)
    #: Plugins the suite needs, loaded with ``-p`` (autoload is off).
    plugins: tuple[str, ...] = ()
    #: Further pytest arguments (``-o addopts=...`` to drop ``--cov``).
    args: tuple[str, ...] = ()
    #: Tests that need a service this machine lacks and do not skip
    #: themselves, each with the reason: paths are left out with
    #: ``--ignore``, exact node ids are deselected by
    #: ``compat/plugins/compat_deselect.py``.
    leave_out: tuple[tuple[str, str], ...] = ()
    #: Keep pytest's cache plugin (pytest-xprocess keeps its state there);
    #: otherwise runs pass ``-p no:cacheprovider``.
    cacheprovider: bool = False
    #: Environment variables removed for this suite.
    unset_env: tuple[str, ...] = ()
    #: Part of the ``--quick`` subset.
    quick: bool = False

    @property
    def slug(self) -> str:
        """A file-system friendly name."""
        return self.name.lower().replace(" ", "-").replace("/", "-")


_NO_POSTGRES = "needs a PostgreSQL server"
_NO_MONGO = "needs a MongoDB server"

PROJECTS: tuple[Project, ...] = (
    Project(
        name="Flask",
        dist="flask",
        version="3.1.3",
        test_deps=("asgiref", "greenlet", "python-dotenv"),
        quick=True,
    ),
    Project(
        # The tutorial app shipped in Flask's sdist, installed with pip.
        name="Flask tutorial",
        dist="flask",
        version="3.1.3",
        workdir="examples/tutorial",
        install=("examples/tutorial",),
    ),
    Project(
        name="Flask-Login",
        dist="flask-login",
        version="0.6.3",
        test_deps=("asgiref", "blinker", "semantic-version"),
        quick=True,
    ),
    Project(
        name="Flask-WTF",
        dist="flask-wtf",
        version="1.3.0",
        test_deps=("flask-babel", "flask-reuploaded"),
    ),
    Project(
        name="Flask-SQLAlchemy",
        dist="flask-sqlalchemy",
        version="3.1.1",
        test_deps=("blinker",),
    ),
    Project(
        name="Flask-Limiter",
        dist="flask-limiter",
        version="4.1.1",
        test_deps=(
            "rich>=12,<15",  # the cli extra
            "flask[async]",
            "asgiref",
            "flask-restful",
            "flask-restx",
            "hiro",
            "pymemcache",
            "pymongo",
            "pytest-check",
            "pytest-mock",
            "redis",
        ),
        # Its tests reach Redis, Memcached and MongoDB through the
        # 'docker_services' fixture of lovely-pytest-docker; our stand-in
        # skips them. pytest.ini adds '--cov', which we do not load.
        plugins=("pytest_mock", "pytest_check.plugin", "compat_docker_stub"),
        args=("-o", "addopts=--tb=short -rfEsxX"),
        leave_out=(
            (
                "tests/test_error_handling.py::test_fallback_to_memory",
                "needs a Redis server, does not ask for one by fixture",
            ),
        ),
    ),
    Project(
        name="Flask-JWT-Extended",
        dist="flask-jwt-extended",
        version="4.7.4",
        test_deps=("cryptography", "python-dateutil"),
    ),
    Project(
        name="APIFlask",
        dist="apiflask",
        version="3.1.2",
        test_deps=(
            "asgiref",
            "authlib",
            "flask-sqlalchemy",
            "marshmallow-dataclass",
            "openapi-spec-validator",
            "packaging",
            "pyyaml",
        ),
        testpaths=("tests", "examples"),
        # pyproject.toml adds '--cov=apiflask'; pytest-cov is not loaded.
        args=("-o", "addopts="),
    ),
    Project(
        name="Flask-Caching",
        dist="flask-caching",
        version="2.5.1",
        # Redis and Memcached tests skip themselves when the servers are
        # missing, unless CI=true, where they fail on purpose. Any memcache
        # client lets MemcachedCache be built; python-memcached is pure
        # Python, pylibmc (its own choice) needs a compiler on new Pythons.
        test_deps=(
            "flask[async]",
            "asgiref",
            "pytest-xprocess",
            "python-memcached",
            "redis",
        ),
        plugins=("xprocess.pytest_xprocess",),
        cacheprovider=True,
        unset_env=("CI",),
    ),
    Project(
        name="flask-smorest",
        dist="flask-smorest",
        version="0.47.0",
        test_deps=("packaging", "pyyaml", "webargs", "apispec"),
    ),
    Project(
        name="Flask-HTTPAuth",
        dist="flask-httpauth",
        version="4.8.1",
        test_deps=("asgiref",),
    ),
    Project(
        name="Flask-CORS",
        dist="flask-cors",
        version="6.0.5",
        test_deps=("packaging",),
    ),
    Project(
        name="Flask-Admin",
        dist="flask-admin",
        version="2.2.1",
        test_deps=(
            "flask[async]",
            "flask-sqlalchemy",
            "flask-sqlalchemy-lite",
            "sqlalchemy-utils",
            "sqlalchemy-citext",
            "colour",
            "email-validator",
            "arrow",
            "peewee",
            "wtf-peewee",
            "boto3",
            "moto",
            "azure-storage-blob",
            "pillow",
            "tablib",
            "flask-babel",
            "beautifulsoup4",
        ),
        testpaths=("flask_admin/tests",),
        leave_out=(
            ("flask_admin/tests/geoa", _NO_POSTGRES + " with PostGIS"),
            ("flask_admin/tests/sqla/test_postgres.py", _NO_POSTGRES),
            ("flask_admin/tests/mongoengine", _NO_MONGO),
            ("flask_admin/tests/pymongo", _NO_MONGO),
            (
                "flask_admin/tests/fileadmin/test_fileadmin_azure.py",
                "needs the Azurite storage emulator",
            ),
        ),
    ),
)
