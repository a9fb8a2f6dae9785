"""The actor side of ``%%actor`` cells: run cell code in a persistent namespace.

Imported in every actor a notebook spawns (it is in their ``enable_modules``), so it
must stay light: no IPython at import time (IPython's formatters are imported only
when a cell displays a rich object).

One cell = one :func:`run_cell` call. While it runs, its output goes to the kernel
through an :class:`~._cell_output.OutputShipper` (a thread of its own, so blocking code's
output is live; started by the first output); the call's result is the encoded
:class:`~._protocol.CellDone`. :func:`interrupt_cell` cancels a running cell.

An actor also holds its own notebook children (``%%actor parent/child``): calls for a
deeper path are relayed to the child that leads there, so the kernel talks only to
its top-level actors.
"""

from __future__ import annotations

import ast
import contextvars
import inspect
import io
import linecache
import os
import signal
import sys
import tokenize
import traceback
import types
from typing import Any

import msgspec
import trio

import notebook_actors as na
from notebook_actors import ext

from . import _cell_display, _cell_output
from ._held import Held
from ._protocol import (
    HEADER_SIZE,
    ActorInfo,
    CellDone,
    CellFailed,
    CellInterrupted,
    CellOk,
    RunCell,
    decode_line_hello,
    decode_run,
    encode,
    encode_value,
    frame_bytes,
    frame_length,
)

#: Name of the cells' namespace module; not in ``sys.modules``, so functions and
#: classes defined in cells travel to other actors by value.
NAMESPACE_NAME = "__actor_main__"
CELL_FILE_PREFIX = "<actor-cell "
#: The names cells ran under here (a SIGINT interrupts only a cell's code).
_cell_files: set[str] = set()
#: Frames from these directories are ours or trio's: a user's traceback skips them.
_HIDDEN_DIRS = tuple(os.path.dirname(m.__file__) + os.sep for m in (trio, na, sys.modules[__package__]) if m.__file__)
_ASYNCIO_DIR = os.path.join(os.path.dirname(os.__file__), "asyncio") + os.sep
ASYNCIO_HINT = (
    "hint: this actor runs trio, so asyncio code cannot be awaited in its cells directly. "
    "Spawn it with `%%actor NAME --asyncio` and await asyncio code through "
    "`await notebook_actors.to_asyncio.run_task(async_fn, **kwargs)`."
)

_IPYKERNEL_INLINE = "module://matplotlib_inline.backend_inline"
_namespace: dict[str, Any] | None = None
_installed = False


def namespace() -> dict[str, Any]:
    """The namespace every ``%%actor`` cell of this actor runs in.

    ``trio``, ``notebook_actors as na`` and ``display`` are there from the start.
    """
    global _namespace
    if _namespace is None:
        module = types.ModuleType(NAMESPACE_NAME, "The namespace of this actor's notebook cells.")
        module.__dict__.update(
            __builtins__=__builtins__, display=_cell_display.display, trio=trio, na=na, notebook_actors=na
        )
        _namespace = module.__dict__
    return _namespace


def _install() -> None:
    """Once per process: capture stdio, stdin prompts, displays, matplotlib and SIGINT."""
    global _installed
    if _installed:
        return
    _installed = True
    _cell_output.install(sys.__stdout__, sys.__stderr__)
    _cell_display.install(_cell_output.emit)
    # ipykernel's own inline backend (which kernels put in MPLBACKEND, and so in our
    # environment) needs an IPython shell; ours is the same backend made for an actor
    if "matplotlib" not in sys.modules and _has_module("matplotlib_inline"):
        if os.environ.get("MPLBACKEND", _IPYKERNEL_INLINE) == _IPYKERNEL_INLINE:
            os.environ["MPLBACKEND"] = _cell_display.INLINE_BACKEND
    signal.signal(signal.SIGINT, _on_sigint)


