"""
The compatibility matrix: the suite against Flask 2.3, 3.0, 3.1 and 3.2
(with their Werkzeug) on the supported Pythons this machine has.

    nox                      # the whole matrix
    nox -l                   # its sessions
    nox -s "tests(python='3.13', flask='3.2')"
    nox -s tests -- -k g_leak   # arguments after -- go to pytest

Not every Flask runs on every Python, to keep the matrix near 15 minutes
on two cores (one run of the suite takes two to four): as Flask's own
``tests-min`` job does, the oldest supported Flask (2.3) runs on the oldest
Python, the newest released one (3.1) on the oldest and the newest Python,
the middle one (3.0) on one Python in between, and Flask 3.2, whose
changes are the largest, on the oldest and the newest Python.

Flask 3.2 is not on PyPI yet: its sessions install the development wheel
from ``../shared/wheels/`` (next to the repository, as on CI) and are
skipped, saying so, when the wheel is not there (a fresh clone).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import nox

# pyenv's shims only run the active version: put every installed version's
# own bin directory on PATH so that "python3.10" ... "python3.13" resolve.
_pyenv_bins = sorted(
    glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[0-9].*/bin"))
)
os.environ["PATH"] = os.pathsep.join([*_pyenv_bins, os.environ["PATH"]])

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
# CI machines have 3.10-3.13; a machine without one of them skips it.
nox.options.error_on_missing_interpreters = False

OLDEST, NEWEST = "3.10", "3.13"
FLASK_32_WHEEL = (
    Path(__file__).resolve().parent.parent
    / "shared"
    / "wheels"
    / "flask-3.2.0.dev0-py3-none-any.whl"
)
FLASKS = {
    "2.3": ["flask~=2.3.0", "werkzeug~=2.3.0"],
    "3.0": ["flask~=3.0.0", "werkzeug~=3.0.0"],
    "3.1": ["flask~=3.1.0", "werkzeug~=3.1.0"],
    "3.2": [str(FLASK_32_WHEEL), "werkzeug~=3.1.0"],
}
MATRIX = [
    (OLDEST, "2.3"),
    ("3.12", "3.0"),
    (OLDEST, "3.1"),
    (NEWEST, "3.1"),
    (OLDEST, "3.2"),
    (NEWEST, "3.2"),
]


@nox.session
@nox.parametrize(("python", "flask"), MATRIX)
def tests(session: nox.Session, flask: str) -> None:
    """Run the whole suite against one Flask on one Python."""
    if flask == "3.2" and not FLASK_32_WHEEL.is_file():
        session.skip(
            f"Flask 3.2 is not on PyPI and its development wheel is not at"
            f" {FLASK_32_WHEEL} (put it there to test Flask 3.2)"
        )
    session.install("-e", ".[test]", *FLASKS[flask])
    session.run(
        "python",
        "-c",
        "import flask, werkzeug, importlib.metadata as m;"
        " print('flask', m.version('flask'), 'werkzeug',"
        " m.version('werkzeug'))",
    )
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
