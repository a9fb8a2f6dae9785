"""The kernel's end of the actors' output connections, and what it shows in the cell.

One Unix socket (in a private directory) takes every running cell's connection; the
first frame names the cell by a token the kernel made for it. :class:`CellOutput`
reads one cell's frames and shows them in that cell through a :class:`CellWriter`
(or answers its prompts), in the order the actor made them. An actor opens its
cell's connection with the cell's first output: a cell that shows nothing has none.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from notebook_actors.ext import runtime_dir

from ._protocol import (
    HEADER_SIZE,
    Clear,
    Decoders,
    Display,
    End,
    Hello,
    InputReply,
    InputRequest,
    Stream,
    frame,
    frame_length,
)
from ._stdin import StdinRoute

#: Seconds a new connection gets to say which cell it carries.
HELLO_TIMEOUT = 10.0


#: the socket directories a kernel and its actors make: the output server's and each
#: actor's cell line (kernel_ext._cell_runtime), one socket in each
SOCKET_DIR_PREFIXES = ("na-kernel-", "na-cells-")
#: Seconds a socket directory may be without its socket (still starting) before it counts as left behind.
STARTING_GRACE = 60.0


def remove_left_behind_socket_dirs(where: str) -> list[str]:
    """Remove the socket directories that a kernel (or actor) killed with SIGKILL left
    in ``where``: those whose socket nobody listens on any more. Returns their paths.

    A live one accepts the connection, which is closed at once (its server reads an
    end of stream before any hello, as from a peer that changed its mind).
    """
    removed = []
    for name in os.listdir(where):
        path = os.path.join(where, name)
        if not name.startswith(SOCKET_DIR_PREFIXES) or not os.path.isdir(path):
            continue
        socks = [os.path.join(path, entry) for entry in os.listdir(path) if entry.endswith(".sock")]
        if not socks and time.time() - os.path.getmtime(path) < STARTING_GRACE:
            continue  # its owner is still starting
        if any(_listened_on(sock) for sock in socks):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _listened_on(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except OSError:
            return True  # busy, or not ours to judge: keep it
    return True


class OutputServer:
    """Accepts the actors' output connections and shows each in its cell."""

    def __init__(self) -> None:
        where = str(runtime_dir())
        with contextlib.suppress(OSError):  # a tidy-up: never a reason not to start
            remove_left_behind_socket_dirs(where)
        # 0700, in the user's private socket directory: only this user connects
        self._dir = tempfile.mkdtemp(prefix="na-kernel-", dir=where)
        self.path = os.path.join(self._dir, "out.sock")
        self._waiting: dict[str, CellOutput] = {}
        self._secret = secrets.token_hex(16)
        self._count = itertools.count()

    async def serve(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled (``nursery.start`` returns once it listens)."""
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        try:
            await sock.bind(self.path)
            sock.listen(64)
            listener = trio.SocketListener(sock)
            task_status.started()
            async with trio.open_nursery() as nursery:
                while True:
                    stream = await listener.accept()
                    nursery.start_soon(self._route, stream)
        finally:
            sock.close()
            shutil.rmtree(self._dir, ignore_errors=True)

    async def _route(self, stream: trio.SocketStream) -> None:
        decoders = Decoders()
        buffer = bytearray()  # what came after the hello belongs to the cell
        try:
            with trio.fail_after(HELLO_TIMEOUT):
                hello = decoders.from_actor.decode(await _read_frame(stream, buffer))
        except (trio.TooSlowError, trio.BrokenResourceError, EOFError, ValueError, msgspec.DecodeError):
            await stream.aclose()
            return
        output = self._waiting.pop(hello.token, None) if isinstance(hello, Hello) else None
        if output is None:  # not a cell we are waiting for
            await stream.aclose()
            return
        await output.serve(stream, buffer, decoders)

    def expect(self, writer: CellWriter, stdin: StdinRoute | None) -> CellOutput:
        """A cell about to run (call it from the cell's task): its output, if any comes,
        will be shown through ``writer``."""
        token = f"{self._secret}{next(self._count):x}"  # unguessable, without a syscall per cell
        output = self._waiting[token] = CellOutput(self, [self.path, token], writer, stdin)
        return output

    def forget(self, token: str) -> CellOutput | None:
        """Turn away a connection for ``token`` from now on; the output still waiting
        for one, or None (one came: it is being shown, or it was)."""
        return self._waiting.pop(token, None)


async def _read_exactly(stream: trio.SocketStream, n: int, buffer: bytearray) -> bytes:
    while len(buffer) < n:
        chunk = await stream.receive_some(max(n - len(buffer), 65536))
        if not chunk:
            raise EOFError
        buffer += chunk
    data = bytes(buffer[:n])
    del buffer[:n]
    return data


async def _read_frame(stream: trio.SocketStream, buffer: bytearray | None = None) -> bytes:
    buffer = bytearray() if buffer is None else buffer
    length = frame_length(await _read_exactly(stream, HEADER_SIZE, buffer))
    return await _read_exactly(stream, length, buffer)


class CellOutput:
    """One cell's output connection, read until the actor says :class:`End`.

    Read by the server's task for the connection (a cell that shows nothing costs no
    task), which shows the output in the cell's own context: ipykernel finds the
    output's cell through the contextvars of the task that made this object.
    """

    def __init__(self, server: OutputServer, address: list[str], writer: CellWriter, stdin: StdinRoute | None) -> None:
        self.address = address
        self._server = server
        self._writer = writer
        self._stdin = stdin
        self._context = contextvars.copy_context()
        self._scope = trio.CancelScope()
        self.done = trio.Event()
        #: Called (in trio, on the loop's thread) once ``done`` is set: for a cell
        #: that waits for its output's end in asyncio.
        self.on_done: list[Callable[[], None]] = []

    async def serve(self, stream: trio.SocketStream, buffer: bytearray, decoders: Decoders) -> None:
        """Show the cell's output until its end (or until its actor is gone, or
        :meth:`close`)."""
        try:
            with self._scope:
                async with stream:
                    await self._show(stream, buffer, decoders.from_actor)
        except (trio.BrokenResourceError, trio.ClosedResourceError, EOFError, ValueError, msgspec.DecodeError):
            pass  # the actor is gone: what it said before is shown
        finally:
            self._context.run(self._writer.flush)
            self.done.set()
            for callback in self.on_done:
                callback()

    def close(self) -> None:
        """The cell is over: stop showing its output; a connection for it that comes
        later is turned away."""
        if self._server.forget(self.address[1]) is None:  # a connection took it: end it
            self._scope.cancel()

    async def _show(self, stream: trio.SocketStream, buffer: bytearray, decoder: Any) -> None:
        run = self._context.run
        while True:
            message = decoder.decode(await _read_frame(stream, buffer))
            if isinstance(message, End):
                return
            if isinstance(message, InputRequest):
                run(self._writer.flush)
                await stream.send_all(frame(await self._answer(message)))
                continue
            run(self._writer.write, message)
            if not buffer:  # a burst is shown at once, not at ipykernel's next flush
                run(self._writer.flush)

    async def _answer(self, request: InputRequest) -> InputReply:
        if self._stdin is None or not self._stdin.allow_stdin:
            return InputReply(error="no-stdin")
        value = await self._stdin.ask(request.prompt, request.password)
        return InputReply(error="eof") if value is None else InputReply(value=value)


class CellWriter:
    """Shows output events in the cell whose task made it (ipykernel's parent header
    is in the contextvars); with a ``label``, each line says which actor wrote it."""

    def __init__(self, label: str | None = None, sink: Callable[[Any], None] | None = None) -> None:
        self.label = label
        self._sink = sink
        self._last: str | None = None
        self._line_start: dict[str, bool] = {"stdout": True, "stderr": True}
        #: Whether anything was shown since the last flush (a flush waits for
        #: ipykernel's IOPub thread: a cell that showed nothing skips it)
        self._unflushed = False

    def write(self, event: Stream | Display | Clear) -> None:
        if self._sink is not None:  # gathered now, shown later (``--group actor``)
            self._sink(event)
            return
        self.show(event)

    def show(self, event: Stream | Display | Clear) -> None:
        """Show one output event in the current cell."""
        if isinstance(event, Stream):
            if self._last not in (None, event.name):
                self.flush()  # keep stdout/stderr interleaving in order
            getattr(sys, event.name).write(self.labelled(event.name, event.text))
            self._last = event.name
            self._unflushed = True
            return
        self.flush()
        if isinstance(event, Display):
            from IPython.display import publish_display_data

            if self.label is not None and not event.update:
                sys.stdout.write(f"[{self.label}]\n")
                self._unflushed = True
                self.flush()
            publish_display_data(event.data, event.metadata, transient=event.transient or None, update=event.update)
        elif isinstance(event, Clear):
            from IPython.display import clear_output

            clear_output(wait=event.wait)
        self._unflushed = True

    def labelled(self, name: str, text: str) -> str:
        if self.label is None:
            return text
        out = []
        for piece in text.splitlines(keepends=True):
            if self._line_start[name]:
                out.append(f"[{self.label}] ")
            out.append(piece)
            self._line_start[name] = piece.endswith("\n")
        return "".join(out)

    def flush(self) -> None:
        if not self._unflushed:
            return
        self._unflushed = False
        for out in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                out.flush()
        self._last = None
