"""The kernel's side of ``%%actor`` cells: the actors a notebook spawned, by path.

``a`` is a child of the kernel's root actor; ``a/b`` is a child of ``a`` (spawned by
``a``'s process, in a nursery of its own); and so on. Each actor is held in its own
nursery, so one actor's crash (or a ``kill -9``) ends only that actor and its subtree,
never the kernel's runtime or its siblings. The kernel talks to its top-level actors;
calls for a deeper path are relayed by the actors on the way (``path=[...]``).

Everything here runs in trio (the kernel's guest run), but for a cell on its actor's
cell line (:meth:`NotebookActors.line_for`, :meth:`NotebookActors.run_cell_on_line`),
which runs in the kernel's asyncio loop, outside trio (:mod:`._line`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fnmatch
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

import msgspec
import psutil
import trio

import notebook_actors as na
from notebook_actors import ext

from . import _cell_runtime
from ._guest import KernelRuntime, current_cell
from ._held import Held, describe_exit
from ._line import CellLine, GiveUp, LineClosed, connect, request
from ._output_server import CellWriter, OutputServer
from ._protocol import ActorInfo, CellDone, CellFailed, CellInterrupted, CellOk, decode_done, decode_info
from ._stdin import StdinRoute

#: Seconds an interrupted cell gets to react to its cancellation before the kernel
#: sends SIGINT to the actor's process (a CPU-bound loop never reaches a checkpoint).
INTERRUPT_GRACE = 1.0
#: Seconds after that SIGINT before the kernel gives up waiting for the cell.
SIGINT_GRACE = 5.0
#: Seconds the kernel waits to learn how a dead actor ended (its exit code).
EXIT_WAIT = 5.0
#: Seconds the kernel waits for the rest of a cell's output once its result came.
END_TIMEOUT = 30.0
#: Names the modules the fork server's template imports before it forks actors.
PRELOAD_VAR = "NOTEBOOK_ACTORS_FORKSERVER_PRELOAD"
#: What every notebook actor imports (its cell runtime; psutil, for the tree widget's
#: activity; the debugger, for its stack dumps), preloaded by the templates of this
#: kernel and of its actors: a new actor's first cell no longer imports ~15 ms of them.
CELL_PRELOAD = (_cell_runtime.__name__, "psutil", "notebook_actors.debug")


def preload_cell_modules() -> None:
    """Have every fork-server template this kernel (and, through the environment its
    actors inherit, each notebook actor) starts preload :data:`CELL_PRELOAD`; the
    user's own ``NOTEBOOK_ACTORS_FORKSERVER_PRELOAD`` modules stay, first."""
    mine = [m for m in os.environ.get(PRELOAD_VAR, "").split(",") if m]
    os.environ[PRELOAD_VAR] = ",".join(dict.fromkeys([*mine, *CELL_PRELOAD]))


@dataclass
class CellCode:
    """A cell's code and where it sits in the editor (for line numbers and labels)."""

    code: str
    header: str = ""
    offset: int = 1
    count: Any = None
    #: The name to compile it under (JupyterLab's name for the cell while its debugger
    #: panel debugs the actor); None: the usual ``<actor-cell NAME [N]>``.
    filename: str | None = None


@dataclass
class Gone:
    """A cell whose actor died, was killed or was stopped before the cell ended."""

    message: str


Ending = CellOk | CellFailed | CellInterrupted | Gone


class ActorHandle:
    """The kernel's record of one notebook actor."""

    def __init__(self, path: str, opts: dict[str, Any]) -> None:
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self.parent = parent_path(path)
        self.opts = opts
        self.info: ActorInfo | None = None
        self.held: Held | None = None  # top-level actors only
        self.started_at = time.time()
        self.cells = 0  # cells running in it now
        self.stopped_by: str | None = None
        #: Its cell line (see :mod:`._line`): None until asked for, then ``"opening"``,
        #: then ``[socket path, token]``, or ``"none"`` when it has none (debug mode).
        self.line_address: Any = None
        self.line: CellLine | None = None  # the open connection, on the kernel's loop

    @property
    def on_line(self) -> CellLine | None:
        """Its cell line when a cell can go there now (else the cell takes the portal)."""
        line = self.line
        if line is None or not line.usable or (self.held is not None and self.held.state != "running"):
            return None
        return line

    @property
    def pid(self) -> int | None:
        return self.info.pid if self.info else None

    @property
    def uid(self) -> tuple[str, ...]:
        return tuple(self.info.uid) if self.info else ()

    @property
    def alive(self) -> bool:
        if self.held is not None and self.held.state != "running":
            return False
        pid = self.pid
        if pid is None:
            return False
        if self.held is not None and not self.opts.get("host"):  # our child: one waitid, left to its reaper
            try:
                return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
            except ChildProcessError:  # not (or no longer) a child of this process
                pass
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    @property
    def state(self) -> str:
        """The tree widget's word for the actor's state (``idle``, ``crashed(SIGKILL)``...)."""
        held = self.held
        if held is not None and held.state == "crashed":
            code = held.exitcode
            if code is not None and code < 0:
                try:
                    return f"crashed({signal.Signals(-code).name})"
                except ValueError:
                    pass
            return "crashed" if code is None else f"crashed({code})"
        if held is not None and held.state in ("starting", "stopping", "exited"):
            return {"starting": "spawning", "stopping": "cancelling", "exited": "exited"}[held.state]
        if not self.alive:
            return "exited"
        return "running" if self.cells else "idle"


