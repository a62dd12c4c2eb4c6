from __future__ import annotations

import pytest
import structlog
from flask import Flask, g

from flask_ctxguard import (
    AlreadyRegisteredError,
    ConfigurationError,
    ContaminationError,
    CtxGuard,
    CtxGuardError,
)
from tests._compat import needs_shared_g
from tests.helpers import add_g_user_views, share_g


def _app(**config):
    app = Flask("configured")
    app.config.update(config)
    return app


def _leaky(**config):
    """An app whose '/set/<name>' and '/get' share 'g' in one app context."""
    app = _app(**config)
    add_g_user_views(app)
    return app


class TestDefaults:
    @needs_shared_g
    def test_log_mode_by_default(self):
        """An app that is not testing reports in log mode: kept, not
        raised."""
        app = _leaky()
        guard = CtxGuard(app)

        assert 200 == share_g(app)[0].status_code
        assert ["CG101"] == [v.code for v in guard.violations]

    @needs_shared_g
    def test_raise_mode_when_testing(self):
        """An app with TESTING raises at the offending access."""
        app = _leaky(TESTING=True)
        CtxGuard(app)

        with pytest.raises(ContaminationError, match="CG101"):
            share_g(app)

    @needs_shared_g
    def test_testing_set_after_init_app(self):
        """Flask's testing pattern, TESTING set after create_app(), turns
        raise mode on: the derived default follows app.testing."""
        app = _leaky()
        CtxGuard(app)
        app.config.update(TESTING=True)

        with pytest.raises(ContaminationError, match="CG101"):
            share_g(app)

    @needs_shared_g
    def test_testing_unset_after_init_app(self):
        """TESTING turned off after init_app goes back to log mode."""
        app = _leaky(TESTING=True)
        guard = CtxGuard(app)
        app.testing = False

        assert 200 == share_g(app)[0].status_code
        assert ["CG101"] == [v.code for v in guard.violations]

    @needs_shared_g
    def test_mode_switched_after_init_app(self):
        """CTXGUARD_MODE switched from 'log' to 'raise' after init_app is
        in effect."""
        app = _leaky(CTXGUARD_MODE="log", PROPAGATE_EXCEPTIONS=True)
        guard = CtxGuard(app)
        share_g(app)
        app.config["CTXGUARD_MODE"] = "raise"

        with pytest.raises(ContaminationError, match="CG101"):
            share_g(app)
        assert 2 == len(guard.violations)

    @needs_shared_g
    def test_mode_off_after_init_app_is_said(self):
        """CTXGUARD_MODE set to 'off' after init_app cannot be followed:
        the guard says so once, and goes on in its mode."""
        app = _leaky(CTXGUARD_MODE="log")
        guard = CtxGuard(app)
        app.config["CTXGUARD_MODE"] = "off"

        with structlog.testing.capture_logs() as logs:
            share_g(app)
            share_g(app)

        said = [e for e in logs if e["event"] == "config-ignored"]
        assert 1 == len(said)
        assert said[0]["message"].startswith(
            "CTXGUARD_MODE was changed to 'off' after init_app; the guard"
            " keeps running in 'log' mode."
        )
        assert 2 == len(guard.violations)

    @needs_shared_g
    def test_stacks_follow_debug(self):
        """Full stacks follow app.debug, also when set after init_app."""
        app = _leaky()
        guard = CtxGuard(app)
        share_g(app)
        app.debug = True
        share_g(app)

        first, second = guard.violations
        assert first.access_stack is None
        assert "in get_user" in (second.access_stack or "")

    def test_derived_defaults_are_not_written(self):
        """Only the defaults that do not depend on the app are written
        into app.config; the mode and stacks stay derived."""
        app = _app()
        CtxGuard(app)

        assert "CTXGUARD_MODE" not in app.config
        assert "CTXGUARD_STACKS" not in app.config
        assert app.config["CTXGUARD_LOG_VALUES"] is False
        assert () == app.config["CTXGUARD_IGNORE"]
        assert 1000 == app.config["CTXGUARD_MAX_VIOLATIONS"]

    def test_explicit_values_are_kept(self):
        """init_app never overwrites a value the app configured."""
        config = {
            "CTXGUARD_MODE": "raise",
            "CTXGUARD_STACKS": True,
            "CTXGUARD_LOG_VALUES": True,
            "CTXGUARD_IGNORE": ["CG106", "g._sa_*"],
            "CTXGUARD_MAX_VIOLATIONS": 5,
        }
        app = _app(**config)
        CtxGuard(app)

        assert config == {k: app.config[k] for k in config}


