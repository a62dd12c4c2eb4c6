# The two commands: `make demo` and `make test`. Both create .venv on demand.
# `make docs` builds the docs site into docs/_build/html (the docs extra).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed

.PHONY: test lint typecheck pytest browser demo docs bench compat matrix clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(DOCS_STAMP)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The HTML report is tested in a real browser: Debian's chromium, installed
# here when missing (root on these machines; elsewhere, install it yourself).
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium for the HTML report's browser tests"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

pytest: $(STAMP) browser
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest $(PYTEST_ARGS)
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report --include='flask_ctxguard/*' --fail-under=94

demo: $(STAMP)
	$(BIN)/python -m example_app.demo

# Warnings are errors (-W), every reference must resolve (-n, nitpicky), and
# every internal link of the built pages must lead somewhere: there is no
# network for Sphinx's linkcheck, so external links are not followed.
docs: $(DOCS_STAMP)
	rm -rf docs/_build docs/rules
	$(BIN)/python docs/_inventories/build.py
	$(BIN)/sphinx-build -b html -W --keep-going -n docs docs/_build/html
	$(BIN)/python docs/_ext/check_links.py docs/_build/html

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python -m benchmarks

compat: $(STAMP)
	$(BIN)/python compat/run.py

matrix: $(STAMP)
	$(BIN)/nox

clean:
	rm -rf $(VENV) docs/_build docs/rules .coverage .coverage.* .mypy_cache .ruff_cache .pytest_cache .nox compat/work
