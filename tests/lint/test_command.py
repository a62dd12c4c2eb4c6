"""
``python -m flask_ctxguard lint``: what it reads, what it prints in each
format, its exit statuses, ``# noqa``, ``--select``/``--ignore`` and the
``[tool.flask_ctxguard.lint]`` settings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flask_ctxguard import _cli
from flask_ctxguard._lint import LINT_RULES

ROOT = Path(__file__).resolve().parent.parent.parent

BUGGY = """\
import contextvars
from flask import Flask, g, request
app = Flask(__name__)
tenant = contextvars.ContextVar("tenant")
cache = {}

@app.get("/")
def index():
    tenant.set(g.tenant)
    cache["r"] = request._get_current_object()
    return ""
"""
CLEAN = """\
from flask import Flask, request
app = Flask(__name__)

@app.get("/")
def index():
    return request.args.get("q", "")
"""


@pytest.fixture(name="project")
def _project(tmp_path, monkeypatch):
    """A project directory with one buggy and one clean module, as cwd."""
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "buggy.py").write_text(BUGGY)
    (tmp_path / "app" / "clean.py").write_text(CLEAN)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lint(capsys, *args):
    """Run 'lint' in-process; (status, stdout, stderr)."""
    status = _cli.main(["lint", *args], prog="ctxguard")
    out, err = capsys.readouterr()
    return status, out, err


class TestText:
    def test_findings_print_like_a_linter_and_exit_1(self, project, capsys):
        """'path:line:col: CODE message' per finding, then a summary."""
        status, out, err = lint(capsys)

        lines = out.splitlines()
        assert 1 == status
        assert "" == err
        assert lines[0].startswith(
            "app/buggy.py:9:5: CG203 'tenant.set()' in request code is never"
            " reset"
        )
        assert lines[1].startswith(
            "app/buggy.py:10:5: CG201 'request._get_current_object()' is"
            " stored in the module-level 'cache'"
        )
        assert (
            "Found 2 findings in 2 files; 'python -m flask_ctxguard explain"
            " CODE' explains a code."
        ) == lines[2]

    def test_clean_tree_exits_0_silently(self, project, capsys):
        """No finding: exit 0 and nothing printed."""
        assert (0, "", "") == lint(capsys, "app/clean.py")

    def test_noqa_suppresses_on_its_line(self, project, capsys):
        """'# noqa: CODE' and a bare '# noqa' silence their line only."""
        source = BUGGY.replace(
            "tenant.set(g.tenant)", "tenant.set(g.tenant)  # noqa: CG203"
        ).replace("_get_current_object()", "_get_current_object()  # noqa")
        (project / "app" / "buggy.py").write_text(source)

        assert 0 == lint(capsys)[0]

        (project / "app" / "buggy.py").write_text(
            source.replace("# noqa: CG203", "# noqa: CG201, E501")
        )
        status, out, _ = lint(capsys)

        assert 1 == status
        assert ["CG203"] == [line.split()[1] for line in out.splitlines()[:-1]]

    @pytest.mark.parametrize(
        ("args", "codes"),
        [
            (["--select", "CG201"], ["CG201"]),
            (["--select", "cg203,CG201"], ["CG203", "CG201"]),
            (["--ignore", "CG201"], ["CG203"]),
            (["--select", "CG20", "--ignore", "CG203"], ["CG201"]),
        ],
    )
    def test_select_and_ignore(self, project, capsys, args, codes):
        """--select keeps codes or prefixes, --ignore drops them."""
        _, out, _ = lint(capsys, *args)

        assert codes == [line.split()[1] for line in out.splitlines()[:-1]]

    def test_output_file(self, project, capsys):
        """-o writes the report to a file."""
        status, out, _ = lint(capsys, "-o", "report.txt")

        assert 1 == status
        assert "" == out
        assert "CG203" in (project / "report.txt").read_text()


class TestFormats:
    def test_json(self, project, capsys):
        """--format json: one object with files, findings and errors."""
        (project / "app" / "broken.py").write_text("def f(:\n")

        status, out, _ = lint(capsys, "--format", "json")

        report = json.loads(out)
        assert 1 == status
        assert 2 == report["files"]
        assert {
            "code": "CG203",
            "kind": "contextvar-not-reset",
            "prevents": ["CG106"],
            "path": "app/buggy.py",
            "line": 9,
            "column": 5,
        }.items() <= report["findings"][0].items()
        assert ["app/broken.py"] == [e["path"] for e in report["errors"]]

    def test_sarif_has_the_required_fields(self, project, capsys):
        """--format sarif: SARIF 2.1.0 with rules and located results."""
        status, out, _ = lint(capsys, "--format", "sarif")

        sarif = json.loads(out)
        assert 1 == status
        assert "2.1.0" == sarif["version"]
        assert sarif["$schema"].endswith("sarif-2.1.0.json")
        (run,) = sarif["runs"]
        driver = run["tool"]["driver"]
        assert "flask_ctxguard lint" == driver["name"]
        assert sorted(LINT_RULES) == [rule["id"] for rule in driver["rules"]]
        for rule in driver["rules"]:
            assert rule["shortDescription"]["text"]
            assert rule["helpUri"].endswith("#" + rule["id"].lower())
        first = run["results"][0]
        assert "CG203" == first["ruleId"]
        assert driver["rules"][first["ruleIndex"]]["id"] == first["ruleId"]
        assert "error" == first["level"]
        assert first["message"]["text"].startswith("CG203 'tenant.set()'")
        (location,) = first["locations"]
        physical = location["physicalLocation"]
        assert "app/buggy.py" == physical["artifactLocation"]["uri"]
        assert {"startLine": 9, "startColumn": 5} == physical["region"]

    def test_sarif_when_clean(self, project, capsys):
        """A clean SARIF run has an empty results list and exits 0."""
        status, out, _ = lint(capsys, "--format", "sarif", "app/clean.py")

        assert 0 == status
        assert [] == json.loads(out)["runs"][0]["results"]


class TestErrors:
    def test_unparsable_file_is_named_and_skipped(self, project, capsys):
        """A file that does not parse is reported on stderr; others go on."""
        (project / "app" / "broken.py").write_text("def f(:\n")

        status, out, err = lint(capsys)

        assert 1 == status
        assert "CG203" in out
        assert err.startswith("app/broken.py: cannot parse, skipped:")

    def test_only_unparsable_files_exit_2(self, project, capsys):
        """Nothing could be checked at all: exit 2."""
        (project / "app" / "broken.py").write_text("def f(:\n")

        status, out, err = lint(capsys, "app/broken.py")

        assert 2 == status
        assert "" == out
        assert "app/broken.py: cannot parse" in err

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["missing"], "no such file or directory: 'missing'"),
            (["--select", "CG299"], "--select: unknown code 'CG299'"),
            (["--format", "xml"], "argument --format: invalid choice"),
            (["--jobs", "-1"], "--jobs must be 0 or more; got -1"),
        ],
    )
    def test_usage_errors_exit_2(self, project, capsys, args, message):
        """A usage error exits 2 with one line on stderr."""
        status, out, err = lint(capsys, *args)

        assert 2 == status
        assert "" == out
        assert err.startswith("ctxguard lint: error: ")
        assert message in err
        assert 1 == len(err.splitlines())

    def test_unwritable_output_exits_2(self, project, capsys):
        """-o into a missing directory is a usage error."""
        status, _, err = lint(capsys, "-o", "no/such/dir/out.txt")

        assert 2 == status
        assert "cannot write 'no/such/dir/out.txt'" in err


class TestConfig:
    def write(self, project, table):
        (project / "pyproject.toml").write_text(
            "[project]\nname = 'x'\n\n[tool.flask_ctxguard.lint]\n"
            + textwrap.dedent(table)
        )

    def test_select_ignore_and_exclude_from_pyproject(self, project, capsys):
        """The table's select, ignore and exclude apply."""
        self.write(project, 'ignore = ["CG203"]\n')
        assert ["CG201"] == [
            line.split()[1] for line in lint(capsys)[1].splitlines()[:-1]
        ]

        self.write(project, 'select = ["CG203"]\n')
        assert ["CG203"] == [
            line.split()[1] for line in lint(capsys)[1].splitlines()[:-1]
        ]

        self.write(project, 'exclude = ["app/buggy.py"]\n')
        assert 0 == lint(capsys)[0]

    def test_command_line_select_wins(self, project, capsys):
        """--select replaces the table's select."""
        self.write(project, 'select = ["CG203"]\n')

        _, out, _ = lint(capsys, "--select", "CG201")

        assert ["CG201"] == [line.split()[1] for line in out.splitlines()[:-1]]

    @pytest.mark.parametrize(
        ("table", "message"),
        [
            ("colour = true\n", "unknown key 'colour'"),
            ('select = "CG201"\n', "'select' must be a list of strings"),
            ('ignore = ["CG999"]\n', "unknown code 'CG999'"),
            ('respect-gitignore = "no"\n', "must be true or false"),
            ("select = [\n", "does not parse"),
        ],
    )
    def test_bad_settings_exit_2(self, project, capsys, table, message):
        """A wrong key or value in the table is a usage error."""
        self.write(project, table)

        status, _, err = lint(capsys)

        assert 2 == status
        assert message in err

    def test_small_reader_without_a_toml_library(self, tmp_path):
        """Python 3.10 without tomli: the small reader takes the table."""
        from flask_ctxguard._lint import config

        path = tmp_path / "pyproject.toml"
        text = textwrap.dedent(
            """
            [tool.ruff]
            select = ["E"]

            [tool.flask_ctxguard.lint]
            select = [
                "CG201",  # objects
                "CG203",
            ]
            respect-gitignore = false
            exclude = ["migrations/*"]

            [tool.other]
            x = 1
            """
        )

        table = config._small_table(text, path)

        assert {
            "select": ["CG201", "CG203"],
            "respect-gitignore": False,
            "exclude": ["migrations/*"],
        } == table
        with pytest.raises(config.ConfigError, match="install 'tomli'"):
            config._small_table(
                "[tool.flask_ctxguard.lint]\nselect = {a = 1}\n", path
            )


