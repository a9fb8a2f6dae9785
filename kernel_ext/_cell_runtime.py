"""The actor side of ``%%actor`` cells: run cell code in a persistent namespace.

Imported in every actor a notebook spawns (it is in their ``enable_modules``), so it
must stay light: no IPython at import time (IPython's formatters are imported only
when a cell displays a rich object).

One cell = one :func:`run_cell` context. While the cell runs, everything it writes to
``sys.stdout``/``sys.stderr`` (print, warnings, logging) and every ``display(...)``
goes, in order, over the context's stream to the kernel, which shows it live in the
cell. Output written after the cell ended (by a task it left running elsewhere) is
kept in a bounded buffer and shown, labelled, at the top of the actor's next cell.
"""

from __future__ import annotations

import ast
import contextvars
import inspect
import linecache
import os
import signal
import sys
import traceback
import types
from collections import deque
from typing import Any

import trio

import notebook_actors as na
from notebook_actors import _tree
from notebook_actors._context import encode_pld

#: Name of the cells' namespace module; not in ``sys.modules``, so functions and
#: classes defined in cells travel to other actors by value.
NAMESPACE_NAME = "__actor_main__"
#: How much orphaned output an actor keeps for its next cell (characters).
BACKGROUND_LIMIT = 100_000
_CELL_FILE_PREFIX = "<actor-cell "

_namespace: dict[str, Any] | None = None
_cell_counter = 0
_installed = False
_background: deque[list[Any]] = deque()
_background_size = 0
_current_sink: contextvars.ContextVar[_Sink | None] = contextvars.ContextVar("notebook_actors_cell_sink", default=None)


def namespace() -> dict[str, Any]:
    """The namespace every ``%%actor`` cell of this actor runs in."""
    global _namespace
    if _namespace is None:
        module = types.ModuleType(NAMESPACE_NAME, "The namespace of this actor's notebook cells.")
        module.__dict__["display"] = display
        module.__dict__["__builtins__"] = __builtins__
        _namespace = module.__dict__
    return _namespace


# -- output capture -----------------------------------------------------------------
class _Sink:
    """The ordered output events of one running cell, pumped to the kernel."""

    def __init__(self) -> None:
        self.events: deque[list[Any]] = deque()
        self.closed = False
        self._wakeup = trio.Event()

    def put(self, event: list[Any]) -> None:
        if event[0] in ("stdout", "stderr") and self.events and self.events[-1][0] == event[0]:
            self.events[-1][1] += event[1]  # coalesce: one message per burst
        else:
            self.events.append(event)
        self._wakeup.set()

    def close(self) -> None:
        self.closed = True
        self._wakeup.set()

    async def pump(self, stream: Any) -> None:
        while True:
            while self.events:
                await stream.send(self.events.popleft())
            if self.closed:
                return
            await self._wakeup.wait()
            self._wakeup = trio.Event()


def _emit(event: list[Any]) -> None:
    sink = _current_sink.get()
    if sink is not None and not sink.closed:
        sink.put(event)
        return
    global _background_size
    _background.append(event)
    _background_size += len(str(event[1]))
    while _background_size > BACKGROUND_LIMIT and len(_background) > 1:
        _background_size -= len(str(_background.popleft()[1]))


class _CellStream:
    """``sys.stdout``/``sys.stderr`` of an actor that runs notebook cells."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, name: str, original: Any) -> None:
        self.name = name
        self._original = original

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            _emit([self.name, text])
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def buffer(self) -> Any:
        return self._original.buffer


def _install() -> None:
    """Once per process: capture stdio and make SIGINT interrupt the running cell."""
    global _installed
    if _installed:
        return
    _installed = True
    sys.stdout = _CellStream("stdout", sys.__stdout__)
    sys.stderr = _CellStream("stderr", sys.__stderr__)
    signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum: int, frame: Any) -> None:
    """Raise KeyboardInterrupt in a cell that hogs the CPU; ignore it elsewhere.

    The kernel sends SIGINT only when a cell did not react to a cancel request
    (it is not reaching trio checkpoints). Raising only when a cell's frame is on
    the stack keeps trio's own bookkeeping from being interrupted midway.
    """
    in_cell = False
    f = frame
    while f is not None:
        filename = f.f_code.co_filename
        if filename.startswith(_CELL_FILE_PREFIX):
            in_cell = True
            break
        f = f.f_back
    if in_cell and not frame.f_code.co_filename.startswith(os.path.dirname(trio.__file__)):
        raise KeyboardInterrupt


# -- display ------------------------------------------------------------------------
def mime_bundle(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(data, metadata)`` for ``obj``: its rich reprs when it has any, else its repr."""
    if _has_rich_repr(obj):
        try:
            from IPython.core.formatters import DisplayFormatter

            data, metadata = DisplayFormatter().format(obj)
            return _plain(data), _plain(metadata)
        except Exception as exc:  # a broken _repr_*_ must not lose the value
            return {"text/plain": f"{_safe_repr(obj)}  (rich repr failed: {exc!r})"}, {}
    return {"text/plain": _safe_repr(obj)}, {}


