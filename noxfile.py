"""
The compatibility matrix: every supported Python this machine has, against
Flask 2.3, 3.0 and 3.1 with their Werkzeug.

    nox                      # the whole matrix
    nox -s "tests-3.12(flask='2.3')"
    nox -s tests -- -k g_leak   # arguments after -- go to pytest
"""

from __future__ import annotations

import glob
import os

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

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
FLASKS = {
    "2.3": ["flask~=2.3.0", "werkzeug~=2.3.0"],
    "3.0": ["flask~=3.0.0", "werkzeug~=3.0.0"],
    "3.1": ["flask~=3.1.0", "werkzeug~=3.1.0"],
}


@nox.session(python=PYTHONS)
@nox.parametrize("flask", list(FLASKS))
def tests(session: nox.Session, flask: str) -> None:
    """Run the whole suite against one Flask on one Python."""
    session.install("-e", ".[test]", *FLASKS[flask])
    session.run(
        "python",
        "-c",
        "import flask, werkzeug, importlib.metadata as m;"
        " print('flask', m.version('flask'), 'werkzeug',"
        " m.version('werkzeug'))",
    )
    session.run("pytest", "-q", "-p", "no:cacheprovider", *session.posargs)
