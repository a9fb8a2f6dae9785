"""The kernel's side of ``%%actor`` cells: the actors a notebook spawned, by path.

``a`` is a child of the kernel's root actor; ``a/b`` is a child of ``a`` (spawned by
``a``'s process, in a nursery of its own); and so on. Each actor is held in its own
nursery, so one actor's crash (or a ``kill -9``) ends only that actor and its subtree,
never the kernel's runtime or its siblings.

Everything here runs in trio (the kernel's guest run).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import psutil
import trio

import notebook_actors as na
from notebook_actors._portal import Portal

from . import _cell_runtime
from ._guest import KernelRuntime, current_cell

#: Seconds an interrupted cell gets to react to its cancellation before the kernel
#: sends SIGINT to the actor's process (a CPU-bound loop never reaches a checkpoint).
INTERRUPT_GRACE = 1.0
#: Seconds after that SIGINT before the kernel gives up waiting for the cell.
SIGINT_GRACE = 5.0


class CellError(Exception):
    """Raised in the kernel when an ``%%actor`` cell fails in its actor.

    IPython shows the remote traceback (``_render_traceback_``), which points at the
    cell's own lines. ``.ename``/``.evalue`` are the remote exception's type name and
    message; the class name shown is the remote type's.
    """

    def __init__(self, path: str, outcome: dict[str, Any]) -> None:
        self.path = path
        self.ename = outcome.get("ename", "Error")
        self.evalue = outcome.get("evalue", "")
        self.remote_traceback = list(outcome.get("traceback", []))
        self.pid = outcome.get("pid")
        super().__init__(f"{self.ename} in actor {path!r}: {self.evalue}")

    def _render_traceback_(self) -> list[str]:
        head = f"{self.ename} in actor {self.path!r} (pid {self.pid}); the actor is still alive:"
        lines = "".join(self.remote_traceback).rstrip("\n").splitlines()
        return [head, *lines]


class CellInterrupted(KeyboardInterrupt):
    """Raised in the kernel when an ``%%actor`` cell was interrupted (shown as KeyboardInterrupt)."""

    def _render_traceback_(self) -> list[str]:
        return [f"KeyboardInterrupt: {self}"]


class CellTimeout(TimeoutError):
    """Raised in the kernel when an ``%%actor --timeout S`` cell ran too long."""

    def _render_traceback_(self) -> list[str]:
        return [f"TimeoutError: {self}"]


CellInterrupted.__name__ = CellInterrupted.__qualname__ = "KeyboardInterrupt"
CellTimeout.__name__ = CellTimeout.__qualname__ = "TimeoutError"


def cell_error(path: str, outcome: dict[str, Any]) -> CellError:
    """A CellError whose class name is the remote exception's (e.g. ``ZeroDivisionError``)."""
    name = str(outcome.get("ename") or "CellError")
    cls = type(name if name.isidentifier() else "CellError", (CellError,), {"__module__": "notebook_actors.actor"})
    return cls(path, outcome)