class TestMistakes:
    def test_misspelled_key(self):
        """A CTXGUARD_* key that does not exist fails with the closest."""
        app = _app(CTXGUARD_MODES="raise")

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert str(excinfo.value).startswith(
            "Unknown configuration key 'CTXGUARD_MODES'. Did you mean"
            " 'CTXGUARD_MODE'? The keys are CTXGUARD_MODE, CTXGUARD_STACKS,"
        )

    @pytest.mark.parametrize(
        ("word", "meant"), [("warn", "log"), ("strict", "raise")]
    )
    def test_pytest_words_in_mode(self, word, meant):
        """The pytest option's words in CTXGUARD_MODE name the app's."""
        app = _app(CTXGUARD_MODE=word)

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert (
            "CTXGUARD_MODE must be one of 'raise', 'log', 'off'; got"
            f" {word!r}. {word!r} is a mode of the pytest option --ctxguard;"
            f" in the app's configuration, use {meant!r}."
        ) == str(excinfo.value)

    def test_lower_case_code_in_ignore(self):
        """A lower-case code would ignore nothing: the upper case is
        suggested."""
        app = _app(CTXGUARD_IGNORE=["cg106"])

        with pytest.raises(ConfigurationError) as excinfo:
            CtxGuard(app)

        assert (
            "CTXGUARD_IGNORE entry 'cg106' would ignore nothing: codes are"
            " upper case. Did you mean 'CG106'?"
        ) == str(excinfo.value)

    def test_bare_word_in_ignore(self):
        """A bare word matches no subject: the subjects it may mean are
        suggested."""
        app = _app(CTXGUARD_IGNORE=["tenant"])

        with pytest.raises(
            ConfigurationError,
            match=r"\ACTXGUARD_IGNORE entry 'tenant' matches no subject and"
            r" is no code, so it would ignore nothing\. Did you mean"
            r" 'g\.tenant' or 'ContextVar tenant'\?",
        ):
            CtxGuard(app)

    @pytest.mark.parametrize(
        "entry",
        [
            "CG106",
            "g.user",
            "ContextVar tenant",
            "request",
            "session",
            "app context",
            "request context",
            "g._sa_*",
        ],
    )
    def test_valid_ignore_entries(self, entry):
        """Codes, subjects and globs are accepted."""
        CtxGuard(_app(CTXGUARD_IGNORE=[entry]))

    @needs_shared_g
    def test_ignored_subject_is_dropped(self):
        """An ignored subject is dropped while another is still reported
        (the positive control)."""
        app = _leaky(CTXGUARD_IGNORE=["g.user"])

        @app.route("/other")
        def other():
            g.other = 1
            return "other"

        @app.route("/read-other")
        def read_other():
            return str(g.other)

        guard = CtxGuard(app)
        share_g(app)
        client = app.test_client()
        with app.app_context():
            client.get("/other")
            client.get("/read-other")

        assert ["g.other"] == [v.subject for v in guard.violations]

    def test_init_app_twice_on_one_guard(self):
        """Installing one guard twice on an app says to call it once."""
        app = _app()
        guard = CtxGuard(app)

        with pytest.raises(AlreadyRegisteredError) as excinfo:
            guard.init_app(app)

        assert (
            "This CtxGuard is already installed on the app 'configured';"
            " call init_app once per app (or pass the app to CtxGuard(app)"
            " or to init_app, not both)."
        ) == str(excinfo.value)

    def test_second_guard_on_one_app(self):
        """A second guard on an app is told to use the first."""
        app = _app()
        CtxGuard(app)

        with pytest.raises(AlreadyRegisteredError, match="Use that instance"):
            CtxGuard(app)


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
                " got 'LOG'. Did you mean 'log'?",
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
