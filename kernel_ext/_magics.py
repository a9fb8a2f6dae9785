"""``%%actor`` / ``%actor`` and the wiring that makes them async in a kernel.

A magic function is synchronous, but an actor cell must *await* (trio has to keep
running while the actor works). So a cleanup input transformer rewrites a cell that
starts with ``%%actor ...`` (and a line ``%actor ...``) into a top-level ``await`` of
:func:`actor_cell` / :func:`actor_line`. IPython then runs it as an async cell, and our
``run_code`` hook runs every async cell inside trio (the kernel's guest run), so plain
cells can ``await`` trio code and ``async with notebook_actors.open_nursery()``.

The registered magics are real too: they carry the help text (``%%actor?``) and, where
the transformer is not active (a terminal IPython), say clearly what is missing.
"""

from __future__ import annotations

import ast
import asyncio
import re
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from . import _guest

_MAGICS_MODULE = __name__
_CELL_RE = re.compile(r"^%%actor(?:\s+(?P<line>.*))?$")
_LINE_RE = re.compile(r"^%actors?(?:\s+(?P<line>.*))?$")
_UNLOAD_RE = re.compile(r"^%(?P<verb>unload|reload)_ext\s+notebook_actors\s*$")

NOT_A_KERNEL = (
    "notebook_actors: %%actor cells need a Jupyter kernel: the actor runtime runs as a trio "
    "guest on the kernel's asyncio loop, and this IPython has no running loop. "
    "Use a notebook (jupyter lab / jupyter console), or in a script `notebook_actors.run(main)`."
)
NOT_LOADED = "the notebook_actors runtime is not running in this kernel: run `%load_ext notebook_actors` first"


# -- the magics (help text, and the sync fallback) -------------------------------------
@magic_arguments()
@argument("path", help="the actor to run in: `NAME`, or `parent/child` for an actor spawned by (and inside) `parent`")
@argument(
    "--bg",
    action="store_true",
    help="return at once; the cell keeps running in the actor (its output still comes here)",
)
@argument("--timeout", type=float, default=None, metavar="S", help="interrupt the cell after S seconds (TimeoutError)")
@argument("--new", action="store_true", help="restart the actor first: a fresh process and an empty namespace")
@argument("--asyncio", action="store_true", help="spawn the actor infected with asyncio (trio as a guest on asyncio)")
@argument("--debug", action="store_true", help="spawn the actor in debug mode (crashes open the debugger)")
def _actor_cell_args(line: str, cell: str) -> None:
    """Run this cell in the actor process NAME (spawned on first use).

    The actor keeps its own namespace between cells, like a kernel of its own; top-level
    `await` works (the code runs in the actor's trio loop). print/stderr/warnings/logging
    and display() appear live here; the last expression is shown with its rich repr; an
    error shows the actor's traceback and the actor stays alive. Interrupting the kernel
    cancels the cell in the actor (then sends it SIGINT if it does not react).

    Functions and classes defined in a cell travel to other actors by value. Output the
    actor writes after its cell ended is shown, labelled, at the top of its next cell.
    """


@magic_arguments()
@argument(
    "command",
    choices=["ls", "kill", "killall", "restart", "push", "pull", "tree", "stop", "autoawait", "debug"],
    help="what to do",
)
@argument("args", nargs="*", help="NAME (kill/restart/debug); NAME var ... (push/pull)")
def _actor_line_args(line: str) -> None:
    """Manage the notebook's actors.

    `%actor ls` lists them (path, pid, parent pid, state, uptime); `%actor tree` shows the
    live tree widget of the whole actor tree; `%actor kill NAME` /
    `%actor restart NAME` stop / respawn one (with its subtree), `%actor killall` stops every
    actor but keeps the runtime; `%actor push NAME a b`
    copies kernel variables into the actor's namespace, `%actor pull NAME a b` copies them
    back (msgspec-encodable values only); `%actor stop` stops the whole actor tree.
    `%actor autoawait asyncio` runs plain async cells on asyncio again (`trio`, the
    default once the extension is loaded, runs them in the kernel's trio guest run).
    `%actor debug [NAME]` opens, in this cell, the debugger session of an actor parked in
    its debugger (a crash or breakpoint while no running cell showed that actor).
    """