class CellResult:
    """The value of an ``%%actor`` cell's last expression, as the actor rendered it."""

    def __init__(self, path: str, data: dict[str, Any], metadata: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self.metadata = metadata

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.data, self.metadata

    def __repr__(self) -> str:
        return str(self.data.get("text/plain", f"<value from actor {self.path!r}>"))


class ActorHandle:
    """The kernel's record of one notebook actor."""

    def __init__(self, path: str, opts: dict[str, Any]) -> None:
        self.path = path
        self.name = path.rsplit("/", 1)[-1]
        self.parent = parent_path(path)
        self.opts = opts
        self.portal: Any = None
        self.info: dict[str, Any] = {}
        self.held: _cell_runtime.Held | None = None  # top-level actors only
        self.started_at = time.time()

    @property
    def pid(self) -> int | None:
        return self.info.get("pid")

    @property
    def alive(self) -> bool:
        if self.held is not None and self.held.state != "running":
            return False
        if self.portal is not None and self.portal.channel.closed:
            return False
        pid = self.pid
        try:
            return pid is not None and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    @property
    def state(self) -> str:
        if self.held is not None and self.held.state != "running":
            return self.held.state + (f" ({self.held.error})" if self.held.error else "")
        return "running" if self.alive else "exited"


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


class NotebookActors:
    """All actors this kernel's notebook spawned, by path."""

    def __init__(self, rt: KernelRuntime) -> None:
        self.rt = rt
        self.handles: dict[str, ActorHandle] = {}
        self._locks: dict[str, trio.Lock] = {}

    def _lock(self, path: str) -> trio.Lock:
        return self._locks.setdefault(path, trio.Lock())

    async def ensure(self, path: str, opts: dict[str, Any], *, new: bool = False) -> ActorHandle:
        """The actor at ``path``, spawned (with its missing parents) when needed."""
        path = check_path(path)
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
        spawn_opts = {"debug_mode": bool(opts.get("debug")), "infect_asyncio": bool(opts.get("asyncio"))}
        if handle.parent is None:
            held = _cell_runtime.Held(handle.name)
            await self.rt.start(held.hold, spawn_opts)
            handle.held, handle.portal, handle.info = held, held.portal, held.info
        else:
            parent = self.handles[handle.parent]
            handle.info = await parent.portal.run(_cell_runtime.spawn_child, name=handle.name, opts=spawn_opts)
            actor = na.current_actor()
            handle.portal = Portal(await actor.connect_to(handle.info["addr"]), actor)
        self.handles[path] = handle
        return handle

    async def kill(self, path: str) -> bool:
        """Stop the actor at ``path`` and its subtree; wait until they are gone."""
        path = check_path(path)
        handle = self.handles.get(path)
        if handle is None:
            return False
        async with self._lock(path):
            await self._stop(handle)
        return True

    async def _stop(self, handle: ActorHandle) -> None:
        from . import _debugger

        doomed = [p for p in self.handles if p.startswith(handle.path + "/")]
        uids = {tuple(h.info["uid"]) for h in (handle, *(self.handles[p] for p in doomed)) if h.info.get("uid")}
        fe = _debugger.front_end()
        if fe is not None:  # a parked session would keep its actor from being stopped
            fe.drop_parked(uids, f"actor {handle.path!r} was stopped")
        for path in doomed:
            self.handles.pop(path, None)
        self.handles.pop(handle.path, None)
        if handle.held is not None:
            handle.held.stop()
            await handle.held.done.wait()
            return
        parent = self.handles.get(handle.parent or "")
        if parent is not None and parent.alive:
            try:
                await parent.portal.run(_cell_runtime.stop_child, name=handle.name)
                return
            except (na.RemoteActorError, na.TransportClosed):
                pass
        _kill_pid(handle.pid)

    def table(self) -> list[dict[str, Any]]:
        """One row per actor: path, pid, parent pid, state, uptime."""
        rows = []
        now = time.time()
        for path in sorted(self.handles):
            h = self.handles[path]
            rows.append(
                {
                    "path": path,
                    "pid": h.pid,
                    "ppid": h.info.get("ppid"),
                    "state": h.state,
                    "uptime": now - h.started_at,
                }
            )
        return rows

    # -- running a cell -------------------------------------------------------------
    async def run_cell(self, handle: ActorHandle, code: str, emit: Callable[[list[Any]], None]) -> dict[str, Any]:
        """Run ``code`` in the actor; pass its output events to ``emit`` as they come.

        Returns the actor's outcome dict (``status`` ok/error/interrupted). An
        interrupt of the cell cancels the remote cell, then (if it does not end
        within INTERRUPT_GRACE) sends SIGINT to the actor's process.
        """
        interrupted = trio.Event()
        cell = current_cell()
        if cell is not None:
            cell.handlers.append(interrupted.set)
        outcome: dict[str, Any] | None = None
        try:
            async with handle.portal.open_context(_cell_runtime.run_cell, code=code, label=handle.path) as (ctx, pid):
                async with trio.open_nursery() as n:
                    n.start_soon(self._escalate, interrupted, ctx, pid, handle.path, n.cancel_scope)
                    async with ctx.open_stream() as stream:
                        async for event in stream:
                            emit(event)
                    outcome = await ctx.result()
                    n.cancel_scope.cancel()
                if outcome is None and interrupted.is_set():
                    raise _GaveUp  # leave without waiting for a cell that does not stop
        except _GaveUp:
            pass
        finally:
            if cell is not None:
                cell.handlers.remove(interrupted.set)
        if interrupted.is_set() or outcome is None:
            return {"status": "interrupted"}
        return outcome

    async def _escalate(self, interrupted: trio.Event, ctx: Any, pid: int, path: str, scope: trio.CancelScope) -> None:
        await interrupted.wait()
        await ctx.cancel()
        await trio.sleep(INTERRUPT_GRACE)
        _signal(pid, signal.SIGINT)
        await trio.sleep(SIGINT_GRACE)
        print(
            f"[notebook_actors] actor {path!r} (pid {pid}) did not stop its cell after a cancel and SIGINT; "
            f"it is left running. Stop it with `%actor kill {path}`.",
            file=sys.stderr,
        )
        scope.cancel()

    async def push(self, path: str, values: dict[str, Any]) -> list[str]:
        handle = await self.ensure(path, {})
        return await handle.portal.run(_cell_runtime.push, values=values)

    async def pull(self, path: str, names: list[str]) -> dict[str, Any]:
        handle = self.handles.get(check_path(path))
        if handle is None:
            raise KeyError(f"no actor {path!r} in this notebook (see `%actor ls`)")
        return await handle.portal.run(_cell_runtime.pull, names=names)


class _GaveUp(Exception):
    pass


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
