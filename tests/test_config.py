from __future__ import annotations

import pytest
from flask import Flask

from flask_ctxguard import ConfigurationError, CtxGuard, CtxGuardError


def _app(**config):
    app = Flask("configured")
    app.config.update(config)
    return app


class TestDefaults:
    def test_log_mode_by_default(self):
        """An app that is not testing defaults to log mode."""
        app = _app()
        CtxGuard(app)

        assert "log" == app.config["CTXGUARD_MODE"]

    def test_raise_mode_when_testing(self):
        """An app with TESTING defaults to raise mode and keeps stacks."""
        app = _app(TESTING=True)
        CtxGuard(app)

        assert "raise" == app.config["CTXGUARD_MODE"]
        assert app.config["CTXGUARD_STACKS"] is True

    def test_stacks_follow_debug(self):
        """CTXGUARD_STACKS defaults to app.debug or app.testing."""
        app = _app(DEBUG=True)
        CtxGuard(app)

        assert app.config["CTXGUARD_STACKS"] is True

    def test_other_defaults(self):
        """Values are not logged, nothing is ignored, 1000 are kept."""
        app = _app()
        CtxGuard(app)

        assert app.config["CTXGUARD_STACKS"] is False
        assert app.config["CTXGUARD_LOG_VALUES"] is False
        assert () == app.config["CTXGUARD_IGNORE"]
        assert 1000 == app.config["CTXGUARD_MAX_VIOLATIONS"]

    def test_explicit_values_are_kept(self):
        """init_app never overwrites a value the app configured."""
        app = _app(
            CTXGUARD_MODE="raise",
            CTXGUARD_STACKS=True,
            CTXGUARD_LOG_VALUES=True,
            CTXGUARD_IGNORE=["CG106", "g._sa_*"],
            CTXGUARD_MAX_VIOLATIONS=5,
        )
        CtxGuard(app)

        assert "raise" == app.config["CTXGUARD_MODE"]
        assert app.config["CTXGUARD_STACKS"] is True
        assert app.config["CTXGUARD_LOG_VALUES"] is True
        assert ["CG106", "g._sa_*"] == app.config["CTXGUARD_IGNORE"]
        assert 5 == app.config["CTXGUARD_MAX_VIOLATIONS"]


class TestBadValues:
    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            (
                "CTXGUARD_MODE",
                "loud",
                "CTXGUARD_MODE must be one of 'raise', 'log', 'off';"
                " got 'loud'.",
            ),
            (
                "CTXGUARD_MODE",
                "LOG",
                "CTXGUARD_MODE must be one of 'raise', 'log', 'off';"
                " got 'LOG'.",
            ),
            (
                "CTXGUARD_STACKS",
                "yes",
                "CTXGUARD_STACKS must be True or False; got 'yes'.",
            ),
            (
                "CTXGUARD_LOG_VALUES",
                1,
                "CTXGUARD_LOG_VALUES must be True or False; got 1.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                0,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got 0.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                True,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer;"
                " got True.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                "10",
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer;"
                " got '10'.",
            ),
        ],
    )
    def test_bad_value_names_key_value_and_allowed(self, key, value, message):
        """A bad value fails init_app naming the key, value and allowed."""
        app = _app(**{key: value})

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert message == str(excinfo.value)

    def test_ignore_as_a_string(self):
        """A bare string for CTXGUARD_IGNORE suggests the tuple meant."""
        app = _app(CTXGUARD_IGNORE="CG106")

        with pytest.raises(ConfigurationError, match=r"\('CG106',\)"):
            CtxGuard(app)

    @pytest.mark.parametrize("value", [None, 3, [""], [3]])
    def test_ignore_bad_entries(self, value):
        """CTXGUARD_IGNORE takes an iterable of non-empty strings."""
        app = _app(CTXGUARD_IGNORE=value)

        with pytest.raises(ConfigurationError, match="CTXGUARD_IGNORE"):
            CtxGuard(app)

    def test_ignore_unknown_code(self):
        """An unknown code in CTXGUARD_IGNORE lists the known codes."""
        app = _app(CTXGUARD_IGNORE=["CG199"])

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert (
            "CTXGUARD_IGNORE names the unknown code 'CG199'; the codes are"
            " CG101, CG102, CG103, CG104, CG105, CG106."
        ) == str(excinfo.value)

    def test_configuration_error_is_a_value_error(self):
        """ConfigurationError is both a CtxGuardError and a ValueError."""
        app = _app(CTXGUARD_MODE="nope")

        with pytest.raises(ValueError, match="CTXGUARD_MODE") as excinfo:
            CtxGuard(app)

        assert isinstance(excinfo.value, CtxGuardError)

    def test_bad_config_installs_nothing(self):
        """A failed init_app leaves the app untouched."""
        app = _app(CTXGUARD_MODE="nope")
        request_class = app.request_class

        with pytest.raises(ConfigurationError):
            CtxGuard(app)

        assert "ctxguard" not in app.extensions
        assert request_class is app.request_class