@magics_class
class ActorMagics(Magics):
    """``%%actor`` and ``%actor``."""

    @cell_magic("actor")
    def actor(self, line: str, cell: str) -> None:
        raise UsageError(_fallback_message("%%actor"))

    @line_magic("actor")
    def actor_line(self, line: str) -> None:
        raise UsageError(_fallback_message("%actor"))

    @line_magic("actors")
    def actors_line(self, line: str) -> None:
        raise UsageError(_fallback_message("%actors"))


ActorMagics.actor.__doc__ = _actor_cell_args.__doc__
ActorMagics.actor_line.__doc__ = _actor_line_args.__doc__
ActorMagics.actors_line.__doc__ = _actor_line_args.__doc__
_actor_cell_args.parser.prog = "%%actor"
_actor_line_args.parser.prog = "%actor"
for _fn, _spec in (
    (ActorMagics.actor, _actor_cell_args),
    (ActorMagics.actor_line, _actor_line_args),
    (ActorMagics.actors_line, _actor_line_args),
):
    _fn.parser = _spec.parser  # type: ignore[attr-defined]
    _fn.__doc__ = _spec.__doc__ + "\n" + _spec.parser.format_help()  # shown by %%actor?


def _fallback_message(what: str) -> str:
    if _guest.current() is None:
        return NOT_A_KERNEL if _loop_or_none() is None else NOT_LOADED
    return f"{what} must start the cell (a line of its own at the top level) to run in an actor"


# -- the input transformer ---------------------------------------------------------------
def _call(fn: str, *args: str) -> str:
    return f"await __import__({_MAGICS_MODULE!r}, fromlist=['_']).{fn}({', '.join(repr(a) for a in args)})"


def transform_actor_cells(lines: list[str]) -> list[str]:
    """IPython cleanup transformer: ``%%actor``/``%actor`` become awaited calls."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return lines
    head = lines[first].rstrip("\n")
    match = _CELL_RE.match(head)
    if match and not head.rstrip().endswith("?"):
        body = "".join(lines[first + 1 :])
        return [_call("actor_cell", match.group("line") or "", body) + "\n"]
    out = []
    for line in lines:
        stripped = line.rstrip("\n")
        m = _LINE_RE.match(stripped)
        if m and not stripped.endswith("?"):
            out.append(_call("actor_line", m.group("line") or "") + "\n")
        elif ext_cmd := _UNLOAD_RE.match(stripped):
            out.append(_call("reload" if ext_cmd.group("verb") == "reload" else "unload") + "\n")
        else:
            out.append(line)
    return out


# -- what the transformed cells await (they run in trio, see _run_code) -------------------
_actors: Any = None


def _notebook_actors() -> Any:
    from ._actors import NotebookActors

    global _actors
    rt = _guest.current()
    if rt is None:
        raise UsageError(NOT_LOADED)
    if _actors is None or _actors.rt is not rt:
        _actors = NotebookActors(rt)
    return _actors


async def actor_cell(line: str, cell: str) -> Any:
    """Run ``cell`` in the actor named on the ``%%actor`` line (trio side)."""
    __tracebackhide__ = True
    import trio

    from ._actors import CellInterrupted, CellResult, CellTimeout, cell_error

    try:
        args = parse_argstring(_actor_cell_args, line)
    except SystemExit:  # argparse on a bad line
        raise UsageError(f"bad %%actor line: {line!r}; see `%%actor?`") from None
    actors = _notebook_actors()
    try:
        handle = await actors.ensure(args.path, {"asyncio": args.asyncio, "debug": args.debug}, new=args.new)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    emit = _Emitter()
    if args.bg:
        actors.rt.start_soon(_run_in_background, actors, handle, cell, emit)
        return _BackgroundCell(handle.path)
    cell_run = _guest.current_cell()
    timed_out = False
    if args.timeout is not None and cell_run is not None:

        async def watchdog() -> None:
            nonlocal timed_out
            await trio.sleep(args.timeout)
            timed_out = True
            cell_run.interrupt()

    from . import _debugger

    with _debugger.showing(f"%%actor {handle.path}", _debugger.covers_actor(handle.info.get("uid") or ())):
        async with trio.open_nursery() as n:
            if args.timeout is not None and cell_run is not None:
                n.start_soon(watchdog)
            try:
                outcome = await actors.run_cell(handle, cell, emit)
            finally:
                emit.flush()
                n.cancel_scope.cancel()
    if timed_out:
        raise CellTimeout(
            f"the cell in actor {handle.path!r} ran longer than --timeout {args.timeout:g} s and was interrupted"
        )
    status = outcome.get("status")
    if status == "interrupted":
        raise CellInterrupted(f"the cell in actor {handle.path!r} was interrupted; the actor is still alive")
    if status == "error":
        raise cell_error(handle.path, outcome)
    if outcome.get("data") is None:
        return None
    return CellResult(handle.path, outcome["data"], outcome.get("metadata") or {})


async def _run_in_background(actors: Any, handle: Any, cell: str, emit: _Emitter) -> None:
    from ._actors import cell_error

    try:
        outcome = await actors.run_cell(handle, cell, emit)
    except Exception as exc:
        print(f"[notebook_actors] background cell in actor {handle.path!r} failed: {exc}", file=sys.stderr)
        return
    finally:
        emit.flush()
    if outcome.get("status") == "error":
        err = cell_error(handle.path, outcome)
        print("\n".join(err._render_traceback_()), file=sys.stderr)
    elif outcome.get("data") is not None:
        from IPython.display import publish_display_data

        publish_display_data(outcome["data"], outcome.get("metadata") or {})
    emit.flush()


class _BackgroundCell:
    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<cell running in the background in actor {self.path!r}; its output comes here>"


class _Emitter:
    """Show an actor's output events in the cell this task was started for."""

    def __init__(self) -> None:
        self._last: str | None = None

    def __call__(self, event: list[Any]) -> None:
        kind = event[0]
        if kind in ("stdout", "stderr"):
            if self._last not in (None, kind):
                self.flush()  # keep stdout/stderr interleaving in order
            getattr(sys, kind).write(event[1])
            self._last = kind
            return
        self.flush()
        if kind == "display":
            from IPython.display import publish_display_data

            publish_display_data(event[1], event[2] if len(event) > 2 else {})
        elif kind == "clear":
            from IPython.display import clear_output

            clear_output(wait=bool(event[1]))

    def flush(self) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        self._last = None


