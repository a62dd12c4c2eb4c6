"""
Where work leaves a request: the calls that start a thread or a timer, an
executor's job, an asyncio task or a call on another loop, a greenlet, or
a response streamed from a generator; with the target each runs and the
arguments it is handed.
"""

from __future__ import annotations

import ast

from flask_ctxguard._lint.scope import Function, Module

__all__ = [
    "Start",
    "assigned",
    "executor_facts",
    "find_start",
    "streamed",
    "unawaited_calls",
]

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
_RESPONSES = frozenset(
    {
        "flask.Response",
        "flask.wrappers.Response",
        "werkzeug.Response",
        "werkzeug.wrappers.Response",
        "flask.make_response",
    }
)


class Start:
    """One place where work leaves the request."""

    __slots__ = ("args", "how", "node", "requires", "target", "unless")

    def __init__(
        self,
        node: ast.Call,
        how: str,
        target: ast.expr | None,
        args: list[ast.expr],
        requires: frozenset[str] = frozenset(),
        *,
        unless: frozenset[str] = frozenset(),
    ) -> None:
        self.node = node
        self.how = how
        self.target = target
        self.args = args
        #: Facts of other modules it needs (the executor's definition).
        self.requires = requires
        #: Facts of other modules that make it no start (the attribute
        #: it uses is also set to something else than a pool).
        self.unless = unless


def _start(  # noqa: PLR0911, PLR0912 - one branch per way to start work
    module: Module, function: Function, call: ast.Call, loose: set[int]
) -> Start | None:
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
        return Start(call, f"'{name}'", target, args)
    if name in _SPAWNS:
        skip = 1 if name.endswith("_later") or name.endswith("_after") else 0
        rest = call.args[skip:]
        return Start(
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
        unless: frozenset[str] = frozenset()
        if not _is_executor(module, function, receiver):
            elsewhere = _executor_elsewhere(module, receiver)
            if elsewhere is None:
                return None
            requires = frozenset({elsewhere})
            if isinstance(receiver, ast.Attribute):
                unless = frozenset({f"app-other:{receiver.attr}"})
        args = [*call.args[1:], *(k.value for k in call.keywords)]
        return Start(
            call,
            f"an executor's '{attr}()'",
            call.args[0],
            args,
            requires,
            unless=unless,
        )
    if attr in {"run_in_executor", "call_soon_threadsafe"}:
        rest = call.args[1:] if attr == "run_in_executor" else call.args
        if rest:
            return Start(call, f"'loop.{attr}()'", rest[0], list(rest[1:]))
    if (
        attr in {"create_task", "ensure_future"}
        and call.args
        and id(call) in loose
    ):
        return _coroutine(call, call.args[0], f"'{ast.unparse(call.func)}()'")
    return None


def _coroutine(call: ast.Call, coro: ast.expr, how: str) -> Start | None:
    if not isinstance(coro, ast.Call):
        return None
    args = [*coro.args, *(k.value for k in coro.keywords)]
    return Start(call, how, coro.func, args)


def _response(
    module: Module, function: Function, call: ast.Call
) -> Start | None:
    """A response streamed from a generator, without stream_with_context."""
    func = call.func
    is_response = module.imports.qualify(func) in _RESPONSES or (
        isinstance(func, ast.Attribute) and func.attr == "response_class"
    )
    if not is_response or not call.args:
        return None
    return streamed(module, function, call, call.args[0])


def streamed(
    module: Module, function: Function, node: ast.Call, body: ast.expr
) -> Start | None:
    """*body* as a response streamed from a generator, made at *node*."""
    if isinstance(body, ast.GeneratorExp):
        return Start(node, "a streamed response", body, [])
    if not isinstance(body, ast.Call):
        return None
    generator = module.resolve(body.func, function)
    if generator is None or not _is_generator(generator):
        return None
    args = [*body.args, *(k.value for k in body.keywords)]
    return Start(node, "a streamed response", body.func, args)


def _is_generator(function: Function) -> bool:
    return any(
        isinstance(node, (ast.Yield, ast.YieldFrom)) for node in function.body
    )


def assigned(function: Function | None, name: str) -> ast.expr | None:
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
    """
    "executor:NAME" for each module-level thread or process pool,
    "app-executor:ATTR" for each pool stored on an attribute
    (``app.executor = ThreadPoolExecutor()`` in an app factory), and
    "app-other:ATTR" for an attribute also set to anything else (Flask-
    Executor's ``Executor(app)``, a parameter): that one stays unknown.
    """
    facts = {
        f"executor:{name}"
        for name, value in module.globals.items()
        if isinstance(value, ast.Call)
        and module.imports.qualify(value.func) in _EXECUTORS
    }
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Assign):
            continue
        pool = (
            isinstance(node.value, ast.Call)
            and module.imports.qualify(node.value.func) in _EXECUTORS
        )
        kind = "app-executor" if pool else "app-other"
        facts.update(
            f"{kind}:{target.attr}"
            for target in node.targets
            if isinstance(target, ast.Attribute)
        )
    return facts


def _executor_elsewhere(module: Module, receiver: ast.expr) -> str | None:
    """
    The fact that makes *receiver* a pool made elsewhere in the run: a
    name imported from another module, or an attribute of the app
    (``current_app.executor``) that some module set to a pool.
    """
    imported = module.imports.aliases
    if isinstance(receiver, ast.Name) and receiver.id in imported:
        return f"executor:{receiver.id}"
    if isinstance(receiver, ast.Attribute) and (
        module.imports.qualify(receiver.value) == "flask.current_app"
        or _is_app(module, receiver.value)
    ):
        return f"app-executor:{receiver.attr}"
    return None


def _is_app(module: Module, node: ast.expr) -> bool:
    """*node* names the module's own Flask app (``app = Flask(...)``)."""
    if not isinstance(node, ast.Name):
        return False
    value = module.globals.get(node.id)
    return (
        isinstance(value, ast.Call)
        and module.imports.qualify(value.func) == "flask.Flask"
    )


def _is_executor(module: Module, function: Function, node: ast.expr) -> bool:
    value: ast.expr | None = node
    if isinstance(node, ast.Name):
        value = assigned(function, node.id) or module.globals.get(node.id)
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


def unawaited_calls(function: Function) -> set[int]:
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


def find_start(
    module: Module, function: Function, call: ast.Call, loose: set[int]
) -> Start | None:
    """
    How *call*, in request code, starts work outside the request, or
    `None`; *loose* are the calls whose result the function never awaits.
    """
    return _start(module, function, call, loose) or _response(
        module, function, call
    )