MODES = "'raise', 'log', 'off'"
IGNORE_TYPE = (
    "CTXGUARD_IGNORE must be a list or tuple of codes and subjects, such as"
    " ('CG106', 'g._sa_session'); got {}."
)
IGNORE_ENTRY = (
    "CTXGUARD_IGNORE entries must be non-empty strings (a code such as"
    " 'CG101' or a subject such as 'g.user'); got {}."
)


class TestMessages:
    @pytest.mark.parametrize(
        ("key", "value", "message"),
        [
            (
                "CTXGUARD_MODE",
                None,
                f"CTXGUARD_MODE must be one of {MODES}; got None.",
            ),
            (
                "CTXGUARD_MODE",
                True,
                f"CTXGUARD_MODE must be one of {MODES}; got True.",
            ),
            (
                "CTXGUARD_STACKS",
                "false",
                "CTXGUARD_STACKS must be True or False; got 'false'.",
            ),
            (
                "CTXGUARD_STACKS",
                None,
                "CTXGUARD_STACKS must be True or False; got None.",
            ),
            (
                "CTXGUARD_LOG_VALUES",
                "True",
                "CTXGUARD_LOG_VALUES must be True or False; got 'True'.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                -1,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got -1.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                2.5,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got 2.5.",
            ),
            (
                "CTXGUARD_MAX_VIOLATIONS",
                None,
                "CTXGUARD_MAX_VIOLATIONS must be a positive integer;"
                " got None.",
            ),
            ("CTXGUARD_IGNORE", None, IGNORE_TYPE.format("None")),
            ("CTXGUARD_IGNORE", 3, IGNORE_TYPE.format("3")),
            ("CTXGUARD_IGNORE", b"CG106", IGNORE_TYPE.format("b'CG106'")),
            ("CTXGUARD_IGNORE", [3], IGNORE_ENTRY.format("3")),
            ("CTXGUARD_IGNORE", ["CG101", " "], IGNORE_ENTRY.format("' '")),
        ],
    )
    def test_bad_value_is_named(self, key, value, message):
        """init_app fails naming the key, the bad value and what is
        allowed."""
        app = Flask("configured")
        app.config[key] = value

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard().init_app(app)

        assert message == str(excinfo.value)

    def test_bad_value_is_named_in_off_mode(self):
        """A bad value fails init_app even when the guard is off."""
        app = Flask("configured")
        app.config.update(CTXGUARD_MODE="off", CTXGUARD_MAX_VIOLATIONS="5")

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert (
            "CTXGUARD_MAX_VIOLATIONS must be a positive integer; got '5'."
        ) == str(excinfo.value)

    def test_values_from_the_environment_are_named(self, monkeypatch):
        """Values loaded with from_prefixed_env that are still strings are
        named as such."""
        monkeypatch.setenv("FLASK_CTXGUARD_STACKS", "yes")
        app = Flask("configured")
        app.config.from_prefixed_env()

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert "CTXGUARD_STACKS must be True or False; got 'yes'." == str(
            excinfo.value
        )
