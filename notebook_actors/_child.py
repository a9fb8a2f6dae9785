"""The entry point of every child actor process: ``python -m notebook_actors._child``.

It reads its boot spec from stdin (so the tree's secret never shows on a command
line), arranges to die with its parent, connects back and serves until cancelled.
"""

from __future__ import annotations

import os
import signal
import sys


def _die_with_parent() -> None:
    """SIGKILL ourselves when our parent process dies (Linux; no-op elsewhere).

    The trap: ``PR_SET_PDEATHSIG`` fires when the parent *thread* that forked us
    exits, not the parent process, and trio starts processes from worker threads
    that exit after 10 s idle, which killed every actor 10 s after its spawn. So
    watch the parent process itself through a pidfd; PDEATHSIG is only the fallback
    where pidfds are missing (Linux < 5.3).
    """
    if not sys.platform.startswith("linux"):
        return
    import signal

    parent = os.getppid()
    try:
        pidfd = os.pidfd_open(parent)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        import threading

        threading.Thread(target=_kill_self_when_readable, args=(pidfd,), name="parent-watch", daemon=True).start()
    else:
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            return
    if os.getppid() != parent:  # the parent died before the watch took effect
        os._exit(1)


def _kill_self_when_readable(pidfd: int) -> None:
    import select
    import signal

    select.select([pidfd], [], [])  # a pidfd turns readable when its process exits
    os.kill(os.getpid(), signal.SIGKILL)


def run_child(boot) -> None:
    import trio

    from . import _runtime, _state
    from .log import get_console_log

    # a stack-dump request (SIGUSR1) must never kill an actor still starting up: ignored
    # until the runtime's stack thread takes the signal
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    sys.path[:] = boot.sys_path or sys.path
    if boot.routes:
        from . import _transport

        _transport.set_routes(boot.routes)
    if boot.host:  # inherited by the actors it starts there: they run on that host too
        os.environ["NOTEBOOK_ACTORS_HOST"] = boot.host
    if boot.loglevel:
        get_console_log(boot.loglevel)

    async def main() -> None:
        actor = _runtime.Actor(
            boot.name,
            uid=boot.uid,
            secret=boot.secret,
            enable_modules=boot.enable_modules,
            loglevel=boot.loglevel,
            debug_mode=boot.debug_mode,
            registry_addrs=boot.registry_addrs,
            parent_addr=boot.parent_addr,
            parent_main_path=boot.parent_main_path,
            parent_main_module=boot.parent_main_module,
            infect_asyncio=boot.infect_asyncio,
            start_method=boot.start_method,
            bind_addr=boot.bind_addr,
        )
        _state.set_actor(actor)
        await actor.run()

    if boot.infect_asyncio:
        from .to_asyncio import run_as_asyncio_guest

        run_as_asyncio_guest(main)
    else:
        trio.run(main)


def _decode_boot(raw: bytes):
    import msgspec

    from ._spawn import ChildBoot

    return msgspec.msgpack.decode(raw, type=ChildBoot)


def mp_main(raw: bytes) -> None:
    """multiprocessing's target for the ``mp_*`` start methods."""
    os.setsid()
    _die_with_parent()
    run_child(_decode_boot(raw))


def main() -> None:
    _die_with_parent()
    raw = sys.stdin.buffer.read()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # a child never reads the terminal
    os.close(devnull)
    run_child(_decode_boot(raw))


if __name__ == "__main__":
    main()