def _has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def _on_sigint(signum: int, frame: Any) -> None:
    """Raise KeyboardInterrupt in a cell that hogs the CPU; ignore it elsewhere.

    The kernel sends SIGINT only when a cell did not react to a cancel request
    (it is not reaching trio checkpoints). Raising only when a cell's frame is on
    the stack keeps trio's own bookkeeping from being interrupted midway.
    """
    f = frame
    while f is not None and f.f_code.co_filename not in _cell_files:
        f = f.f_back
    if f is not None and not frame.f_code.co_filename.startswith(os.path.dirname(trio.__file__)):
        raise KeyboardInterrupt


# -- compiling and running ----------------------------------------------------------
def _compile(code: str, filename: str, offset: int) -> tuple[Any, bool]:
    """Compile a cell whose first line is line ``offset + 1`` in the editor; when it
    ends in an expression, its value lands in ``__na_last__``."""
    tree = ast.parse("\n" * offset + code, filename, "exec")
    has_value = bool(tree.body) and isinstance(tree.body[-1], ast.Expr) and not _ends_quiet(code)
    if has_value:
        last = tree.body[-1]
        tree.body[-1] = ast.copy_location(
            ast.Assign(targets=[ast.Name("__na_last__", ast.Store())], value=last.value),  # type: ignore[attr-defined]
            last,
        )
        ast.fix_missing_locations(tree)
    return compile(tree, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True), has_value


def _ends_quiet(code: str) -> bool:
    """IPython's rule: a cell whose last token (comments aside) is ``;`` shows no
    value, so nothing of it is rendered or sent back (a large result stays here)."""
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.INDENT, tokenize.DEDENT}
    last = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            if tok.type not in skip:
                last = tok
    except (tokenize.TokenError, SyntaxError):
        return False
    return last is not None and last.type == tokenize.OP and last.string == ";"


def _user_frame(frame: traceback.FrameSummary) -> bool:
    return not frame.filename.startswith(_HIDDEN_DIRS)


def _trim(te: traceback.TracebackException, seen: set[int]) -> None:
    """Drop our and trio's frames, in ``te`` and the exceptions it chains to."""
    if id(te) in seen:
        return
    seen.add(id(te))
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if _user_frame(f)])
    for other in (te.__cause__, te.__context__, *(getattr(te, "exceptions", None) or ())):
        if other is not None:
            _trim(other, seen)


def user_traceback(exc: BaseException) -> list[str]:
    """The traceback of ``exc`` as a user reads it: their own frames only."""
    te = traceback.TracebackException.from_exception(exc)
    _trim(te, set())
    return list(te.format())


def _from_asyncio(exc: BaseException) -> bool:
    return any(f.filename.startswith(_ASYNCIO_DIR) for f in traceback.extract_tb(exc.__traceback__))


def _failed(exc: BaseException) -> CellFailed:
    if _from_asyncio(exc) and not na.current_actor().is_infected_aio():
        exc.add_note(ASYNCIO_HINT)
    return CellFailed(ename=type(exc).__name__, evalue=str(exc), traceback=user_traceback(exc), pid=os.getpid())


def _execute_sync(code_obj: Any, has_value: bool) -> CellOk | CellFailed | CellInterrupted:
    """A cell of plain code (no top-level ``await``), run right here."""
    ns = namespace()
    try:
        eval(code_obj, ns)
    except KeyboardInterrupt:
        return CellInterrupted(pid=os.getpid())
    except (Exception, SystemExit) as exc:  # `exit()` in a cell fails it, as in IPython
        return _failed(exc)
    finally:
        _cell_display.flush_figures()
    return _value_of(ns, has_value)


async def _execute(code_obj: Any, has_value: bool) -> CellOk | CellFailed | CellInterrupted:
    __tracebackhide__ = True  # pdb++ hides this frame in a post-mortem's `where`
    ns = namespace()
    try:
        result = eval(code_obj, ns)
        if inspect.iscoroutine(result):
            await result
    except KeyboardInterrupt:
        return CellInterrupted(pid=os.getpid())
    except (Exception, SystemExit) as exc:
        if na.current_actor().debug_mode:  # the post-mortem opens in the running cell
            from notebook_actors.debug import post_mortem_for

            await post_mortem_for(exc)
        return _failed(exc)
    finally:
        _cell_display.flush_figures()
    return _value_of(ns, has_value)


