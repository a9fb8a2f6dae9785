"""The entry point of every child actor process (started through ``_boot``, which
watches the parent first).

It reads its boot spec from stdin (so the tree's secret never shows on a command
line), arranges to die with its parent, connects back and serves until cancelled.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .msg import SpawnSpec


def _die_with_parent() -> None:
    """Arrange to die, with everything we started, when our parent dies (``_boot``)."""
    from ._boot import die_with_parent

    die_with_parent()


def run_child(boot: SpawnSpec) -> None:
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
    config = boot.config
    if config.loglevel:
        get_console_log(config.loglevel)

    async def main() -> None:
        actor = _runtime.Actor(config, secret=boot.secret)
        _state.set_actor(actor)
        await actor.run()

    try:
        if config.infect_asyncio:
            from ._asyncio_guest import run_as_asyncio_guest

            run_as_asyncio_guest(main)
        else:
            trio.run(main)
    finally:
        # plain subprocesses of actor code end with the actor (see _boot for the opt-out)
        from ._boot import reap_own_group

        reap_own_group()


def _decode_boot(raw: bytes) -> SpawnSpec:
    import msgspec

    from .msg import SpawnSpec

    return msgspec.msgpack.decode(raw, type=SpawnSpec)


def mp_main(raw: bytes) -> None:
    """multiprocessing's target for the ``mp_*`` start methods."""
    os.setsid()
    _die_with_parent()
    run_child(_decode_boot(raw))


def main(watching: bool = False) -> None:
    """Boot from the spec on stdin; ``watching``: ``_boot`` already watches the parent."""
    if not watching:
        _die_with_parent()
    raw = sys.stdin.buffer.read()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # a child never reads the terminal
    os.close(devnull)
    run_child(_decode_boot(raw))


if __name__ == "__main__":
    main()
