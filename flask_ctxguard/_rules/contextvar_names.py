"""
ContextVar names that are the same in every process and run.

A report's subject is ``ContextVar <name>``: ``report`` groups findings by
it and ``CTXGUARD_IGNORE`` names it. Werkzeug names the variable behind
each ``werkzeug.local.Local`` (and ``LocalStack``) after the object's
``id()``, ``werkzeug.Local<140418222536880>.storage``: a different name in
every process. `stable_name` names such a variable after the module-level
name its ``Local`` is bound to (``werkzeug.Local(app.locals.current)``),
found once, or ``werkzeug.Local.storage`` if it is bound to none; any
other number in angle brackets or hex address in a name is dropped.
"""

from __future__ import annotations

import re
import sys
import threading
from contextvars import ContextVar
from typing import Any

__all__ = ["stable_name"]

_WERKZEUG = re.compile(r"^werkzeug\.(Local|LocalStack)<\d+>\.storage$")
_NUMBERS = re.compile(r"<\d+>|0x[0-9a-fA-F]+")
# Names already worked out, by the variable's own (bounded).
_names: dict[str, str] = {}
_MAX_NAMES = 1024
_lock = threading.Lock()


def stable_name(var: ContextVar[Any]) -> str:
    """*var*'s name, without the numbers that differ from run to run."""
    name = var.name
    if "<" not in name and "0x" not in name:
        return name
    with _lock:
        found = _names.get(name)
    if found is not None:
        return found
    match = _WERKZEUG.match(name)
    if match is not None:
        kind = match[1]
        holder = _module_name_of(var, f"_{kind}__storage")
        found = (
            f"werkzeug.{kind}.storage"
            if holder is None
            else f"werkzeug.{kind}({holder}).storage"
        )
    else:
        found = _NUMBERS.sub("", name)
    with _lock:
        if len(_names) < _MAX_NAMES:
            _names[name] = found
    return found


def _module_name_of(var: ContextVar[Any], attribute: str) -> str | None:
    """
    ``module.name`` of the module-level object whose private *attribute*
    is *var* (a ``Local`` or ``LocalStack``), the first in module order.
    """
    modules = dict(sys.modules)  # a copy: other threads may import
    for module_name in sorted(modules):
        namespace = getattr(modules[module_name], "__dict__", None)
        if type(namespace) is not dict:
            continue
        for key, value in list(namespace.items()):
            if type(value).__module__ != "werkzeug.local":
                continue
            try:
                storage = object.__getattribute__(value, attribute)
            except Exception:  # noqa: BLE001 - not this kind
                continue
            if storage is var:
                return f"{module_name}.{key}"
    return None
