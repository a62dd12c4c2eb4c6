"""
Sphinx configuration of the flask_ctxguard docs site (``make docs``).

The pages are Markdown (MyST); the API reference comes from the docstrings
(autodoc, Napoleon); the rule pages are generated from rules.md by the
local extension in ``_ext/ctxguard_docs.py``.
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

project = "flask_ctxguard"
author = "flask_ctxguard developers"
copyright = "flask_ctxguard developers"
release = importlib.metadata.version("flask-ctxguard")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "ctxguard_docs",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "_inventories"]
# Broken internal references fail the build (make docs runs with -W -n):
# every {py:...} role, every Markdown link to a page or a heading.
nitpicky = True

# -- MyST ---------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist"]
# Headings down to ### get anchors, as on GitHub: rules.md#cg106,
# configuration.md#ctxguard_mode.
myst_heading_anchors = 3

# -- autodoc ------------------------------------------------------------------

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_typehints_description_target = "documented"
autodoc_default_options = {"members": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Attributes: sections as fields, so dataclass fields are not described
# twice (once by Napoleon, once by autodoc).
napoleon_use_ivar = True
# hammer's *requests* is typed with a private Protocol; its docstring says
# what it takes.
nitpick_ignore_regex = [("py:class", r"flask_ctxguard\..*\._Plan")]

# -- intersphinx --------------------------------------------------------------

# This build has no network (neither here nor in CI): intersphinx cannot
# download each project's objects.inv. _inventories/ holds small local
# inventories with the real URLs of the targets these docs reference,
# written by _inventories/build.py from the *.txt lists beside it; add a
# line there (and run it) when a page references a new Flask, Werkzeug,
# structlog or Python object.
intersphinx_mapping = {
    name: (url, str(HERE / "_inventories" / f"{name}.inv"))
    for name, url in {
        "python": "https://docs.python.org/3/",
        "flask": "https://flask.palletsprojects.com/en/stable/",
        "werkzeug": "https://werkzeug.palletsprojects.com/en/stable/",
        "structlog": "https://www.structlog.org/en/stable/",
        "pytest": "https://docs.pytest.org/en/stable/",
        "blinker": "https://blinker.readthedocs.io/en/stable/",
    }.items()
}

# -- HTML ---------------------------------------------------------------------

html_theme = "furo"
html_title = "flask_ctxguard"
html_baseurl = "https://flask-ctxguard.readthedocs.io/en/latest/"
html_show_sourcelink = False