async def actor_line(line: str) -> Any:
    """``%actor COMMAND ...`` (trio side)."""
    __tracebackhide__ = True
    try:
        args = parse_argstring(_actor_line_args, line)
    except SystemExit:
        raise UsageError(f"bad %actor line: {line!r}; see `%actor?`") from None
    cmd, rest = args.command, args.args
    if cmd == "stop":
        return await unload(keep_loaded=True)
    if cmd == "autoawait":
        global _trio_cells
        if rest not in (["trio"], ["asyncio"]):
            raise UsageError("use `%actor autoawait trio` or `%actor autoawait asyncio`")
        _trio_cells = rest[0] == "trio"
        return None
    actors = _notebook_actors()
    if cmd == "debug":
        return await _open_parked(actors, rest[0] if rest else None)
    if cmd == "tree":
        try:
            from notebook_actors.widgets import tree
        except ImportError as exc:  # the notebook extra is missing: fall back to the table
            print(f"[notebook_actors] no tree widget ({exc}); pip install 'notebook_actors[notebook]'", file=sys.stderr)
            return _ActorTable(actors.table())
        return tree()
    if cmd == "ls":
        return _ActorTable(actors.table())
    if cmd == "killall":
        for path in [p for p in actors.handles if "/" not in p]:
            await actors.kill(path)
        return None
    if not rest:
        raise UsageError(f"%actor {cmd} needs an actor name, e.g. `%actor {cmd} worker`")
    path, names = rest[0], rest[1:]
    if cmd == "kill":
        if not await actors.kill(path):
            raise UsageError(f"no actor {path!r} in this notebook (see `%actor ls`)")
        return None
    if cmd == "restart":
        handle = actors.handles.get(path)
        await actors.ensure(path, handle.opts if handle else {}, new=True)
        return None
    shell = _shell()
    if cmd == "push":
        missing = [n for n in names if n not in shell.user_ns]
        if missing or not names:
            raise UsageError(
                f"%actor push {path} needs variable names defined here; missing: {', '.join(missing) or '(none given)'}"
            )
        values = {n: shell.user_ns[n] for n in names}
        from notebook_actors._context import encode_pld

        for name, value in values.items():
            try:
                encode_pld(value, f"variable {name!r}")
            except TypeError as exc:
                raise UsageError(str(exc)) from None
        await actors.push(path, values)
        return None
    if cmd == "pull":
        if not names:
            raise UsageError(f"%actor pull {path} needs variable names, e.g. `%actor pull {path} result`")
        import notebook_actors as na

        try:
            values = await actors.pull(path, names)
        except KeyError as exc:
            raise UsageError(exc.args[0]) from None
        except na.RemoteActorError as exc:  # a missing or unencodable variable over there
            raise UsageError(f"%actor pull {path}: {exc.info.message.strip(chr(34) + chr(39))}") from None
        shell.user_ns.update(values)
        return None
    raise UsageError(f"unknown %actor command {cmd!r}")


