"""What the spawning layer shares with the processes it starts: the process handle
every backend returns, the backends' names, and the
bootstrap script. Below ``_spawn``, ``_forkserver`` and ``_child``, which all use it.
"""

from __future__ import annotations

import os
import signal

#: started as a script: it watches the parent before the package is imported (_boot)
BOOT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_boot.py")

START_METHODS = ("trio", "forkserver", "mp_spawn", "mp_forkserver")


def check_start_method(name: str) -> str:
    if name not in START_METHODS:
        raise ValueError(f"unknown start_method {name!r}: choose one of {', '.join(START_METHODS)}")
    return name


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