def _has_rich_repr(obj: Any) -> bool:
    cls = type(obj)
    return any(name.startswith("_repr_") and name.endswith("_") for name in dir(cls))


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    import base64

    return {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in d.items()}


def _safe_repr(obj: Any) -> str:
    try:
        return repr(obj)
    except Exception as exc:
        return f"<{type(obj).__name__} object; repr() raised {exc!r}>"


def display(
    *objs: Any, raw: bool = False, metadata: dict[str, Any] | None = None, clear: bool = False, **_: Any
) -> None:
    """Show objects in the notebook cell running this actor's code (like IPython's).

    ``raw=True`` takes each object as a ready mime bundle ``{mime: data}``.
    """
    if clear:
        _emit(["clear", True])
    for obj in objs:
        if raw:
            data, md = dict(obj), dict(metadata or {})
        else:
            data, md = mime_bundle(obj)
            md.update(metadata or {})
        _emit(["display", data, md])


def clear_output(wait: bool = False) -> None:
    """Clear the output of the cell running this actor's code."""
    _emit(["clear", wait])


def _patch_ipython_display() -> None:
    """Make ``IPython.display.display`` work in an actor (no shell runs here)."""
    try:
        import IPython.display  # noqa: F401 - patched below, before the cell imports from it
    except ImportError:
        return
    mods = [sys.modules.get(m) for m in ("IPython.display", "IPython.core.display_functions", "IPython")]
    for mod in mods:
        if mod is not None and getattr(mod, "display", display) is not display:
            mod.display = display  # type: ignore[attr-defined]
            if hasattr(mod, "clear_output"):
                mod.clear_output = clear_output  # type: ignore[attr-defined]


# -- running cells ------------------------------------------------------------------
def _compile(code: str, filename: str) -> tuple[Any, bool]:
    """Compile a cell; when it ends in an expression, its value lands in ``__na_last__``."""
    tree = ast.parse(code, filename, "exec")
    has_value = bool(tree.body) and isinstance(tree.body[-1], ast.Expr)
    if has_value:
        last = tree.body[-1]
        tree.body[-1] = ast.copy_location(
            ast.Assign(targets=[ast.Name("__na_last__", ast.Store())], value=last.value),
            last,  # type: ignore[attr-defined]
        )
        ast.fix_missing_locations(tree)
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    return compile(tree, filename, "exec", flags=flags, dont_inherit=True), has_value


def _cell_traceback(exc: BaseException) -> list[str]:
    """The traceback lines from the cell's own frames on (our frames cut off)."""
    tb = exc.__traceback__
    while tb is not None and not tb.tb_frame.f_code.co_filename.startswith(_CELL_FILE_PREFIX):
        tb = tb.tb_next
    return traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)


def _error(exc: BaseException) -> dict[str, Any]:
    return {
        "status": "error",
        "ename": type(exc).__name__,
        "evalue": str(exc),
        "traceback": _cell_traceback(exc),
        "pid": os.getpid(),
    }


async def _execute(code_obj: Any, has_value: bool) -> dict[str, Any]:
    __tracebackhide__ = True  # pdb++ hides this frame in a post-mortem's `where`
    ns = namespace()
    try:
        result = eval(code_obj, ns)
        if inspect.iscoroutine(result):
            await result
    except KeyboardInterrupt as exc:
        return _error(exc)
    except Exception as exc:
        if na.current_actor().debug_mode:  # the post-mortem opens in the running cell
            from notebook_actors.debug import post_mortem_for

            await post_mortem_for(exc)
        return _error(exc)
    if not has_value:
        return {"status": "ok", "data": None}
    value = ns.pop("__na_last__", None)
    if value is None:
        return {"status": "ok", "data": None}
    ns["_"] = value
    data, md = mime_bundle(value)
    return {"status": "ok", "data": data, "metadata": md}