async def _open_parked(actors: Any, name: str | None) -> None:
    """``%actor debug [NAME]``: the parked debugger session of NAME, in this cell."""
    from . import _debugger

    def find_uid(path: str) -> Any:
        handle = actors.handles.get(path)
        uid = handle.info.get("uid") if handle is not None else None
        return tuple(uid) if uid else None

    try:
        note = await _debugger.open_parked(name, find_uid)
    except LookupError as exc:
        raise UsageError(str(exc)) from None
    if note:
        print(f"[notebook_actors] {note}", file=sys.stderr)


class _ActorTable:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __repr__(self) -> str:
        if not self.rows:
            return "no actors yet: a `%%actor NAME` cell spawns one"
        lines = [f"{'PATH':20} {'PID':>7} {'PARENT':>7} {'UPTIME':>9}  STATE"]
        for r in self.rows:
            lines.append(
                f"{r['path']:20} {r['pid'] or '-':>7} {r['ppid'] or '-':>7} {r['uptime']:>8.1f}s  {r['state']}"
            )
        return "\n".join(lines)


# -- running async cells in trio ----------------------------------------------------------
_DRIVER = compile(
    f"await __import__({_MAGICS_MODULE!r}, fromlist=['_'])._drive()",
    "<notebook_actors>",
    "exec",
    flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT,
)
_pending_code: list[Any] = []
#: Run plain async cells in trio (``%actor autoawait trio|asyncio``).
_trio_cells = True
#: Names that mark a cell transformed from %%actor/%actor: always run in trio.
_OUR_CALLS = {"actor_cell", "actor_line", "unload", "reload"}


def _make_run_code(original: Any) -> Any:
    async def run_code(code_obj: Any, result: Any = None, *, async_: bool = False) -> Any:
        if async_ and _guest.current() is not None and (_trio_cells or _OUR_CALLS & set(code_obj.co_names)):
            _pending_code.append(code_obj)
            return await original(_DRIVER, result, async_=True)
        return await original(code_obj, result, async_=async_)

    run_code._notebook_actors = True  # type: ignore[attr-defined]
    return run_code


async def _drive() -> Any:
    """Run the pending async cell code inside trio; interrupts become KeyboardInterrupt."""
    __tracebackhide__ = True
    code_obj = _pending_code.pop()
    shell = _shell()
    coro = eval(code_obj, shell.user_global_ns, shell.user_ns)
    rt = _guest.current()
    if rt is None:
        coro.close()
        raise UsageError(NOT_LOADED)
    try:
        return await rt.run_cell_task(_await, coro)
    finally:
        await _wait_stopping()


_stopping: Any = None
_reload = False


async def _wait_stopping() -> None:
    global _stopping, _reload
    rt, _stopping = _stopping, None
    reload, _reload = _reload, False
    if rt is not None:
        try:
            await rt.stop()
        except TimeoutError:
            print("[notebook_actors] the actor tree did not stop in time", file=sys.stderr)
    if reload:
        shell = _shell()
        load(shell)
        shell.extension_manager.loaded.add("notebook_actors")


async def _await(coro: Any) -> Any:
    __tracebackhide__ = True
    from . import _debugger

    try:
        with _debugger.showing("cell", _debugger.covers_unnamed(_is_notebook_actor)):
            return await coro
    except TypeError as exc:
        if "unrecognized yield message" not in str(exc):
            raise
        raise TypeError(
            "this cell awaited asyncio code, but with notebook_actors loaded async cells run in trio. "
            "Call asyncio code with `await notebook_actors.to_asyncio.run_task(async_fn, **kwargs)`, "
            "or switch plain cells back with `%actor autoawait asyncio`."
        ) from None


