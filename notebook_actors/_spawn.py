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

from .msg import SpawnSpec, encoder

#: started as a script: it watches the parent before the package is imported (_boot)
_BOOT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")

START_METHODS = ("trio", "forkserver", "mp_spawn", "mp_forkserver")
#: Names the default backend of a whole program and its actors (e.g. ``trio`` for the
#: subprocess backend); ``try_set_start_method`` overrides it.
START_METHOD_VAR = "NOTEBOOK_ACTORS_START_METHOD"
_default_method: str | None = None


def check_start_method(name: str) -> str:
    if name not in START_METHODS:
        raise ValueError(f"unknown start_method {name!r}: choose one of {', '.join(START_METHODS)}")
    return name


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
    from . import to_asyncio

    return to_asyncio.is_guest_mode()


class ChildBoot(SpawnSpec, tag="boot"):
    """What a child needs to start: the spawn spec plus how to reach its parent."""

    uid: str = ""
    parent_addr: str = ""
    secret: bytes = b""
    sys_path: list[str] = []
    infect_asyncio: bool = False
    start_method: str = "trio"
    bind_addr: str | None = None
    #: the root ran ``python -m this.module``: load it by name (relative imports work)
    parent_main_module: str | None = None
    #: addresses to dial another way (see ``_transport.set_routes``), for actors on
    #: another machine
    routes: dict[str, str] = {}
    #: where the actor runs, if not on its parent's machine (a launcher's host)
    host: str | None = None
    #: the actor refuses pickled values (start_actor(typed_only=True))
    typed_only: bool = False


class ChildProcess:
    """A started actor process, whatever the backend."""

    #: the process leads its own session and process group (every local backend):
    #: what is left of the group when it exits is killed with it (kill_group)
    leads_group = True

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: signals this parent sent: a death by any other signal is a crash
        self.signals_sent: set[int] = set()

    @property
    def returncode(self) -> int | None:
        raise NotImplementedError

    async def wait(self) -> int:
        raise NotImplementedError

    def signal(self, sig: int) -> None:
        if self.returncode is None:
            self.signals_sent.add(sig)
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)


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


async def start_process(boot: ChildBoot, launcher: Any = None) -> ChildProcess:
    """Start a child actor process for ``boot``; it connects back to its parent.

    ``launcher`` (see ``_launch``) starts it on another machine instead.
    """
    if launcher is not None:
        return await launcher.start(boot)
    method = boot.start_method
    if method == "forkserver":  # a warm template forks the actor (see _forkserver)
        from . import _forkserver

        return await _forkserver.start_process(boot)
    if method == "trio":
        proc = await trio.lowlevel.open_process(
            # -S: site (and its .pth files) loads after the parent watch is up (_boot)
            [sys.executable, "-S", _BOOT_SCRIPT, str(os.getpid())],
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

    mp_proc = ctx.Process(target=mp_main, args=(encoder.encode(boot),), name=f"actor:{boot.name}")
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