def _value_of(ns: dict[str, Any], has_value: bool) -> CellOk:
    value = ns.pop("__na_last__", None) if has_value else None
    if value is None:
        return CellOk()
    ns["_"] = value
    data, metadata = _cell_display.mime_bundle(value)
    return CellOk(data=data or None, metadata=metadata, value=encode_value(value))


class _Cell:
    """One cell while it runs here: its output routed to the kernel, its activity shown."""

    def __init__(self, label: str, count: Any, output: list[str]) -> None:
        self.label = label
        self.id = output[1]
        self.shipper = _cell_output.OutputShipper(*output)
        self._token: Any = None
        ext.set_activity(f"cell [{count}]")  # shown beside the actor in the tree widget

    def _attach(self) -> None:
        self._token = _cell_output.attach(self.shipper, self.label)

    def _detach(self) -> None:
        _cell_output.detach(self.shipper, self._token)

    def start(self, code: str, filename: str, offset: int) -> Any:
        """Compile the cell and run it if it is plain code (else return the coroutine
        that runs it). Called in a copy of the caller's context: what a cell of plain
        code sets in contextvars (decimal's context, say) stays its own, as it would
        in a task of its own."""
        self._attach()  # a warning while compiling shows in the cell
        try:
            try:
                code_obj, has_value = _compile(code, filename, offset)
            except SyntaxError as exc:
                outcome: Any = _failed(exc)
            else:
                if code_obj.co_flags & inspect.CO_COROUTINE or na.current_actor().debug_mode:
                    self._detach()  # attached again in the call's task
                    return self.run_async(code_obj, has_value)
                outcome = _execute_sync(code_obj, has_value)
        except BaseException:
            self.end(CellInterrupted(pid=os.getpid()))
            raise
        return self.end(outcome)

    async def run_async(self, code_obj: Any, has_value: bool) -> bytes:
        """Code that awaits (or any cell in debug mode), in the call's task, where
        :func:`interrupt_cell` cancels it."""
        outcome: Any = CellInterrupted(pid=os.getpid())
        self._attach()
        scope = _running_cells[self.id] = trio.CancelScope()
        if _early_interrupts.pop(self.id, False):
            scope.cancel()
        try:
            with scope:
                outcome = await _execute(code_obj, has_value)
        finally:
            del _running_cells[self.id]
            result = self.end(outcome)
        return result

    def end(self, outcome: Any) -> bytes:
        ext.set_activity(None)
        self._detach()
        self.shipper.close(wait=False)  # the kernel reads the rest up to its End
        return encode(CellDone(outcome=outcome, output=self.shipper.started))


def run_cell(
    code: str,
    label: str,
    count: Any,
    output: list[str],
    offset: int = 1,
    header: str = "",
    path: list[str] | None = None,
    filename: str | None = None,
) -> Any:
    """Run one notebook cell here (or, for a ``path``, in the child it leads to).

    ``output`` is the kernel's ``[socket path, token]`` for the cell's output (opened
    with the cell's first output only); the token also names the cell for
    :func:`interrupt_cell`. ``offset`` and ``header`` are the editor's lines above the
    code (so line numbers match); ``count`` is the notebook's execution count;
    ``filename`` names the code (else ``<actor-cell NAME [N]>``). Answers the encoded
    :class:`~._protocol.CellDone`: one answer, no other message unless the cell shows
    something.

    A plain function, so that the runtime answers a cell of plain code right in the
    channel's loop: no task and no scheduling pass (code that blocks blocks the actor
    wherever it runs). A cell that awaits, a relayed one and any cell in debug mode
    get a coroutine back, which the runtime awaits in a task of its own.
    """
    if path:
        return _child(path[0]).run(
            run_cell,
            code=code,
            label=label,
            count=count,
            output=output,
            offset=offset,
            header=header,
            path=path[1:],
            filename=filename,
        )
    _install()
    filename = filename or f"{CELL_FILE_PREFIX}{label} [{count}]>"
    _cell_files.add(filename)
    editor_text = header + "\n" * max(offset - header.count("\n"), 0) + code
    linecache.cache[filename] = (len(editor_text), None, editor_text.splitlines(True), filename)
    if _early_interrupts.pop(output[1], False):  # interrupted before it started: not run
        return encode(CellDone(outcome=CellInterrupted(pid=os.getpid()), output=False))
    return contextvars.copy_context().run(_Cell(label, count, output).start, code, filename, offset)


