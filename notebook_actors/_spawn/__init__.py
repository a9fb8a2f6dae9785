"""Starting and reaping actor processes.

Backends (``start_method``), each a module chosen by name (``BACKENDS``):

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

import importlib
import os
import signal
from typing import Any

import trio

from .._process import START_METHODS as START_METHODS  # the backends' names, re-exported
from .._process import ChildProcess, check_start_method
from ..msg import SpawnSpec

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
        from .. import _forkserver

        chosen = os.environ.get(START_METHOD_VAR) or ("forkserver" if _forkserver.supported() else "trio")
        _default_method = check_start_method(chosen)
    return _default_method


async def warm_up(start_method: str | None = None, *, nested: bool = False) -> None:
    """Start what makes a backend's first spawn fast, now (the fork server's template);
    a no-op for backends that have nothing to warm.

    The template is started without waiting for it: spawns sent meanwhile queue.
    ``nested``: the actors this process forks are born with a template of their own
    (their first spawn is warm too), unless ``$NOTEBOOK_ACTORS_FORKSERVER_NESTED``
    says otherwise.
    """
    if (start_method or default_start_method()) == "forkserver":
        from .. import _forkserver

        if nested:
            _forkserver.want_born_templates()
        await _forkserver.ensure_started()


def running_as_asyncio_guest() -> bool:
    from .._asyncio_guest import is_guest_mode

    return is_guest_mode()


#: backend name -> the module whose ``start_process(boot)`` starts an actor with it,
#: imported on first use (the fork server's lives with its template)
BACKENDS = {
    "forkserver": "notebook_actors._forkserver",
    "trio": "notebook_actors._spawn._subprocess",
    "mp_spawn": "notebook_actors._spawn._mp",
    "mp_forkserver": "notebook_actors._spawn._mp",
}


async def start_process(boot: SpawnSpec, launcher: Any = None) -> ChildProcess:
    """Start a child actor process for ``boot`` with the backend its config names; it
    connects back to its parent.

    ``launcher`` (see ``_launch``) starts it on another machine instead.
    """
    if launcher is not None:
        proc: ChildProcess = await launcher.start(boot)
        return proc
    backend = importlib.import_module(BACKENDS[check_start_method(boot.config.start_method or "trio")])
    started: ChildProcess = await backend.start_process(boot)
    return started


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
