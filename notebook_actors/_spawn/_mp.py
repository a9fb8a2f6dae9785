"""The multiprocessing backends (``mp_spawn``, ``mp_forkserver``): the same child main
(``_child.mp_main``) started by a multiprocessing context."""

from __future__ import annotations

import multiprocessing
from typing import Any

import trio

from .._process import ChildProcess
from ..msg import SpawnSpec, encoder


class MPChild(ChildProcess):
    def __init__(self, proc: Any) -> None:
        super().__init__(proc.pid)
        self._proc = proc

    @property
    def returncode(self) -> int | None:
        code: int | None = self._proc.exitcode
        return code

    async def wait(self) -> int:
        if self._proc.exitcode is None:
            await trio.lowlevel.wait_readable(self._proc.sentinel)
            await trio.to_thread.run_sync(self._proc.join)
        code: int = self._proc.exitcode
        return code


async def start_process(boot: SpawnSpec) -> ChildProcess:
    from .._child import mp_main

    kind = "spawn" if boot.config.start_method == "mp_spawn" else "forkserver"
    context: Any = multiprocessing.get_context(kind)
    proc = context.Process(target=mp_main, args=(encoder.encode(boot),), name=f"actor:{boot.config.name}")
    await trio.to_thread.run_sync(proc.start)
    return MPChild(proc)
