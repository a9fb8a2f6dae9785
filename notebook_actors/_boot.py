"""A child actor's first instructions: watch the parent, then boot.

Started as a script (``python -S /path/to/_boot.py <parent pid>``), not as
``-m notebook_actors._child``: ``-m`` imports the package (trio, msgspec, ...: most of
a child's start-up) before any of our code runs, and a child that is still importing
when its parent dies would outlive it by that long. As a script without ``site``
(``-S``: its ``.pth`` files cost twice the bare interpreter), only ``os``, ``sys`` and
``threading`` load before the watch is up; ``site`` runs right after.

Dying with the parent means dying with everything we started: an actor is the
leader of its own process group (its own session), so the watch kills the whole
group, and plain subprocesses of actor code (``subprocess.Popen``) go with it. A
process that starts its own session or group (``start_new_session=True``,
``setsid``, ``os.setpgrp``) is deliberately detached and left alone.
"""

from __future__ import annotations

import os
import signal
import sys


def die_with_parent(parent: int | None = None) -> None:
    """SIGKILL our process group (or just us) when our parent process dies (Linux).

    Args:
        parent: the pid of the process that started us, when it told us: a parent
            that died before we got here has been replaced by a reaper, and
            ``getppid()`` alone could not tell.

    The trap: ``PR_SET_PDEATHSIG`` fires when the parent *thread* that forked us
    exits, not the parent process, and trio starts processes from worker threads
    that exit after 10 s idle, which killed every actor 10 s after its spawn. So
    watch the parent process itself through a pidfd; PDEATHSIG is only the fallback
    where pidfds are missing (Linux < 5.3).
    """
    if not sys.platform.startswith("linux"):
        return
    if parent is None:
        parent = os.getppid()
    elif os.getppid() != parent:  # it died before we ran a single line
        kill_own_group()
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        import threading

        threading.Thread(target=_kill_group_when_readable, args=(pidfd,), name="parent-watch", daemon=True).start()
    else:
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # the parent died before the watch took effect
        kill_own_group()


def kill_own_group() -> None:
    """SIGKILL our process group if we lead one (an actor does), else only us."""
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_group_when_readable(pidfd: int) -> None:
    import select

    select.select([pidfd], [], [])  # a pidfd turns readable when its process exits
    kill_own_group()


def _pgrp_of(stat: bytes) -> tuple[bytes, int]:
    """(state, process group) from the text of a ``/proc/PID/stat``."""
    fields = stat.rsplit(b")", 1)[1].split()  # after the name: state, ppid, pgrp
    return fields[0], int(fields[2])


def _in_group(pids: list[str] | list[int], me: int) -> list[int]:
    """Those of ``pids`` that are live members of process group ``me`` (a zombie is
    already gone)."""
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state, pgrp = _pgrp_of(f.read())
        except OSError:
            continue
        if pgrp == me and state != b"Z":
            found.append(int(pid))
    return found


def _children() -> list[str] | None:
    """Our live children, or None if the kernel does not list them
    (``/proc/PID/task/TID/children``)."""
    if not os.path.exists(f"/proc/self/task/{os.getpid()}/children"):
        return None
    children: list[str] = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/children") as f:
                children += f.read().split()
        except OSError:  # a thread that just ended
            continue
    return children


def group_members() -> list[int]:
    """The other live processes of our process group (empty unless we lead one).

    Finding them means reading every process's ``/proc/PID/stat``: a thousand actors
    ending at once would each read a thousand files. So the search runs only when one
    of our own children is in the group. A member whose parent has already died (a
    shell's background job) is then not searched for; the parent of the actor kills
    what is left of the group once the actor has exited (``_spawn.kill_group``).
    """
    me = os.getpid()
    if os.getpgrp() != me:
        return []
    children = _children()
    if children is not None and not _in_group(children, me):
        return []
    return _in_group([entry for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != me], me)


def reap_own_group(grace: float = 0.5) -> None:
    """End what this actor started: SIGTERM the rest of our process group, then
    SIGKILL whatever is still there after ``grace`` seconds (at an actor's exit)."""
    import time

    members = group_members()
    for pid in members:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while (members := _in_group(members, os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.02)
    for pid in members:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


if __name__ == "__main__":
    die_with_parent(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    # run as a script, sys.path[0] is this package's directory: make it the directory
    # that holds the package, as ``-m`` from there would (the boot spec sets the rest)
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if sys.flags.no_site:  # started with -S so that the watch came first: load site now
        import site

        site.main()
    # This file runs as the child's program here, not as a module of the package: the
    # child's main is found by name, like ``python -m`` would (an import from the
    # package would make this low module import the layer above it).
    import importlib

    importlib.import_module("notebook_actors._child").main(watching=True)