#: The cancel scopes of the cells running here, by the kernel's token for them.
_running_cells: dict[str, trio.CancelScope] = {}
#: Interrupts that came before their cell started (both calls race to run first).
_early_interrupts: dict[str, bool] = {}
EARLY_INTERRUPTS_KEPT = 64


async def interrupt_cell(cell: str, path: list[str] | None = None) -> bool:
    """Cancel the running cell whose output token is ``cell`` (here, or in the child
    ``path`` leads to); it then returns CellInterrupted. False when it is not running
    (yet: one that starts later is cancelled at its start)."""
    if path:
        return await _child(path[0]).run(interrupt_cell, cell=cell, path=path[1:])
    scope = _running_cells.get(cell)
    if scope is None:
        _early_interrupts[cell] = True
        while len(_early_interrupts) > EARLY_INTERRUPTS_KEPT:  # late interrupts of ended cells
            del _early_interrupts[next(iter(_early_interrupts))]
        return False
    scope.cancel()
    return True


# -- the cell line: the kernel's way to this actor's cells from its asyncio loop --------
#: Seconds a new cell-line connection gets to send its token.
LINE_HELLO_TIMEOUT = 10.0
#: The cell line's socket is in a directory of this name in the private runtime directory.
LINE_DIR_PREFIX = "na-cells-"
#: This actor's cell line once served: ``[socket path, token]``.
_line: list[str] | None = None
_line_pid = 0


async def open_line() -> list[str] | None:
    """Serve this actor's cells on a Unix socket of its own; its ``[path, token]``
    (None in debug mode, whose cells stay on the call).

    The kernel sends a cell there from its asyncio loop, without handing it to its
    trio guest run first, and reads the answer there too: one :class:`RunCell` per
    frame, answered (in order) with the encoded :class:`CellDone`, as :func:`run_cell`
    answers its call. The socket is in the user's private runtime directory, and a
    connection must first send the token, which only the caller of this learns.
    """
    global _line, _line_pid
    if na.current_actor().debug_mode:
        return None
    if _line is None or _line_pid != os.getpid():  # a forked child serves a line of its own
        _line_pid = os.getpid()
        _line = await (await _service_nursery()).start(_serve_line)
    return _line


async def _serve_line(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    import secrets
    import shutil
    import tempfile

    where = tempfile.mkdtemp(prefix=LINE_DIR_PREFIX, dir=ext.runtime_dir())
    path = os.path.join(where, "cells.sock")
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        await sock.bind(path)
        sock.listen(8)
        listener = trio.SocketListener(sock)
        task_status.started([path, secrets.token_hex(16)])
        async with trio.open_nursery() as nursery:
            while True:
                try:
                    stream = await listener.accept()
                except OSError:  # out of descriptors, say: the kernel uses the call
                    return
                nursery.start_soon(_line_connection, stream)
    finally:
        sock.close()
        shutil.rmtree(where, ignore_errors=True)


async def _line_connection(stream: trio.SocketStream) -> None:
    import secrets

    assert _line is not None
    buffer = bytearray()
    async with stream:
        try:
            with trio.fail_after(LINE_HELLO_TIMEOUT):
                hello = decode_line_hello(await _read_frame(stream, buffer))
            if not secrets.compare_digest(hello.token, _line[1]):
                return
            while True:
                request = decode_run(await _read_frame(stream, buffer))
                await stream.send_all(frame_bytes(await _line_cell(request)))
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, EOFError, ValueError):
            return  # the kernel is gone or closed the line (a bad frame: msgspec's errors are ValueErrors)


