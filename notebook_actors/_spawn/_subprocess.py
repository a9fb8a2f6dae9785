"""The subprocess backend (``start_method="trio"``): ``python -S .../_boot.py`` through
trio's process API. The boot record (with the tree's secret) goes down the child's
stdin, never its command line."""

from __future__ import annotations

import os
import subprocess
import sys

import trio

from .._process import BOOT_SCRIPT, ChildProcess
from ..msg import SpawnSpec, encoder


class TrioChild(ChildProcess):
    def __init__(self, proc: trio.Process) -> None:
        super().__init__(proc.pid)
        self._proc = proc

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    async def wait(self) -> int:
        return await self._proc.wait()


async def start_process(boot: SpawnSpec) -> ChildProcess:
    proc = await trio.lowlevel.open_process(
        # -S: site (and its .pth files) loads after the parent watch is up (_boot)
        [sys.executable, "-S", BOOT_SCRIPT, str(os.getpid())],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdin is not None
    try:
        await proc.stdin.send_all(encoder.encode(boot))
    except trio.BrokenResourceError:
        # it died before it read its boot record (killed right away): its supervisor
        # reaps it and reports that death, naming it, as for any child that died early
        pass
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
