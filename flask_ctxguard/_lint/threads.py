"""
CG202: work that leaves the request (a thread, an executor, an asyncio
task or loop, a greenlet, a streamed generator) and takes the request's
objects with it.

Sanctioned, and silent: a target wrapped with
``copy_current_request_context`` or run through
``contextvars.copy_context().run``, Flask-Executor (it copies the
context), plain values as arguments, a target that pushes a context of
its own, ``stream_with_context``.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Iterator

from .catalog import Finding
from .flow import Flow, reads_proxy
from .scope import Function, Module

__all__ = ["check_threads", "executor_facts"]

_ALL = {"request", "session", "g", "current_user"}
#: Keyword and position of the target, the args and the kwargs.
_THREADS = {
    "threading.Thread": ("target", 1, 3, 4),
    "threading.Timer": ("function", 1, 2, 3),
}
_SPAWNS = frozenset(
    {
        "gevent.spawn",
        "gevent.spawn_later",
        "gevent.Greenlet",
        "gevent.Greenlet.spawn",
        "eventlet.spawn",
        "eventlet.spawn_n",
        "eventlet.spawn_after",
    }
)
_EXECUTORS = frozenset(
    {
        "concurrent.futures.ThreadPoolExecutor",
        "concurrent.futures.ProcessPoolExecutor",
        "concurrent.futures.thread.ThreadPoolExecutor",
        "multiprocessing.pool.ThreadPool",
    }
)
_COPIERS = frozenset(
    {
        "flask.copy_current_request_context",
        "flask.ctx.copy_current_request_context",
        "flask.stream_with_context",
        "flask.helpers.stream_with_context",
    }
)
_RESPONSES = frozenset(
    {
        "flask.Response",
        "flask.wrappers.Response",
        "werkzeug.Response",
        "werkzeug.wrappers.Response",
        "flask.make_response",
    }
)


class _Start:
    """One place where work leaves the request."""

    __slots__ = ("args", "how", "node", "requires", "target")

    def __init__(
        self,
        node: ast.Call,
        how: str,
        target: ast.expr | None,
        args: list[ast.expr],
        requires: frozenset[str] = frozenset(),
    ) -> None:
        self.node = node
        self.how = how
        self.target = target
        self.args = args
        #: Facts of other modules it needs (the executor's definition).
        self.requires = requires


def check_threads(module: Module, flow: Flow) -> Iterator[Finding]:
    """CG202 over every request function of *module*."""
    for function in module.request_functions():
        loose = _unawaited_calls(function)
        for node in function.body:
            if not isinstance(node, ast.Call):
                continue
            start = _start(module, function, node, loose)
            if start is None:
                start = _response(module, function, node)
            if start is None:
                continue
            finding = _judge(module, flow, function, start)
            if finding is not None:
                yield dataclasses.replace(finding, requires=start.requires)


def _start(  # noqa: PLR0911, PLR0912 - one branch per way to start work
    module: Module, function: Function, call: ast.Call, loose: set[int]
) -> _Start | None:
    name = module.imports.qualify(call.func)
    if name in _THREADS:
        keyword, position, args_at, kwargs_at = _THREADS[name]
        target = _argument(call, keyword, position)
        args: list[ast.expr] = []
        for key, index in (("args", args_at), ("kwargs", kwargs_at)):
            given = _argument(call, key, index)
            if isinstance(given, (ast.Tuple, ast.List)):
                args.extend(given.elts)
            elif isinstance(given, ast.Dict):
                args.extend(given.values)
            elif given is not None:
                args.append(given)
        return _Start(call, f"'{name}'", target, args)
    if name in _SPAWNS:
        skip = 1 if name.endswith("_later") or name.endswith("_after") else 0
        rest = call.args[skip:]
        return _Start(
            call,
            f"'{name}'",
            rest[0] if rest else None,
            [*rest[1:], *(k.value for k in call.keywords)],
        )
    if name == "asyncio.run_coroutine_threadsafe" and call.args:
        return _coroutine(call, call.args[0], f"'{name}'")
    if not isinstance(call.func, ast.Attribute):
        return None
    attr = call.func.attr
    if attr in {"submit", "map", "apply_async"} and call.args:
        receiver = call.func.value
        requires: frozenset[str] = frozenset()
        if not _is_executor(module, function, receiver):
            # An executor imported from another module of the run.
            if not (
                isinstance(receiver, ast.Name)
                and receiver.id in module.imports.aliases
            ):
                return None
            requires = frozenset({f"executor:{receiver.id}"})
        args = [*call.args[1:], *(k.value for k in call.keywords)]
        return _Start(
            call, f"an executor's '{attr}()'", call.args[0], args, requires
        )
    if attr in {"run_in_executor", "call_soon_threadsafe"}:
        rest = call.args[1:] if attr == "run_in_executor" else call.args
        if rest:
            return _Start(call, f"'loop.{attr}()'", rest[0], list(rest[1:]))
    if (
        attr in {"create_task", "ensure_future"}
        and call.args
        and id(call) in loose
    ):
        return _coroutine(call, call.args[0], f"'{ast.unparse(call.func)}()'")
    return None


def _coroutine(call: ast.Call, coro: ast.expr, how: str) -> _Start | None:
    if not isinstance(coro, ast.Call):
        return None
    args = [*coro.args, *(k.value for k in coro.keywords)]
    return _Start(call, how, coro.func, args)


def _response(
    module: Module, function: Function, call: ast.Call
) -> _Start | None:
    """A response streamed from a generator, without stream_with_context."""
    func = call.func
    is_response = module.imports.qualify(func) in _RESPONSES or (
        isinstance(func, ast.Attribute) and func.attr == "response_class"
    )
    if not is_response or not call.args:
        return None
    body = call.args[0]
    if isinstance(body, ast.GeneratorExp):
        return _Start(call, "a streamed response", body, [])
    if not isinstance(body, ast.Call):
        return None
    generator = module.resolve(body.func, function)
    if generator is None or not _is_generator(generator):
        return None
    args = [*body.args, *(k.value for k in body.keywords)]
    return _Start(call, "a streamed response", body.func, args)


def _is_generator(function: Function) -> bool:
    return any(
        isinstance(node, (ast.Yield, ast.YieldFrom)) for node in function.body
    )


def _judge(
    module: Module, flow: Flow, function: Function, start: _Start
) -> Finding | None:
    target = start.target
    if target is None or _is_copied(module, function, target):
        return None
    if isinstance(target, ast.Call) and module.imports.is_(
        target.func, "functools.partial"
    ):
        start.args = [
            *target.args[1:],
            *(k.value for k in target.keywords),
            *start.args,
        ]
        target = target.args[0] if target.args else None
        if target is None or _is_copied(module, function, target):
            return None
    reason = None
    for argument in start.args:
        found = flow.describe(argument, function)
        if found is None:
            continue
        origin = flow.origin(function, argument)
        if origin is not None:
            # The bug is where the request's object is handed on.
            _, call = origin
            return Finding(
                "CG202",
                call.lineno,
                call.col_offset + 1,
                f"'{found}' is handed to '{ast.unparse(call.func)}()', which"
                f" passes it to {start.how} (line {start.node.lineno}) that"
                " runs outside the request: pass plain values"
                " (request.args['q'], the user id), or wrap the function"
                " with 'flask.copy_current_request_context'",
            )
        reason = f"is handed '{found}'"
        break
    if reason is None:
        reason = _target_reads(module, flow, function, target)
    if reason is None:
        return None
    shown = (
        ast.unparse(target)
        if not isinstance(target, ast.Lambda)
        else "a lambda"
    )
    if start.how == "a streamed response":
        return Finding(
            "CG202",
            start.node.lineno,
            start.node.col_offset + 1,
            f"a streamed response's generator '{_short(shown)}' {reason}; it"
            " runs after the view returned, outside the request: wrap it"
            " with 'flask.stream_with_context', or read the values before"
            " streaming",
        )
    return Finding(
        "CG202",
        start.node.lineno,
        start.node.col_offset + 1,
        f"{start.how} runs '{_short(shown)}' outside the request, and it"
        f" {reason}: pass plain values (request.args['q'], the user id), or"
        " wrap the function with 'flask.copy_current_request_context'",
    )


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _target_reads(  # noqa: PLR0911 - one return per shape
    module: Module, flow: Flow, function: Function, target: ast.expr
) -> str | None:
    if isinstance(target, (ast.Lambda, ast.GeneratorExp)):
        own = module.own_context_nodes(target)
        for node in ast.walk(target):
            if id(node) in own:
                continue
            name = module.imports.proxy(node)
            if name is not None and isinstance(node, ast.expr):
                return f"reads '{name}' (line {node.lineno})"
            if isinstance(node, ast.Name) and node.id in flow.bound[function]:
                return f"uses '{node.id}' ({flow.bound[function][node.id]})"
        return None
    callee = module.resolve(target, function)
    if callee is None:
        return None
    if _decorated_copy(module, callee):
        return None
    read = reads_proxy(module, callee, _ALL)
    if read is not None:
        return f"reads '{read[0]}' (line {read[1]})"
    # A nested function that closes over the view's request objects.
    if callee.outer is function:
        bound = flow.bound[function]
        local = {
            n.id
            for n in callee.body
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        for node in callee.body:
            if (
                isinstance(node, ast.Name)
                and node.id in bound
                and node.id not in local
            ):
                return f"uses '{node.id}' ({bound[node.id]})"
    return None


def _is_copied(module: Module, function: Function, target: ast.expr) -> bool:
    if (
        isinstance(target, ast.Call)
        and module.imports.qualify(target.func) in _COPIERS
    ):
        return True
    # contextvars.copy_context().run, or ctx.run with ctx = copy_context()
    if isinstance(target, ast.Attribute) and target.attr == "run":
        owner = target.value
        if isinstance(owner, ast.Name):
            owner = _assigned(function, owner.id) or owner
        return isinstance(owner, ast.Call) and module.imports.is_(
            owner.func, "contextvars.copy_context"
        )
    callee = module.resolve(target, function)
    return callee is not None and _decorated_copy(module, callee)


def _decorated_copy(module: Module, function: Function) -> bool:
    return any(
        module.imports.qualify(d) in _COPIERS
        for d in function.node.decorator_list
    )


def _assigned(function: Function | None, name: str) -> ast.expr | None:
    """The value *name* is assigned in *function* or an enclosing one."""
    while function is not None:
        for node in function.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == name for t in node.targets
            ):
                return node.value
            if isinstance(node, (ast.With, ast.AsyncWith)):
                for item in node.items:
                    var = item.optional_vars
                    if isinstance(var, ast.Name) and var.id == name:
                        return item.context_expr
        function = function.outer
    return None


def executor_facts(module: Module) -> set[str]:
    """ "executor:NAME" for each module-level thread or process pool."""
    return {
        f"executor:{name}"
        for name, value in module.globals.items()
        if isinstance(value, ast.Call)
        and module.imports.qualify(value.func) in _EXECUTORS
    }


def _is_executor(module: Module, function: Function, node: ast.expr) -> bool:
    value: ast.expr | None = node
    if isinstance(node, ast.Name):
        value = _assigned(function, node.id) or module.globals.get(node.id)
    if not isinstance(value, ast.Call):
        return False
    return module.imports.qualify(value.func) in _EXECUTORS


def _argument(
    call: ast.Call, keyword: str, position: int | None
) -> ast.expr | None:
    for given in call.keywords:
        if given.arg == keyword:
            return given.value
    if position is not None and len(call.args) > position:
        return call.args[position]
    return None


def _unawaited_calls(function: Function) -> set[int]:
    """
    Ids of the calls whose result the function drops or keeps in a name
    it never awaits: a task started so outlives the view.
    """
    awaited: set[str] = set()
    for node in function.body:
        if isinstance(node, ast.Await):
            awaited.update(
                n.id for n in ast.walk(node.value) if isinstance(n, ast.Name)
            )
    loose: set[int] = set()
    for node in function.body:
        if not isinstance(node, (ast.Expr, ast.Assign)):
            continue
        if isinstance(node.value, ast.Call) and not (
            isinstance(node, ast.Assign)
            and any(
                isinstance(t, ast.Name) and t.id in awaited
                for t in node.targets
            )
        ):
            loose.add(id(node.value))
    return loose