async def _line_cell(request: RunCell) -> bytes:
    """One cell from the line, run as :func:`run_cell` runs its call's. The kernel
    sends only plain code here (a cell that awaits takes the call, whose task the
    debugger's ``q`` cancels), which runs right here; anything else is awaited here."""
    try:
        started = run_cell(**msgspec.structs.asdict(request))
        return started if isinstance(started, bytes) else await started
    except KeyboardInterrupt:  # SIGINT outside the cell's own code
        return encode(CellDone(outcome=CellInterrupted(pid=os.getpid())))


async def _read_frame(stream: trio.SocketStream, buffer: bytearray) -> bytes:
    await _fill(stream, buffer, HEADER_SIZE)
    end = HEADER_SIZE + frame_length(bytes(buffer[:HEADER_SIZE]))
    await _fill(stream, buffer, end)
    data = bytes(buffer[HEADER_SIZE:end])
    del buffer[:end]
    return data


async def _fill(stream: trio.SocketStream, buffer: bytearray, size: int) -> None:
    while len(buffer) < size:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError
        buffer += chunk


# The cell's call is plumbing: the tree shows the cell (set_activity) instead.
ext.hide_calls(f"{__name__}:run_cell", f"{__name__}:interrupt_cell", f"{__name__}:open_line")


# -- namespace values ---------------------------------------------------------------
async def push(values: dict[str, Any], path: list[str] | None = None) -> list[str]:
    """Set variables in the cell namespace of this actor (or the one ``path`` leads to)."""
    if path:
        return await _child(path[0]).run(push, values=values, path=path[1:])
    namespace().update(values)
    return sorted(values)


async def pull(names: list[str], path: list[str] | None = None) -> dict[str, Any]:
    """Values of variables in a cell namespace (KeyError names the missing)."""
    if path:
        return await _child(path[0]).run(pull, names=names, path=path[1:])
    ns = namespace()
    missing = [n for n in names if n not in ns]
    if missing:
        raise KeyError(
            f"actor {na.current_actor().name!r} has no variable(s) {', '.join(missing)} in its cell namespace"
        )
    return {n: ns[n] for n in names}


#: What ``ps`` and ``htop`` show for a notebook actor (the notebook path filled in).
PROCESS_TITLE = "notebook_actors actor {path}"


def whoami(path: str) -> bytes:
    """This actor's identity, for the kernel's actor table; from now on ``ps`` shows
    the actor's notebook ``path`` as its process title."""
    import setproctitle

    setproctitle.setproctitle(PROCESS_TITLE.format(path=path))
    return encode(ActorInfo(pid=os.getpid(), ppid=os.getppid(), uid=list(na.current_actor().uid)))


# -- children spawned by path (``%%actor parent/child``) -------------------------------
_children: dict[str, Held] = {}
_service: trio.Nursery | None = None


async def _service_nursery() -> trio.Nursery:
    """A nursery that outlives the RPC that spawns a child (a trio system task)."""
    global _service
    if _service is None:
        ready = trio.Event()

        async def serve() -> None:
            global _service
            async with trio.open_nursery() as nursery:
                _service = nursery
                ready.set()
                await trio.sleep_forever()

        trio.lowlevel.spawn_system_task(serve)
        await ready.wait()
    assert _service is not None
    return _service


def _child(name: str) -> na.Portal:
    held = _children.get(name)
    if held is None or held.state != "running" or held.portal is None:
        raise LookupError(f"actor {na.current_actor().name!r} has no running notebook child {name!r}")
    return held.portal


async def spawn_child(path: list[str], opts: dict[str, Any]) -> bytes:
    """Spawn (or find) the notebook child at ``path`` below this actor; its identity."""
    name, rest = path[0], path[1:]
    if rest:
        return await _child(name).run(spawn_child, path=rest, opts=opts)
    held = _children.get(name)
    if held is None or held.state != "running":
        held = Held(name)
        await (await _service_nursery()).start(held.hold, opts)
        _children[name] = held
    assert held.info is not None
    return encode(held.info)


async def stop_child(path: list[str]) -> bool:
    """Stop the notebook child at ``path`` (and its subtree); wait until it is gone."""
    name, rest = path[0], path[1:]
    if rest:
        return await _child(name).run(stop_child, path=rest)
    held = _children.pop(name, None)
    if held is None:
        return False
    held.stop()
    await held.done.wait()
    return True
