"""The kernel's end of an actor's cell line, on the kernel's asyncio loop.

A ``%%actor`` cell for a running, local, top-level actor goes on that actor's cell
line (:func:`~._cell_runtime.open_line`): the request is written and its answer read
by the kernel's asyncio loop itself, so the cell is not handed to the trio guest run
and back (in guest mode trio waits for I/O in a thread: each hand-off is two thread
wake-ups). Everything else (a new actor, several actors, ``--bg``, ``--timeout``, a
relayed ``a/b``, debug mode, a remote host) keeps going through the actor's portal.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

from ._protocol import HEADER_SIZE, LineHello, RunCell, frame, frame_length


class LineClosed(ConnectionError):
    """The cell line ended (the actor is gone, or the line was given up on)."""


class CellLine(asyncio.Protocol):
    """One connection to an actor's cell line: one cell at a time, answers in order."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        #: a cell is on the line now (its answer not read yet)
        self.busy = False
        #: cells sent on this connection
        self.sent = 0
        self.closed: BaseException | None = None
        self._buffer = bytearray()
        self._answers: collections.deque[bytes] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None

    # -- asyncio's side ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while len(buffer) >= HEADER_SIZE:
            try:
                end = HEADER_SIZE + frame_length(bytes(buffer[:HEADER_SIZE]))
            except ValueError as exc:
                self.close(exc)
                return
            if len(buffer) < end:
                break
            self._answers.append(bytes(buffer[HEADER_SIZE:end]))
            del buffer[:end]
        if self._answers:
            self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.closed is None:
            self.closed = exc or EOFError("the actor closed its cell line")
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- the kernel's side -------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return self.closed is None and not self.busy and self.transport is not None

    def send(self, request: RunCell) -> None:
        assert self.transport is not None
        self.transport.write(frame(request))
        self.sent += 1

    def has_answer(self) -> bool:
        return bool(self._answers)

    async def answer(self) -> bytes:
        """The next answer. Cancelling the wait loses nothing: call it again."""
        while not self._answers:
            if self.closed is not None:
                raise LineClosed(str(self.closed) or type(self.closed).__name__)
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._answers.popleft()

    def close(self, why: BaseException | None = None) -> None:
        """End the line (sync): a waiting :meth:`answer` raises :class:`LineClosed`."""
        if self.closed is None:
            self.closed = why or LineClosed("the kernel gave up on the cell line")
        if self.transport is not None:
            self.transport.close()
        self._wake()


async def connect(address: list[str]) -> CellLine:
    """Open a connection to the cell line at ``[socket path, token]``.

    Raises:
        OSError: the actor does not listen there (any more).
    """
    loop = asyncio.get_running_loop()
    _transport, line = await loop.create_unix_connection(CellLine, address[0])
    assert line.transport is not None
    line.transport.write(frame(LineHello(token=address[1])))
    return line


class GiveUp:
    """Stands for the cell's trio cancel scope in an interrupt's escalation: when the
    actor has ignored the cancel and SIGINT, the kernel stops waiting on the line."""

    def __init__(self, line: CellLine) -> None:
        self.line = line
        self.cancel_called = False

    def cancel(self) -> None:
        self.cancel_called = True
        self.line.close()


def request(cell: Any, label: str, output: list[str]) -> RunCell:
    """The request to run ``cell`` (a :class:`~._actors.CellCode`): sent on the line,
    or as the portal call's arguments."""
    return RunCell(
        code=cell.code,
        label=label,
        count=cell.count,
        output=output,
        offset=cell.offset,
        header=cell.header,
        filename=cell.filename,
    )