#: A test module with both CG206 shapes: a context pushed at import and
#: never popped (a leak on every Flask), and two test-client requests in
#: one pushed app context (one shared 'g' on Flask 3.1 and earlier only).
CONTEXTS = """\
from flask import Flask

app = Flask(__name__)
app.app_context().push()


def test_two_requests():
    client = app.test_client()
    with app.app_context():
        client.get("/a")
        client.get("/b")
"""

#: (line, code) of CONTEXTS' findings on Flask 3.1 and on 3.2.
ON_3_1 = [("4", "CG206"), ("9", "CG206")]
ON_3_2 = [("4", "CG206")]


class TestFlaskVersion:
    """CG206's shared-context shape is judged by the Flask the code runs
    on; the leaked context is a finding on every version."""

    @pytest.fixture(name="contexts")
    def _contexts(self, tmp_path, monkeypatch):
        (tmp_path / "test_contexts.py").write_text(CONTEXTS)
        monkeypatch.chdir(tmp_path)
        return tmp_path

    def found(self, capsys, *args):
        status, out, err = lint(capsys, *args)
        assert "" == err
        assert (1, ["Found"]) == (status, out.splitlines()[-1].split()[:1])
        return [
            (line.split(":")[1], line.split()[1])
            for line in out.splitlines()[:-1]
        ]

    @pytest.mark.parametrize(
        ("version", "expected"),
        [
            ("2.3", ON_3_1),
            ("3.1.3", ON_3_1),
            ("3.2", ON_3_2),
            ("3.2.0.dev0", ON_3_2),
            ("4.0", ON_3_2),
        ],
    )
    def test_option(self, contexts, capsys, version, expected):
        """--flask-version decides whether the shared context is one."""
        assert expected == self.found(capsys, "--flask-version", version)

    def test_setting_and_the_option_over_it(self, contexts, capsys):
        """flask-version in the table applies; the option wins over it."""
        (contexts / "pyproject.toml").write_text(
            '[tool.flask_ctxguard.lint]\nflask-version = "3.2"\n'
        )

        assert ON_3_2 == self.found(capsys)
        assert ON_3_1 == self.found(capsys, "--flask-version", "3.1")

    def test_default_is_the_installed_flask(self, contexts, capsys):
        """Without either, the installed Flask's version decides (this
        suite runs on 2.3 to 3.2)."""
        import importlib.metadata

        installed = importlib.metadata.version("flask")
        major, minor = (int(part) for part in installed.split(".")[:2])

        expected = ON_3_1 if (major, minor) < (3, 2) else ON_3_2
        assert expected == self.found(capsys)

    def test_no_flask_installed_assumes_a_shared_g(
        self, contexts, capsys, monkeypatch
    ):
        """With no Flask to read, the shape is a finding, as on every
        released Flask but 3.2."""
        from flask_ctxguard import _lint

        monkeypatch.setattr(_lint, "installed_version", lambda name="": None)

        assert ON_3_1 == self.found(capsys)

    @pytest.mark.parametrize(
        ("args", "table", "message"),
        [
            (
                ["--flask-version", "latest"],
                "",
                "--flask-version: a Flask version looks like '3.1' or"
                " '3.2.0'; got 'latest'",
            ),
            (
                [],
                'flask-version = "three"\n',
                "'flask-version' in * a Flask version looks like",
            ),
            ([], "flask-version = 3.2\n", "'flask-version' must be a string"),
        ],
    )
    def test_bad_versions_exit_2(self, contexts, capsys, args, table, message):
        """A version that is no version is a usage error naming where."""
        import fnmatch

        (contexts / "pyproject.toml").write_text(
            "[tool.flask_ctxguard.lint]\n" + table
        )

        status, out, err = lint(capsys, *args)

        assert (2, "") == (status, out)
        assert fnmatch.fnmatch(err, f"*{message}*"), err