def parent_path(path: str) -> str | None:
    """``"a/b/c"`` -> ``"a/b"``; a top-level actor has none."""
    return path.rsplit("/", 1)[0] if "/" in path else None


def check_path(path: str) -> str:
    """``path`` normalised (no outer slashes); ValueError unless each part is a name."""
    parts = path.strip("/").split("/")
    for part in parts:
        if not part.isidentifier():
            raise ValueError(f"bad actor path {path!r}: each part must be a name like `worker` or `parent/child`")
    return "/".join(parts)


def is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


class NotebookActors:
    """All actors this kernel's notebook spawned, by path."""

    def __init__(self, rt: KernelRuntime) -> None:
        self.rt = rt
        self.handles: dict[str, ActorHandle] = {}
        self._locks: dict[str, trio.Lock] = {}
        self._server: OutputServer | None = None

    def _lock(self, path: str) -> trio.Lock:
        lock = self._locks.get(path)
        if lock is None:
            lock = self._locks[path] = trio.Lock()
        return lock

    def busy(self, path: str) -> bool:
        """Whether ``path``'s actor is being spawned or stopped now."""
        lock = self._locks.get(path)
        return lock is not None and lock.locked()

    def matching(self, patterns: list[str]) -> list[str]:
        """Paths for names and globs (``'pool/*'``): a glob matches existing actors.

        Raises:
            ValueError: a bad name, or a glob that matches no actor.
        """
        paths: list[str] = []
        for pattern in patterns:
            if is_pattern(pattern):
                found = sorted(p for p in self.handles if fnmatch.fnmatchcase(p, pattern.strip("/")))
                if not found:
                    raise ValueError(f"no actor matches {pattern!r} (see `%actor ls`)")
                paths.extend(found)
            else:
                paths.append(check_path(pattern))
        return list(dict.fromkeys(paths))

    async def ensure(self, path: str, opts: dict[str, Any], *, new: bool = False) -> ActorHandle:
        """The actor at ``path``, spawned (with its missing parents) when needed."""
        path = check_path(path)
        handle = self.handles.get(path)
        if handle is not None and not new and handle.alive and not self.busy(path):
            return handle  # the usual case, without a checkpoint
        parent = parent_path(path)
        if parent is not None:
            await self.ensure(parent, {})
        async with self._lock(path):
            handle = self.handles.get(path)
            if handle is not None and (new or not handle.alive):
                await self._stop(handle)
                handle = None
            if handle is None:
                handle = await self._spawn(path, opts)
            return handle

    async def _spawn(self, path: str, opts: dict[str, Any]) -> ActorHandle:
        handle = ActorHandle(path, opts)
        if opts.get("host"):  # its cells' output must reach this kernel's socket from there
            server = await self._output_server()
            host = opts["host"] if isinstance(opts["host"], na.Launcher) else na.SSHLauncher(opts["host"])
            opts = {**opts, "host": host.forwarding(f"uds:{server.path}")}
        spawn_opts = {
            "debug_mode": bool(opts.get("debug")),
            "infect_asyncio": bool(opts.get("asyncio")),
            "host": opts.get("host"),
            "path": path,  # its process title
        }
        if handle.parent is None:
            held = Held(handle.name)
            await self.rt.start(held.hold, spawn_opts)
            handle.held, handle.info = held, held.info
        else:
            portal, route = self._route(path)
            handle.info = decode_info(await portal.run(_cell_runtime.spawn_child, path=route, opts=spawn_opts))
        self.handles[path] = handle
        return handle

    def _route(self, path: str) -> tuple[na.Portal, list[str]]:
        """The portal of the top-level actor on ``path`` and the rest of the path."""
        top, *rest = path.split("/")
        held = self.handles[top].held
        if held is None or held.portal is None:
            raise LookupError(f"actor {top!r} is not running")
        return held.portal, rest

    async def kill(self, path: str, why: str = "was stopped by you (`%actor kill`)") -> bool:
        """Stop the actor at ``path`` and its subtree; wait until they are gone."""
        path = check_path(path)
        handle = self.handles.get(path)
        if handle is None:
            return False
        async with self._lock(path):
            await self._stop(handle, why)
        return True

    async def _stop(self, handle: ActorHandle, why: str = "was restarted") -> None:
        from . import _debugger

        doomed = [self.handles[p] for p in self.handles if p.startswith(handle.path + "/")]
        fe = _debugger.front_end()
        if fe is not None:  # a parked session would keep its actor from being stopped
            fe.drop_parked({h.uid for h in (handle, *doomed) if h.uid}, f"actor {handle.path!r} was stopped")
        for h in (handle, *doomed):
            h.stopped_by = why
            self.handles.pop(h.path, None)
            if h.line is not None:
                h.line.close()
        if handle.held is not None:
            handle.held.stop()
            await handle.held.done.wait()
            _remove_line_dir(handle)  # an actor that was killed could not remove it
            return
        parent = self.handles.get(handle.parent or "")
        if parent is not None and parent.alive:
            portal, route = self._route(handle.path)
            try:
                await portal.run(_cell_runtime.stop_child, path=route)
                return
            except (na.RemoteActorError, na.TransportClosed):
                pass
        _kill_pid(handle.pid)

    def table(self) -> list[dict[str, Any]]:
        """One row per actor: path, pid, parent pid, state, uptime."""
        now = time.time()
        return [
            {
                "path": path,
                "pid": h.pid,
                "ppid": h.info.ppid if h.info else None,
                "state": h.state,
                "uptime": now - h.started_at,
                "host": getattr(h.opts.get("host"), "host", h.opts.get("host")),
            }
            for path, h in sorted(self.handles.items())
        ]

    # -- running a cell -------------------------------------------------------------
    async def _output_server(self) -> OutputServer:
        if self._server is None:
            server = OutputServer()
            await self.rt.start(server.serve)
            self._server = server
        return self._server

    async def run_cell(
        self, handle: ActorHandle, cell: CellCode, writer: CellWriter, stdin: StdinRoute | None
    ) -> Ending:
        """Run ``cell`` in the actor; show its output through ``writer`` as it comes.

        One call to the actor, answered with the outcome; output (if any) comes on the
        cell's output connection. An interrupt of the notebook cell cancels the remote
        cell, then (if it does not end within INTERRUPT_GRACE) sends SIGINT to the
        actor's process.
        """
        handle.cells += 1
        try:
            return await self._run_cell(handle, cell, writer, stdin)
        finally:
            handle.cells -= 1

    async def _run_cell(
        self, handle: ActorHandle, cell: CellCode, writer: CellWriter, stdin: StdinRoute | None
    ) -> Ending:
        output = (await self._output_server()).expect(writer, stdin)
        done: CellDone | None = None
        failure: BaseException | None = None
        notebook_cell = current_cell()
        give_up = trio.CancelScope()
        # an interrupt's escalation runs in the service nursery, started only on an
        # interrupt and cancelled with the cell (a nursery per cell would cost every
        # cell a scheduling pass at its exit)
        escalation: trio.CancelScope | None = None
        context = contextvars.copy_context()  # the escalation's messages go to this cell

        def on_interrupt() -> None:
            nonlocal escalation
            if escalation is None:
                escalation = trio.CancelScope()
                try:
                    context.run(self.rt.start_soon, self._escalate, handle, output.address[1], give_up, escalation)
                except RuntimeError:  # the runtime is shutting down: stop waiting for the cell
                    give_up.cancel()

        if notebook_cell is not None:
            notebook_cell.handlers.append(on_interrupt)
        try:
            portal, route = self._route(handle.path)
            with give_up, ext.activity_of(handle.uid, f"cell [{cell.count}]"):
                done = decode_done(
                    await portal.run(
                        _cell_runtime.run_cell,
                        path=route,
                        **msgspec.structs.asdict(request(cell, handle.path, output.address)),
                    )
                )
        except (na.RemoteActorError, na.TransportClosed, trio.BrokenResourceError, LookupError) as exc:
            failure = exc
        finally:
            if notebook_cell is not None:
                notebook_cell.handlers.remove(on_interrupt)
            if escalation is not None:
                escalation.cancel()  # the escalation ends with the cell
        interrupted = escalation is not None
        ending: Ending | None = None
        if failure is not None and not interrupted:
            ending = await self._gone(handle, failure)
        try:
            if done is not None and done.output:  # the actor's output thread ends with End: show all of it first
                with trio.move_on_after(END_TIMEOUT):
                    await output.done.wait()
        finally:
            output.close()
        if ending is not None:
            return ending
        if done is None or interrupted:  # given up on, or interrupted
            return CellInterrupted(pid=handle.pid or 0)
        return done.outcome

    # -- the cell line (see ._line) -----------------------------------------------------
    def want_line(self, handle: ActorHandle) -> None:
        """Ask ``handle``'s actor for its cell line in the background (trio), once: a
        local top-level actor's later cells then go there from the asyncio loop."""
        if handle.line_address is not None or handle.held is None or handle.opts.get("host"):
            return
        handle.line_address = "opening"
        self.rt.start_soon(self._open_line, handle)

    async def _open_line(self, handle: ActorHandle) -> None:
        try:
            portal, _route = self._route(handle.path)
            address = await portal.run(_cell_runtime.open_line)
        except Exception:  # a task of the service nursery: the cells keep the portal
            address = None
        handle.line_address = address or "none"

    async def line_for(self, handle: ActorHandle) -> CellLine | None:
        """``handle``'s cell line, connected on first use (asyncio); None: use the portal."""
        line = handle.on_line
        if line is not None or handle.line is not None or not isinstance(handle.line_address, list):
            return line
        try:
            handle.line = await connect(handle.line_address)
        except OSError:
            handle.line_address = "none"
            return None
        except asyncio.CancelledError:  # the kernel's interrupt, before the cell started
            raise KeyboardInterrupt from None
        return handle.on_line

    async def run_cell_on_line(
        self, line: CellLine, handle: ActorHandle, cell: CellCode, writer: CellWriter, stdin: StdinRoute | None
    ) -> Ending:
        """:meth:`run_cell` on the cell line, from the kernel's asyncio loop (the cell's
        task is the notebook's own: an interrupt cancels the wait, which goes on).

        Call it inside :func:`._guest.running_cell` (interrupts reach that
        :class:`._guest.CellRun`'s handlers: cancel the cell, SIGINT its actor, give up).
        """
        assert self._server is not None  # the actor's first cell took the portal
        rt = self.rt
        output = self._server.expect(writer, stdin)
        notebook_cell = current_cell()
        assert notebook_cell is not None
        give_up = GiveUp(line)
        escalation: trio.CancelScope | None = None

        def on_interrupt() -> None:  # in trio, in a copy of this cell's context (below)
            nonlocal escalation
            if escalation is None:
                escalation = trio.CancelScope()
                try:
                    rt.start_soon(self._escalate, handle, output.address[1], give_up, escalation)
                except RuntimeError:  # the runtime is shutting down: stop waiting for the cell
                    give_up.cancel()

        done: CellDone | None = None
        failure: BaseException | None = None
        notebook_cell.handlers.append(on_interrupt)
        handle.cells += 1
        line.busy = True
        try:
            with ext.activity_of(handle.uid, f"cell [{cell.count}]"):
                line.send(request(cell, handle.path, output.address))
                while True:
                    try:
                        done = decode_done(await line.answer())
                        break
                    except asyncio.CancelledError:  # the kernel's interrupt
                        if line.has_answer():
                            continue
                        try:  # the escalation's messages go to this cell
                            rt.call_in_trio(contextvars.copy_context().run, notebook_cell.interrupt)
                        except RuntimeError:
                            line.close()
                            raise KeyboardInterrupt from None
        except LineClosed as exc:
            failure = exc
        finally:
            line.busy = False
            handle.cells -= 1
            notebook_cell.handlers.remove(on_interrupt)
            if escalation is not None:
                with contextlib.suppress(RuntimeError):
                    rt.call_in_trio(escalation.cancel)  # the escalation ends with the cell
            if done is None:
                handle.line = None  # the next cell connects again (or takes the portal)
        interrupted = escalation is not None
        if failure is not None and not interrupted:
            with contextlib.suppress(RuntimeError):
                rt.call_in_trio(output.close)
            return await rt.run_cell_task(self._gone_from_line, handle, failure)
        if done is not None and done.output and not output.done.is_set():
            # the actor's output thread ends with End: show all of it first
            loop = asyncio.get_running_loop()
            shown = loop.create_future()

            def end() -> None:
                if not shown.done():
                    shown.set_result(None)

            output.on_done.append(end)
            timer = loop.call_later(END_TIMEOUT, end)
            try:
                await shown
            except asyncio.CancelledError:  # an interrupt while the rest of the output comes
                with contextlib.suppress(RuntimeError):
                    rt.call_in_trio(output.close)
                raise KeyboardInterrupt from None
            finally:
                timer.cancel()
        if output.done.is_set() or (done is not None and not done.output):
            output.close()  # its scope is not (or no longer) entered: no trio needed
        else:
            with contextlib.suppress(RuntimeError):
                rt.call_in_trio(output.close)
        if done is None or interrupted:  # given up on, or interrupted
            return CellInterrupted(pid=handle.pid or 0)
        return done.outcome

    async def _gone_from_line(self, handle: ActorHandle, exc: BaseException) -> Gone:
        try:
            return await self._gone(handle, exc)
        except LineClosed:
            return Gone(f"the cell line to actor {handle.path!r} broke while running this cell ({exc})")

    async def _gone(self, handle: ActorHandle, exc: BaseException) -> Gone:
        """Why ``handle``'s actor is not there to finish the cell, in one line."""
        if handle.held is not None:
            with trio.move_on_after(EXIT_WAIT):
                await handle.held.done.wait()
        who = f"actor {handle.path!r}"
        if handle.stopped_by is not None:
            return Gone(f"{who} {handle.stopped_by} while running this cell")
        held = handle.held
        if held is not None and held.state == "crashed":
            return Gone(f"{who} {describe_exit(held.exitcode)} while running this cell")
        if held is not None and held.state == "exited":
            return Gone(f"{who} was cancelled while running this cell")
        if isinstance(exc, LookupError) or not handle.alive:
            return Gone(f"{who} died while running this cell")
        raise exc

    async def _escalate(self, handle: ActorHandle, cell_id: str, give_up: Any, scope: trio.CancelScope) -> None:
        """An interrupt: cancel the cell; SIGINT its actor if the cell has not ended
        within INTERRUPT_GRACE (it does not reach trio checkpoints); give up on it after
        SIGINT_GRACE more. Ends when ``scope`` is cancelled (the cell has ended)."""
        with scope:
            try:
                await self._escalation(handle, cell_id, give_up)
            except Exception as exc:  # a task of the service nursery: never end the runtime
                print(
                    f"[notebook_actors] interrupting the cell in actor {handle.path!r} failed: {exc!r}", file=sys.stderr
                )

    async def _escalation(self, handle: ActorHandle, cell_id: str, give_up: Any) -> None:
        deadline = trio.current_time() + INTERRUPT_GRACE
        with trio.move_on_at(deadline):  # a blocked actor answers only once its cell ends
            try:
                portal, route = self._route(handle.path)
                await portal.run(_cell_runtime.interrupt_cell, cell=cell_id, path=route)
            except (na.RemoteActorError, na.TransportClosed, trio.BrokenResourceError, LookupError):
                pass  # the actor is gone: the cell's call says so
        await trio.sleep_until(deadline)
        pid = handle.pid
        _signal(pid, signal.SIGINT)
        await trio.sleep(SIGINT_GRACE)
        print(
            f"[notebook_actors] actor {handle.path!r} (pid {pid}) did not stop its cell after a cancel and "
            f"SIGINT; it is left running. Stop it with `%actor kill {handle.path}`.",
            file=sys.stderr,
        )
        give_up.cancel()

    async def push(self, path: str, values: dict[str, Any]) -> list[str]:
        handle = await self.ensure(path, {})
        portal, route = self._route(handle.path)
        return await portal.run(_cell_runtime.push, values=values, path=route)

    async def pull(self, path: str, names: list[str]) -> dict[str, Any]:
        path = check_path(path)
        if path not in self.handles:
            raise KeyError(f"no actor {path!r} in this notebook (see `%actor ls`)")
        portal, route = self._route(path)
        return await portal.run(_cell_runtime.pull, names=names, path=route)


def _remove_line_dir(handle: ActorHandle) -> None:
    """Remove the directory of a gone actor's cell-line socket (only one of ours: a
    ``na-cells-*`` directory right in the private runtime directory)."""
    address = handle.line_address
    if not isinstance(address, list):
        return
    where = os.path.dirname(os.path.abspath(address[0]))
    ours = os.path.basename(where).startswith(_cell_runtime.LINE_DIR_PREFIX)
    if ours and os.path.dirname(where) == os.path.abspath(ext.runtime_dir()):
        shutil.rmtree(where, ignore_errors=True)


def _signal(pid: int | None, sig: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _kill_pid(pid: int | None) -> None:
    """Last resort for an actor whose parent is gone: SIGKILL it (and its subtree)."""
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