def _is_notebook_actor(uid: Any) -> bool:
    """Whether ``uid`` is an actor that an ``%%actor`` cell spawned."""
    if _actors is None:
        return False
    return any(tuple(h.info.get("uid") or ()) == tuple(uid) for h in _actors.handles.values())


# -- load / unload --------------------------------------------------------------------------
def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()


def _loop_or_none() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def load(shell: Any) -> None:
    """``%load_ext notebook_actors``: start the root actor in this kernel, add the magics."""
    shell.register_magics(ActorMagics)
    loop = _loop_or_none()
    if loop is None:
        print(NOT_A_KERNEL, file=sys.stderr)
        return
    try:
        _guest.start(loop)
    except _guest.RuntimeNotRunning as exc:
        raise UsageError(str(exc)) from None
    if transform_actor_cells not in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.insert(0, transform_actor_cells)
    if not getattr(shell.run_code, "_notebook_actors", False):
        shell.run_code = _make_run_code(shell.run_code)
    from . import _debugger

    _debugger.install()
    _register_restart_action()
    _hook_kernel_shutdown(shell)


def _register_restart_action() -> None:
    """The tree widget's restart button respawns a notebook actor, like `%actor restart`."""
    try:
        from notebook_actors.widgets import register_action
    except ImportError:  # the widget's optional dependencies are missing
        return
    register_action("restart", _restart_from_widget)


async def _restart_from_widget(node: dict[str, Any]) -> str:
    actors = _notebook_actors()
    uid = tuple(node.get("uid") or ())
    path = next((p for p, h in actors.handles.items() if tuple(h.info.get("uid") or ()) == uid), None)
    if path is None:
        path = next((p for p, h in actors.handles.items() if h.pid and h.pid == node.get("pid")), None)
    if path is None:
        raise RuntimeError(f"{node.get('name')!r} was not started by a %%actor cell: only those can be restarted here")
    await actors.ensure(path, actors.handles[path].opts, new=True)
    return f"restarted actor {path} (a fresh process and namespace)"


def _detach(shell: Any) -> None:
    if transform_actor_cells in shell.input_transformers_cleanup:
        shell.input_transformers_cleanup.remove(transform_actor_cells)
    if getattr(shell.run_code, "_notebook_actors", False):
        del shell.run_code  # back to the class's method
    from . import _debugger

    _debugger.uninstall()


def unload_sync(shell: Any) -> None:
    """``unload_ipython_extension``: detach and start stopping the tree (no wait)."""
    _detach(shell)
    _guest.stop_soon()


async def unload(keep_loaded: bool = False, reload: bool = False) -> None:
    """``%unload_ext notebook_actors`` / ``%actor stop`` / ``%reload_ext notebook_actors``:
    stop the tree and wait until every actor process is gone.

    This runs inside trio, whose run must end first: it only asks for the stop, and
    :func:`_drive` waits for it from asyncio once the cell's trio part has returned.
    """
    global _actors, _stopping, _reload
    shell = _shell()
    _actors = None
    shell.extension_manager.loaded.discard("notebook_actors")  # so %load_ext works again
    if not keep_loaded:
        _detach(shell)
    _stopping = _guest.stop_soon()
    _reload = reload


async def reload() -> None:
    """``%reload_ext notebook_actors``: stop the tree, wait, start a fresh one."""
    await unload(reload=True)


def _hook_kernel_shutdown(shell: Any) -> None:
    """Stop the tree (and wait for it) before ipykernel handles a shutdown request."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None:
        return
    for table in ("shell_handlers", "control_handlers"):
        handlers = getattr(kernel, table, None)
        if not handlers or "shutdown_request" not in handlers:
            continue
        original = handlers["shutdown_request"]
        if getattr(original, "_notebook_actors", False):
            continue

        async def shutdown_request(*args: Any, _original: Any = original) -> Any:
            rt = _guest.current()
            if rt is not None:
                try:
                    if asyncio.get_running_loop() is rt.loop:
                        await rt.stop()
                    else:  # ipykernel's control thread has a loop of its own
                        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(rt.stop(), rt.loop))
                except Exception as exc:  # never block the shutdown itself
                    print(f"[notebook_actors] stopping the actor tree failed: {exc!r}", file=sys.__stderr__)
            return await _original(*args)

        shutdown_request._notebook_actors = True  # type: ignore[attr-defined]
        handlers["shutdown_request"] = shutdown_request
