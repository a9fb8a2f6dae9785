"""Prompts on the kernel's stdin channel, awaited from trio.

ipykernel's own ``input()`` waits synchronously, which would freeze the trio guest
run (and every actor's output with it), so a prompt for an actor cell is sent and
awaited here on the stdin socket without blocking the loop.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
from typing import Any

import trio

#: Seconds between re-checks of the stdin socket while waiting for an answer: zmq's
#: fd signals edges, so a missed one must not hang the prompt.
RECHECK = 0.5


def _kernel() -> Any:
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None)


class RequestRouting:
    """The routing of the execute request a cell runs for: its parent message and
    ident, and whether it allows prompts.

    ipykernel keeps them in the cell task's contextvars: ``routing_context`` is a copy
    made in that task, read the first time they are needed (few cells prompt or show
    a debugger session, every cell makes a route and a view).
    """

    routing_context: contextvars.Context

    @functools.cached_property
    def _request(self) -> tuple[dict[str, Any], Any, bool]:
        kernel = _kernel()
        if kernel is None:
            return {}, None, False
        run = self.routing_context.run
        parent = run(kernel.get_parent, "shell") or {}
        ident = run(kernel._get_shell_context_var, kernel._shell_parent_ident)
        return parent, ident, bool(parent.get("content", {}).get("allow_stdin"))

    @property
    def parent(self) -> dict[str, Any]:
        return self._request[0]

    @property
    def ident(self) -> Any:
        return self._request[1]

    @property
    def allow_stdin(self) -> bool:
        return self._request[2]


class StdinRoute(RequestRouting):
    """Where the running cell's prompts go (made in the cell's own task)."""

    def __init__(self) -> None:
        self.routing_context = contextvars.copy_context()

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