def test_installed_version_of_a_missing_distribution():
    """installed_version() reads metadata only, and says None for what
    is not installed."""
    from flask_ctxguard._core.commands import installed_version

    assert None is installed_version("no-such-distribution-ctxguard")
    assert installed_version("flask")


class TestFiles:
    def test_virtualenvs_caches_and_gitignored_files_are_skipped(
        self, project, capsys
    ):
        """Virtualenvs, .git, node_modules and .gitignore'd paths: skipped."""
        (project / ".git").mkdir()
        for where in (
            ".venv/lib/x.py",
            "env/lib/x.py",
            "node_modules/pkg/x.py",
            ".git/hooks/x.py",
            "generated/x.py",
            "app/build.py",
            "app/keep/x.py",
        ):
            path = project / where
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(BUGGY)
        (project / "env" / "pyvenv.cfg").write_text("home = /usr\n")
        (project / ".gitignore").write_text("generated/\n/app/build.py\n")
        (project / "app" / ".gitignore").write_text("keep/\n!keep/\n")

        _, out, _ = lint(capsys)

        assert ["app/buggy.py", "app/keep/x.py"] == sorted(
            {line.split(":")[0] for line in out.splitlines()[:-1]}
        )

    def test_a_named_file_is_always_read(self, project, capsys):
        """A file given on the command line is read even if ignored."""
        (project / ".git").mkdir()
        (project / ".gitignore").write_text("app/\n")

        assert 0 == lint(capsys)[0]
        assert 1 == lint(capsys, "app/buggy.py")[0]

    def test_gitignore_patterns(self, tmp_path):
        """The matcher's globs, anchors, directories and negations."""
        from flask_ctxguard._lint.files import GitIgnore

        (tmp_path / ".gitignore").write_text(
            "# comment\n*.gen.py\n/top.py\ndocs/**/conf.py\nout/\n"
            "!important.gen.py\nfile[0-9].py\n"
        )
        ignore = GitIgnore()
        ignore.read(tmp_path)

        def ignored(path, is_dir=False):
            return ignore.ignores(tmp_path / path, is_dir=is_dir)

        assert ignored("a/b.gen.py")
        assert not ignored("a/important.gen.py")
        assert ignored("top.py")
        assert not ignored("sub/top.py")
        assert ignored("docs/a/b/conf.py")
        assert ignored("out", is_dir=True)
        assert not ignored("out")
        assert ignored("out/x.py")
        assert ignored("file3.py")
        assert not ignored("filex.py")

    def test_parallel_run_finds_the_same(self, project, capsys):
        """--jobs 2 reports what one process reports."""
        for index in range(3):
            (project / "app" / f"copy{index}.py").write_text(BUGGY)

        one = lint(capsys, "--jobs", "1", "--format", "json")
        two = lint(capsys, "--jobs", "2", "--format", "json")

        assert json.loads(one[1]) == json.loads(two[1])
        assert 8 == len(json.loads(two[1])["findings"])


