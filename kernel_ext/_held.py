"""One notebook actor held in a nursery of its own, so that its crash stays its own.

The kernel holds its top-level notebook actors this way, and each notebook actor holds
its own children (``%%actor parent/child``) the same way.
"""

from __future__ import annotations

from typing import Any

import trio

import notebook_actors as na

from ._protocol import ActorInfo, decode_info


class Held:
    """A child actor, its portal and what became of it.

    ``state`` is ``starting``, ``running``, ``stopping``, ``exited`` or ``crashed``;
    ``exitcode`` is the process' exit code when it crashed (negative: the signal).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.portal: na.Portal | None = None
        self.info: ActorInfo | None = None
        self.state = "starting"
        self.exitcode: int | None = None
        self.stopped_by_us = False
        self._stop = trio.Event()
        self.done = trio.Event()

    def stop(self) -> None:
        """Ask for the actor (and its subtree) to stop; ``done`` is set when it has."""
        self.stopped_by_us = True
        self._stop.set()

    async def hold(self, opts: dict[str, Any], task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Spawn the actor and keep it until :meth:`stop` (or until it dies)."""
        from . import _cell_runtime

        started = False
        try:
            async with na.open_nursery() as an:
                self.portal = await an.start_actor(
                    self.name,
                    enable_modules=[_cell_runtime.__name__],
                    debug_mode=opts.get("debug_mode") or None,
                    infect_asyncio=bool(opts.get("infect_asyncio")),
                    host=opts.get("host"),
                )
                self.info = decode_info(await self.portal.run(_cell_runtime.whoami, path=opts.get("path") or self.name))
                self.state, started = "running", True
                task_status.started(self)
                await self._stop.wait()
                self.state = "stopping"
                await an.cancel()
            self.state = "exited"
        except Exception as exc:
            if not started:
                raise
            self.state, self.exitcode = "crashed", _exitcode(exc)
        finally:
            if self.state not in ("exited", "crashed"):
                self.state = "exited"
            self.done.set()


def _exitcode(exc: BaseException) -> int | None:
    """The exit code carried by an :class:`~notebook_actors.ActorCrashed` in ``exc``."""
    if isinstance(exc, na.ActorCrashed):
        return exc.exitcode
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            code = _exitcode(sub)
            if code is not None:
                return code
    return None


def describe_exit(exitcode: int | None) -> str:
    """``killed (SIGKILL)`` / ``exited with code 3`` / ``died``."""
    if exitcode is None:
        return "died"
    if exitcode < 0:
        import signal

        try:
            return f"was killed ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"was killed (signal {-exitcode})"
    return f"exited with code {exitcode}"
