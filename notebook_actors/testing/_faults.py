"""Fault injection for reliability tests: misbehaving actor functions, process and
file-descriptor probes.

The functions below run *inside* actors, so this module must be enabled there:
``start_actor(name, enable_modules=[FAULTS])``. None of them fakes the runtime: a
crash is a real crash (``os._exit``, a segfault, SIGKILL) of a real process.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import trio

import notebook_actors as na

#: the module name to pass in ``enable_modules``
FAULTS = __name__

__all__ = [
    "FAULTS",
    "exit_now",
    "getpid",
    "hang_in_c",
    "open_fds",
    "raise_system_exit",
    "segfault",
]


# -- probes -------------------------------------------------------------------------------
def getpid() -> int:
    return os.getpid()


def open_fds(pid: int | None = None) -> dict[int, str]:
    """The open file descriptors of ``pid`` (default: this process) and what they point at."""
    base = f"/proc/{pid or os.getpid()}/fd"
    fds = {}
    for name in os.listdir(base):
        try:
            fds[int(name)] = os.readlink(f"{base}/{name}")
        except OSError:  # the listing's own fd, closed meanwhile
            pass
    return fds


def fd_targets() -> list[str]:
    """What this actor's open fds point at, sorted (called over RPC; socket and pipe
    inode numbers stripped, so the list compares across reconnects)."""
    return sorted(t.split(":[")[0] for t in open_fds().values())


async def warm_spawner() -> None:
    """Start this actor's warm spawn process (the fork server's template) now, so that
    an fd count taken afterwards does not count the fds it holds for its lifetime."""
    from .. import _spawn

    await _spawn.warm_up()


# -- crashes ------------------------------------------------------------------------------
def exit_now(code: int = 3) -> None:
    """Leave at once: no cleanup, no reply."""
    os._exit(code)


def segfault() -> None:
    """Read address 0: SIGSEGV."""
    # the fault handler would print a C traceback to our (captured) stderr: skip it
    import faulthandler

    faulthandler.disable()
    ctypes.string_at(0)


def raise_system_exit(code: int = 5) -> None:
    raise SystemExit(code)


def hang_in_c(ready_path: str, ignore_sigterm: bool = False) -> None:
    """Block in a C call (libc ``pause``) that no cancel request can interrupt.

    Writes ``ready_path`` first, so the test knows the actor is inside the call.
    """
    if ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with open(ready_path, "w") as f:
        f.write(str(os.getpid()))
    libc = ctypes.CDLL(None)
    while True:
        libc.pause()


# -- trees and streams --------------------------------------------------------------------
async def count_to(n: int, pause: float = 0.0) -> AsyncIterator[int]:
    for i in range(n):
        yield i
        if pause:
            await trio.sleep(pause)


async def slow_echo(value: Any, pause: float = 0.001) -> Any:
    await trio.sleep(pause)
    return value


@na.context
async def leaf_activity(ctx: na.Context, phase: str, leaves: int = 1) -> str:
    """A middle actor's side of a fault test: spawn ``leaves`` leaves and keep them busy
    in ``phase`` ("spawn", "rpc", "stream" or "teardown") until the caller cancels.

    ``started`` carries the leaf pids (none for "spawn": the caller finds them as this
    process' children).
    """
    async with na.open_nursery() as n:
        if phase == "spawn":
            await ctx.started([])
            for i in range(1000):
                await n.start_actor(f"leaf{i}", enable_modules=[FAULTS])
            return "spawned"
        portals = [await n.start_actor(f"leaf{i}", enable_modules=[FAULTS]) for i in range(leaves)]
        pids = [await p.run(getpid) for p in portals]
        await ctx.started(pids)
        if phase == "rpc":
            while True:
                await portals[0].run(slow_echo, value=1)
        elif phase == "stream":
            async with ctx.open_stream() as up:
                async with portals[0].open_stream_from(count_to, n=10**9, pause=0.001) as down:
                    async for v in down:
                        await up.send(v)
        elif phase == "teardown":
            await n.cancel()
            return "torn down"
        raise ValueError(f"unknown phase {phase!r}")


def raise_marked(marker: str) -> None:
    """Fail with a ValueError carrying ``marker``, so the test can find it again."""
    raise ValueError(f"injected error {marker}")


async def relay(peer: str, n: int, pause: float = 0.001) -> int:
    """Find actor ``peer`` by name and sum the ``n`` values it streams (``count_to``).

    ``find_actor``, not ``wait_for_actor``: a peer killed before it is found would be
    waited for forever.
    """
    async with na.find_actor(peer) as portal:
        if portal is None:
            raise LookupError(f"actor {peer!r} is not registered (any more)")
        async with portal.open_stream_from(count_to, n=n, pause=pause) as stream:
            total = 0
            async for v in stream:
                total += v
    return total


@na.context
async def branch(ctx: na.Context, names: list[str]) -> None:
    """Spawn a daemon child per name; ``started`` carries ``{name: pid}``; then serve
    until cancelled (a child's crash fails this context: one-cancels-all)."""
    async with na.open_nursery() as n:
        pids = {}
        for name in names:
            portal = await n.start_actor(name, enable_modules=[FAULTS])
            pids[name] = await portal.run(getpid)
        await ctx.started(pids)
        await trio.sleep_forever()


def task_tree() -> str:
    """Every trio task of this run with where it waits: what a hang guard prints."""
    lines: list[str] = []

    def frames(task: Any) -> str:
        out = []
        for frame, lineno in task.iter_await_frames():
            out.append(f"{frame.f_code.co_name}:{lineno}")
        return " <- ".join(reversed(out[-6:]))

    def walk(task: Any, depth: int) -> None:
        lines.append(f"{'  ' * depth}{task.name}: {frames(task)}")
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child, depth + 1)

    walk(trio.lowlevel.current_root_task(), 0)
    return "\n".join(lines)