class TestCommandLine:
    def test_python_dash_m_lint_in_a_subprocess(self, project):
        """'python -m flask_ctxguard lint' runs as a command."""
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "flask_ctxguard",
                "lint",
                "--format",
                "json",
            ],
            cwd=project,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert 1 == result.returncode, result.stderr
        codes = [f["code"] for f in json.loads(result.stdout)["findings"]]
        assert ["CG203", "CG201"] == codes

    def test_lint_help(self, capsys):
        """'lint --help' describes the options and exits 0."""
        with pytest.raises(SystemExit) as info:
            _cli.main(["lint", "--help"], prog="ctxguard")

        out = capsys.readouterr().out
        assert 0 == info.value.code
        assert out.startswith("usage: ctxguard lint")
        assert "--format {text,json,sarif}" in out

    def test_top_level_help_lists_lint(self, capsys):
        """The command's help lists 'lint'."""
        with pytest.raises(SystemExit):
            _cli.main(["--help"], prog="ctxguard")

        assert "lint      check Python source (rules CG2xx)" in (
            capsys.readouterr().out
        )

    def test_pre_commit_hook_definition(self):
        """.pre-commit-hooks.yaml declares the hook the docs show."""
        text = (ROOT / ".pre-commit-hooks.yaml").read_text()

        assert "- id: flask-ctxguard-lint" in text
        assert "entry: python -m flask_ctxguard lint" in text
        assert "language: python" in text
        assert "types: [python]" in text


