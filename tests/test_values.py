from __future__ import annotations

import threading

from flask_ctxguard._core.tags import thread_name
from flask_ctxguard._reporting.reporter import safe_repr


class Unprintable:
    def __repr__(self):
        raise RuntimeError("no repr")


class TestSafeRepr:
    def test_failing_repr(self):
        """A value whose repr raises is shown by its type."""
        assert safe_repr(Unprintable()).startswith("<Unprintable instance")

    def test_failing_mapping(self):
        """A mapping whose items() raises is shown by its type."""

        class Broken:
            def items(self):
                raise RuntimeError("no items")

        assert "<Broken with a failing repr>" == safe_repr(Broken())

    def test_deep_values_are_cut(self):
        """Values nested deeper than the repr shows are elided."""
        text = safe_repr({"a": {"b": {"c": {"password": "x"}}}})

        assert "'x'" not in text

    def test_sequences(self):
        """Lists, tuples and sets are shown, shortened."""
        assert "(1, 2)" == safe_repr((1, 2))
        assert "[{'token': '<redacted>'}]" == safe_repr([{"token": "t"}])

    def test_classes_are_not_mappings(self):
        """A class with an items() method is shown as itself."""

        class WithItems:
            @staticmethod
            def items():
                return [("password", "x")]

        assert "WithItems" in safe_repr(WithItems)


class TestThreadName:
    def test_current_thread(self):
        """The current thread is named."""
        assert threading.current_thread().name == thread_name(
            threading.get_ident()
        )

    def test_other_live_thread(self):
        """A live thread other than the current one is found by id."""
        ready, done = threading.Event(), threading.Event()

        def run():
            ready.set()
            done.wait(timeout=10)

        thread = threading.Thread(target=run, name="other-live")
        thread.start()
        ready.wait(timeout=10)
        try:
            assert "other-live" == thread_name(thread.ident)
        finally:
            done.set()
            thread.join(timeout=10)

    def test_finished_thread(self):
        """A thread that is gone is named by its id."""
        thread = threading.Thread(target=lambda: None)
        thread.start()
        thread.join(timeout=10)

        assert f"thread {thread.ident}" == thread_name(thread.ident)
