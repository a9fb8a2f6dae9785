"""Helpers for testing code that spawns actors: find processes, wait them out, and read
back what an actor recorded (``record`` / ``wait_recorded``).

They poll the process table with a bound (never an unbounded wait), so a test that
checks "nothing is left" fails with the list of survivors instead of hanging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from functools import partial, wraps
from typing import Any

import psutil
import trio

from ._record import RECORDER, record, recorded, wait_recorded

__all__ = [
    "RECORDER",
    "actor_children",
    "actor_descendants",
    "alive",
    "descendants",
    "is_fork_server",
    "kill_all",
    "private_registry_addr",
    "record",
    "recorded",
    "run_example",
    "run_script",
    "start_script",
    "trio_test",
    "wait_for_path",
    "wait_recorded",
    "wait_until_gone",
]


def alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie waiting to be reaped."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def descendants(pid: int | None = None) -> list[psutil.Process]:
    """Every live (non-zombie) process below ``pid`` (default: this process).

    Children start their own sessions but keep their parent, so the parent chain is
    what links an actor tree.
    """
    try:
        procs = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in procs if alive(p.pid)]


def is_fork_server(proc: psutil.Process) -> bool:
    """True if ``proc`` is an actor's fork-server template (a child of that actor that
    forks its children, not an actor itself)."""
    from .._forkserver import TEMPLATE_MODULE

    try:
        return TEMPLATE_MODULE in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def actor_children(pid: int | None = None) -> list[psutil.Process]:
    """The live child processes of ``pid`` (default: this process) that are actors:
    its fork-server template left out."""
    try:
        procs = psutil.Process(pid or os.getpid()).children()
    except psutil.NoSuchProcess:
        return []
    return [p for p in procs if alive(p.pid) and not is_fork_server(p)]


def actor_descendants(pid: int | None = None) -> list[psutil.Process]:
    """Like :func:`descendants`, without the fork-server templates."""
    return [p for p in descendants(pid) if not is_fork_server(p)]


def wait_until_gone(pids: Iterable[int], timeout: float = 5.0, poll: float = 0.02) -> list[int]:
    """Poll until none of ``pids`` is alive or ``timeout`` passed; return the survivors.

    A bound, not a delay: it returns as soon as the last process is gone.
    """
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [pid for pid in pending if alive(pid)]
        if not pending or time.monotonic() >= deadline:
            return pending
        time.sleep(poll)


def kill_all(pids: Iterable[int]) -> None:
    """SIGKILL each pid that still runs (clean-up after a failed assertion)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def start_script(path: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``python path *args`` with this interpreter, output captured as text.

    The script gets its own session, so a signal sent to it reaches only what the
    runtime forwards.
    """
    return subprocess.Popen(
        [sys.executable, path, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, **(env or {})},
        # a shell starts background jobs with SIGINT ignored and exec keeps that:
        # give the script a terminal's default so Ctrl-C tests mean something
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_script(
    path: str, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a script to completion (``timeout`` is a hang guard); return its result."""
    proc = start_script(path, *args, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_all([p.pid for p in descendants(proc.pid)] + [proc.pid])
        out, err = proc.communicate()
        raise AssertionError(f"{path} did not finish within {timeout}s:\n{out}\n{err}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_example(
    path: str, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run an example script alone on this host and check it exited 0; return its result.

    The script's root gets a fresh private registry (``$NOTEBOOK_ACTORS_REGISTRY``,
    unless ``env`` names one), so it never joins, or is found by, another program's
    tree on this host. ``timeout`` is a hang guard. A non-zero exit raises
    AssertionError with the script's stderr.
    """
    env = {"NOTEBOOK_ACTORS_REGISTRY": private_registry_addr(), **(env or {})}
    result = run_script(path, *args, timeout=timeout, env=env)
    assert result.returncode == 0, f"{path} exited {result.returncode}:\n{result.stderr}"
    return result


def private_registry_addr() -> str:
    """A fresh Unix-socket registry address, so a test's tree is alone on the host.

    Pass it as ``open_nursery(registry_addrs=[addr])``: without it, concurrent test
    runs (or a user's running programs) would all share this user's registry socket.
    """
    import tempfile
    import uuid

    return f"uds:{tempfile.gettempdir()}/na-reg-{uuid.uuid4().hex[:12]}.sock"


def wait_for_path(path: str, timeout: float = 10.0, poll: float = 0.02) -> bool:
    """Poll until ``path`` exists (e.g. an actor's socket file); False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
    return True


def trio_test(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run an async test function under ``trio.run``, with pytest fixtures still injected.

    A light stand-in for pytest-trio: one ``trio.run`` per test, so a test opens its
    own root actor and nothing carries over to the next.
    """

    @wraps(fn)
    def run_under_trio(*args: Any, **kwargs: Any) -> Any:
        return trio.run(partial(fn, *args, **kwargs))

    return run_under_trio