class TestIgnoredRoots:
    def test_an_ignored_directory_named_on_the_command_line_is_read(
        self, project, capsys
    ):
        """A directory the repository ignores is still read when named."""
        (project / ".git").mkdir()
        (project / ".gitignore").write_text("app/\n")

        status, out, _ = lint(capsys, "app")

        assert 1 == status
        assert "app/buggy.py:9:5: CG203" in out

    def test_gitignore_outside_a_repository_is_not_read(self, project, capsys):
        """Without a git repository, .gitignore files do not count."""
        (project / ".gitignore").write_text("app/\n")

        assert 1 == lint(capsys)[0]


class TestEdges:
    def test_unreadable_file_is_an_error(self, tmp_path):
        """A path that cannot be read is reported, not raised."""
        from flask_ctxguard._lint.runner import check_file

        result = check_file(str(tmp_path / "gone.py"))

        assert "No such file or directory" == result.error

    def test_deeply_nested_source_is_an_error(self):
        """Source too deep for the parser is an error, not a crash."""
        from flask_ctxguard._lint.runner import check_source

        result = check_source("x = " + "(" * 300_000 + ")" * 300_000)

        assert result.error

    def test_pyproject_without_the_table_and_with_a_bad_one(self, tmp_path):
        """No table: defaults; a table that is not one: an error."""
        from flask_ctxguard._lint import config

        path = tmp_path / "pyproject.toml"
        path.write_text("[project]\nname = 'x'\n")

        assert config.LintConfig(source=str(path)) == config.load_config(path)
        assert config.LintConfig() == config.load_config(None)

        path.write_text("[tool.flask_ctxguard]\nlint = 3\n")
        with pytest.raises(config.ConfigError, match="must be a table"):
            config.load_config(path)

        with pytest.raises(config.ConfigError, match="cannot read"):
            config.load_config(tmp_path)

    def test_no_pyproject_anywhere(self, tmp_path):
        """Without a pyproject.toml up to the root, there are no settings."""
        from flask_ctxguard._lint import config

        assert None is config.find_pyproject(Path("/"))


def test_columns_count_characters_not_bytes():
    """A column after non-ASCII text counts characters, as editors do."""
    from flask_ctxguard._lint.runner import check_source

    source = (
        "from flask import Flask, request\n"
        "app = Flask(__name__)\n"
        "CACHE = {}\n"
        "@app.get('/')\n"
        "def index():\n"
        "    é = 1; CACHE[é] = request._get_current_object()\n"
    )

    (finding,) = check_source(source).findings

    assert (6, 12) == (finding.line, finding.column)


def test_noqa_lines_are_counted_as_python_counts_them():
    """A form feed is no line break: '# noqa' stays on the finding's line."""
    from flask_ctxguard._lint.runner import check_source

    source = (
        "from flask import Flask, request\n"
        "app = Flask(__name__)\n"
        "\x0c\n"
        "CACHE = {}\n"
        "@app.get('/')\n"
        "def index():  # x \x0c y\n"
        "    CACHE[1] = request._get_current_object()  # noqa: CG201\n"
    )

    assert () == check_source(source).findings