@na.context
async def run_cell(ctx: na.Context, code: str, label: str) -> dict[str, Any]:
    """Run one notebook cell here; stream its output; return its result or error.

    ``ctx.started`` hands the kernel this process' pid (to escalate an interrupt).
    """
    global _cell_counter
    _install()
    _cell_counter += 1
    filename = f"{_CELL_FILE_PREFIX}{label} [{_cell_counter}]>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    if "IPython" in code or "IPython" in sys.modules:
        _patch_ipython_display()
    await ctx.started(os.getpid())
    try:
        code_obj, has_value = _compile(code, filename)
    except SyntaxError as exc:
        return _error(exc)
    sink = _Sink()
    _flush_background(sink, label)
    async with ctx.open_stream() as stream, trio.open_nursery() as n:
        n.start_soon(sink.pump, stream)
        token = _current_sink.set(sink)
        _tree.set_activity(f"cell [{_cell_counter}]")  # shown beside the actor in the tree widget
        try:
            outcome = await _execute(code_obj, has_value)
        finally:
            _tree.set_activity(None)
            _current_sink.reset(token)
            sink.close()
    return outcome


# A cell's output stream is plumbing: the tree shows the cell (set_activity) instead.
_tree.hide_calls(f"{__name__}:run_cell")


def _flush_background(sink: _Sink, label: str) -> None:
    global _background_size
    if not _background:
        return
    sink.put(["stderr", f"[background output of actor {label}, written after its previous cell ended]\n"])
    while _background:
        sink.put(_background.popleft())
    _background_size = 0
    sink.put(["stderr", "[end of background output]\n"])


# -- namespace values ---------------------------------------------------------------
def push(values: dict[str, Any]) -> list[str]:
    """Set variables in this actor's cell namespace."""
    namespace().update(values)
    return sorted(values)


def pull(names: list[str]) -> dict[str, Any]:
    """Values of variables in this actor's cell namespace (KeyError names the missing)."""
    ns = namespace()
    missing = [n for n in names if n not in ns]
    if missing:
        raise KeyError(
            f"actor {na.current_actor().name!r} has no variable(s) {', '.join(missing)} in its cell namespace"
        )
    values = {n: ns[n] for n in names}
    for name, value in values.items():
        encode_pld(value, f"variable {name!r}")  # say which one cannot travel
    return values


def whoami() -> dict[str, Any]:
    """This actor's identity, for the kernel's actor table."""
    actor = na.current_actor()
    return {"pid": os.getpid(), "ppid": os.getppid(), "addr": actor.accept_addr, "uid": list(actor.uid)}


# -- children spawned by path (``%%actor parent/child``) -------------------------------
class Held:
    """A child actor held in its own nursery, so that its crash stays its own."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.portal: Any = None
        self.info: dict[str, Any] = {}
        self.state = "starting"
        self.error: str | None = None
        self._stop = trio.Event()
        self.done = trio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def hold(self, opts: dict[str, Any], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Spawn the actor and keep it until :meth:`stop` (or until it dies)."""
        started = False
        try:
            async with na.open_nursery() as an:
                self.portal = await an.start_actor(
                    self.name,
                    enable_modules=[__name__, *opts.get("enable_modules", [])],
                    debug_mode=opts.get("debug_mode") or None,
                    infect_asyncio=bool(opts.get("infect_asyncio")),
                )
                self.info = await self.portal.run(whoami)
                self.state, started = "running", True
                task_status.started(self)
                await self._stop.wait()
                self.state = "stopping"
                await an.cancel()
            self.state = "exited"
        except Exception as exc:
            if not started:
                raise
            self.state, self.error = "crashed", str(exc).splitlines()[0].split("died unexpectedly: ")[-1]
        finally:
            if self.state not in ("exited", "crashed"):
                self.state = "exited"
            self.done.set()


_children: dict[str, Held] = {}


async def spawn_child(name: str, opts: dict[str, Any]) -> dict[str, Any]:
    """RPC: spawn (or find) child ``name`` of this actor; return its identity."""
    held = _children.get(name)
    if held is not None and held.state == "running":
        return held.info
    held = Held(name)
    await na.current_actor()._rpc_n.start(held.hold, opts)  # type: ignore[union-attr]
    _children[name] = held
    return held.info


async def stop_child(name: str) -> bool:
    """RPC: stop child ``name`` (and its subtree) and wait until it is gone."""
    held = _children.pop(name, None)
    if held is None:
        return False
    held.stop()
    await held.done.wait()
    return True
