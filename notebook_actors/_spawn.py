"""Starting and reaping actor processes.

Backends (``start_method``):

- ``"forkserver"`` (default on Linux): the spawning actor's warm template process
  (runtime already imported) forks each actor as a child of the spawning actor: ~10x
  faster spawn (see ``_forkserver``).
- ``"trio"`` (the subprocess backend; the default elsewhere): ``python .../_boot.py``
  (``_child``) through trio's process API; the boot spec (with the tree's secret) goes
  through the child's stdin, never its command line.
- ``"mp_spawn"`` / ``"mp_forkserver"``: the same child main through multiprocessing.

Every child starts in its own session (a terminal's or kernel's SIGINT reaches it only
through the runtime), dies with its parent process (``_child._die_with_parent``), and
exits by itself when its parent's channel closes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import trio

from ._process import BOOT_SCRIPT, ChildProcess, check_start_method
from ._process import START_METHODS as START_METHODS  # the backends' names, re-exported
from .msg import SpawnSpec, encoder

#: Names the default backend of a whole program and its actors (e.g. ``trio`` for the
#: subprocess backend); ``try_set_start_method`` overrides it.
START_METHOD_VAR = "NOTEBOOK_ACTORS_START_METHOD"
_default_method: str | None = None


def try_set_start_method(name: str) -> str:
    """Select the spawn backend for every nursery that does not name one."""
    global _default_method
    _default_method = check_start_method(name)
    return _default_method


def default_start_method() -> str:
    """The backend of nurseries that name none: ``try_set_start_method``'s, else
    ``$NOTEBOOK_ACTORS_START_METHOD``'s, else the fork server where it works."""
    global _default_method
    if _default_method is None:
        from . import _forkserver

        chosen = os.environ.get(START_METHOD_VAR) or ("forkserver" if _forkserver.supported() else "trio")
        _default_method = check_start_method(chosen)
    return _default_method


async def warm_up(start_method: str | None = None) -> None:
    """Start what makes a backend's first spawn fast, now (the fork server's template);
    a no-op for backends that have nothing to warm.

    The template is started without waiting for it: spawns sent meanwhile queue.
    """
    if (start_method or default_start_method()) == "forkserver":
        from . import _forkserver

        await _forkserver.ensure_started()


def running_as_asyncio_guest() -> bool:
    from ._asyncio_guest import is_guest_mode

    return is_guest_mode()


class TrioChild(ChildProcess):
    def __init__(self, proc: trio.Process) -> None:
        super().__init__(proc.pid)
        self._proc = proc

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()


class MPChild(ChildProcess):
    def __init__(self, proc: Any) -> None:
        super().__init__(proc.pid)
        self._proc = proc

    @property
    def returncode(self) -> int | None:
        return self._proc.exitcode

    async def wait(self) -> int:
        if self._proc.exitcode is None:
            await trio.lowlevel.wait_readable(self._proc.sentinel)
            await trio.to_thread.run_sync(self._proc.join)
        return self._proc.exitcode


async def start_process(boot: SpawnSpec, launcher: Any = None) -> ChildProcess:
    """Start a child actor process for ``boot``; it connects back to its parent.

    ``launcher`` (see ``_launch``) starts it on another machine instead.
    """
    if launcher is not None:
        return await launcher.start(boot)
    method = boot.config.start_method
    if method == "forkserver":  # a warm template forks the actor (see _forkserver)
        from . import _forkserver

        return await _forkserver.start_process(boot)
    if method == "trio":
        proc = await trio.lowlevel.open_process(
            # -S: site (and its .pth files) loads after the parent watch is up (_boot)
            [sys.executable, "-S", BOOT_SCRIPT, str(os.getpid())],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        assert proc.stdin is not None
        try:
            await proc.stdin.send_all(encoder.encode(boot))
        except BaseException:
            # cancelled (or the child died) mid-boot: nobody else will ever reap this
            # process; left alone it stays a zombie and its pidfd leaks
            with trio.CancelScope(shield=True):
                proc.kill()
                await proc.wait()
            raise
        finally:
            await proc.stdin.aclose()
        return TrioChild(proc)
    import multiprocessing

    ctx = multiprocessing.get_context("spawn") if method == "mp_spawn" else multiprocessing.get_context("forkserver")
    from ._child import mp_main

    mp_proc = ctx.Process(target=mp_main, args=(encoder.encode(boot),), name=f"actor:{boot.config.name}")
    await trio.to_thread.run_sync(mp_proc.start)
    return MPChild(mp_proc)


def kill_group(proc: ChildProcess) -> None:
    """SIGKILL what is left of an exited actor's process group: the plain subprocesses
    of an actor that could not end them itself (SIGKILLed, crashed). An actor leads its
    own group; one that started its own session (``start_new_session``) opted out."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def reap(proc: ChildProcess, grace: float, term_grace: float | None = None) -> int:
    """Wait up to ``grace`` seconds for the process to exit, then SIGTERM, then (after
    ``term_grace``, default ``min(grace, 1)``) SIGKILL.

    Always returns the exit code; shielded from cancellation (a process is never left
    unreaped).
    """
    with trio.CancelScope(shield=True):
        with trio.move_on_after(grace):
            return await proc.wait()
        proc.terminate()
        with trio.move_on_after(min(grace, 1.0) if term_grace is None else term_grace):
            return await proc.wait()
        proc.kill()
        return await proc.wait()
    raise AssertionError("unreachable: a shielded scope without a deadline swallows nothing")
