"""Prompts on the kernel's stdin channel, awaited from trio.

ipykernel's own ``input()`` waits synchronously, which would freeze the trio guest
run (and every actor's output with it), so a prompt for an actor cell is sent and
awaited here on the stdin socket without blocking the loop.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import trio

#: Seconds between re-checks of the stdin socket while waiting for an answer: zmq's
#: fd signals edges, so a missed one must not hang the prompt.
RECHECK = 0.5


def _kernel() -> Any:
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None)


class StdinRoute:
    """Where the running cell's prompts go: its execute request's parent and ident.

    Made in the cell's own task (ipykernel keeps both in contextvars).
    """

    def __init__(self) -> None:
        kernel = _kernel()
        self.parent: dict[str, Any] = {}
        self.ident: Any = None
        if kernel is not None:
            self.parent = kernel.get_parent("shell") or {}
            self.ident = kernel._get_shell_context_var(kernel._shell_parent_ident)
        self.allowed = kernel is not None and bool(self.parent.get("content", {}).get("allow_stdin"))

    async def ask(self, prompt: str, password: bool = False) -> str | None:
        """Send ``input_request`` and wait for the answer; None on Ctrl-D (end of input)."""
        import zmq

        kernel = _kernel()
        for out in (sys.stdout, sys.stderr):  # what the cell printed comes before the prompt
            with contextlib.suppress(Exception):
                out.flush()
        sock = kernel.stdin_socket
        while True:  # purge stale replies (an earlier, abandoned prompt)
            try:
                sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
        content = {"prompt": prompt, "password": password}
        kernel.session.send(sock, "input_request", content, self.parent, ident=self.ident)
        fd = sock.getsockopt(zmq.FD)
        while True:
            while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                _idents, reply = kernel.session.recv(sock, mode=zmq.NOBLOCK)
                if reply is None:
                    continue
                value = str(reply.get("content", {}).get("value", ""))
                return None if value == "\x04" else value
            with trio.move_on_after(RECHECK):
                await trio.lowlevel.wait_readable(fd)
