"""A notebook actor's output, shipped to the kernel by a thread that needs no trio.

A cell that blocks (``time.sleep``, a numpy loop) blocks the actor's trio loop too,
so output pumped by trio would wait for the cell to end. Instead, like ipykernel's
IOPub thread, every cell gets an :class:`OutputShipper`: a thread with a plain
blocking Unix socket to the kernel. ``sys.stdout``/``sys.stderr`` writes, displays
and clears go, in the order they were made, into one queue; the thread sends them in
small batches (a burst of prints is one message), so output arrives within
:data:`BATCH_SECONDS` while the cell computes. ``input()``/``getpass()`` ask through
the same connection (the kernel turns the request into a stdin ``input_request``).

Output written while no cell runs (a task a cell left behind) is kept, bounded, and
shown labelled at the top of the actor's next cell.
"""

from __future__ import annotations

import builtins
import contextvars
import getpass
import queue
import socket
import threading
from collections import deque
from typing import Any

from notebook_actors.ext import dial_address

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

#: Seconds the thread gathers a burst of output into one message.
BATCH_SECONDS = 0.03
#: How much orphaned output an actor keeps for its next cell (characters).
BACKGROUND_LIMIT = 100_000
#: Seconds a cell's end waits for its last output to be written.
CLOSE_TIMEOUT = 30.0


class StdinNotAvailable(EOFError):
    """Raised by ``input()`` in an actor cell when the notebook's frontend cannot answer
    prompts (e.g. nbclient, or a kernel client started with ``allow_stdin=False``)."""


class _Flush:
    def __init__(self) -> None:
        self.done = threading.Event()


class _Ask:
    def __init__(self, request: InputRequest) -> None:
        self.request = request
        self.reply: queue.SimpleQueue[InputReply] = queue.SimpleQueue()


class OutputShipper:
    """One cell's output connection to the kernel, written by a thread of its own.

    Both start with the cell's first output (or prompt): a cell that shows nothing
    costs no connection, no thread and no end marker, and says so in its result.
    """

    def __init__(self, address: str, token: str) -> None:
        self._address = address
        self._token = token
        self._sock: socket.socket | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closed = False
        self._broken = False
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def started(self) -> bool:
        """Whether the connection is open (the kernel then reads it up to its End)."""
        return self._thread is not None

    def _ensure_started(self) -> bool:
        """Connect and start the thread unless it runs; False when the cell has ended
        without it, or the kernel cannot be reached (the output is dropped)."""
        if self._thread is None:
            with self._start_lock:
                if self.closed or self._broken:
                    return False
                if self._thread is None:
                    if not self._connect():
                        return False
                    thread = threading.Thread(target=self._run, name="notebook_actors-cell-output", daemon=True)
                    thread.start()
                    self._thread = thread
        return True

    def _connect(self) -> bool:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # an actor on another machine reaches the kernel's socket through its launcher's forward
            sock.connect(dial_address(f"uds:{self._address}").removeprefix("uds:"))
            sock.sendall(frame(Hello(token=self._token)))
        except OSError:  # the kernel is gone: the cell's output is dropped, prompts fail
            sock.close()
            self._broken = True
            return False
        self._sock = sock
        return True

    def put(self, event: Stream | Display | Clear) -> None:
        """Queue ``event`` (any thread); it is sent within :data:`BATCH_SECONDS`."""
        self._queue.put(event)
        self._ensure_started()

    def ask(self, request: InputRequest) -> InputReply:
        """Ask the notebook's user (blocks the calling thread until the answer)."""
        ask = _Ask(request)
        self._queue.put(ask)
        if not self._ensure_started():
            return InputReply(error="interrupted")
        return ask.reply.get()

    def close(self, wait: bool = True) -> None:
        """Send what is queued, then :class:`End` (``wait``: until it is written).

        Without ``wait`` the thread finishes on its own: the kernel reads the
        connection up to its End before the notebook's cell ends.
        """
        if self.closed:
            return
        with self._start_lock:  # a put() racing with this either started the thread or is dropped
            self.closed = True
        thread = self._thread
        if thread is None:
            return
        self._queue.put(End())
        if wait:
            thread.join(CLOSE_TIMEOUT)

    # -- the thread -------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._serve()
        finally:
            if self._sock is not None:
                self._sock.close()

    def _serve(self) -> None:
        while True:
            batch = self._gather()
            events = [e for e in batch if isinstance(e, Stream | Display | Clear)]
            self._send(*_coalesce(events))
            control = batch[-1]
            if isinstance(control, End):
                self._send(control)
                return
            if isinstance(control, _Ask):
                control.reply.put(self._ask(control.request))

    def _gather(self) -> list[Any]:
        """The next burst: events until a pause, a question or the end."""
        batch = [self._queue.get()]
        while not isinstance(batch[-1], End | _Ask):
            try:
                batch.append(self._queue.get(timeout=BATCH_SECONDS))
            except queue.Empty:
                break
        return batch

    def _send(self, *messages: Any) -> None:
        if self._broken or not messages or self._sock is None:
            return
        try:
            self._sock.sendall(b"".join(frame(m) for m in messages))
        except OSError:  # the kernel is gone: drop output rather than block the cell
            self._broken = True

    def _ask(self, request: InputRequest) -> InputReply:
        self._send(request)
        if self._broken or self._sock is None:
            return InputReply(error="interrupted")
        try:
            header = _recv_exactly(self._sock, HEADER_SIZE)
            return Decoders().from_kernel.decode(_recv_exactly(self._sock, frame_length(header)))
        except (OSError, ValueError, EOFError):
            self._broken = True
            return InputReply(error="interrupted")


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise EOFError("the kernel closed the cell's output connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _coalesce(events: list[Any]) -> list[Any]:
    """Adjacent text of one stream becomes one message."""
    out: list[Any] = []
    for event in events:
        if out and isinstance(event, Stream) and isinstance(out[-1], Stream) and out[-1].name == event.name:
            out[-1] = Stream(name=event.name, text=out[-1].text + event.text)
        else:
            out.append(event)
    return out


# -- routing: which cell gets a write ------------------------------------------------------
_current: contextvars.ContextVar[OutputShipper | None] = contextvars.ContextVar(
    "notebook_actors_cell_output", default=None
)
#: The shippers of running cells, newest last (threads have no context: they write
#: to the newest cell, as in a kernel).
_running: list[OutputShipper] = []
_background: deque[Any] = deque()
_background_size = 0


def emit(event: Stream | Display | Clear) -> None:
    """Send ``event`` to the cell this code runs for (else keep it for the next cell)."""
    global _background_size
    shipper = _current.get()
    if shipper is None or shipper.closed:
        shipper = _running[-1] if _running else None
    if shipper is not None:
        shipper.put(event)
        return
    _background.append(event)
    _background_size += len(event.text) if isinstance(event, Stream) else 1
    while _background_size > BACKGROUND_LIMIT and len(_background) > 1:
        dropped = _background.popleft()
        _background_size -= len(dropped.text) if isinstance(dropped, Stream) else 1


def attach(shipper: OutputShipper, label: str) -> contextvars.Token[OutputShipper | None]:
    """Route this task's (and, while it is the newest, threads') output to ``shipper``;
    the output left over from earlier comes first, labelled."""
    global _background_size
    if _background:
        shipper.put(Stream(name="stderr", text=f"[background output of actor {label}, after its previous cell]\n"))
        while _background:
            shipper.put(_background.popleft())
        _background_size = 0
        shipper.put(Stream(name="stderr", text="[end of background output]\n"))
    _running.append(shipper)
    return _current.set(shipper)


def detach(shipper: OutputShipper, token: contextvars.Token[OutputShipper | None]) -> None:
    _current.reset(token)
    _running.remove(shipper)


# -- stdio and stdin ---------------------------------------------------------------------------
class CellStream:
    """``sys.stdout``/``sys.stderr`` of a notebook actor."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, name: str, original: Any) -> None:
        self.name = name
        self._original = original

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            emit(Stream(name=self.name, text=text))  # type: ignore[arg-type]
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass  # the output thread sends within BATCH_SECONDS

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._original.fileno()

    @property
    def buffer(self) -> Any:
        return self._original.buffer


def _ask(prompt: str, password: bool) -> str:
    shipper = _current.get() or (_running[-1] if _running else None)
    if shipper is None:
        raise StdinNotAvailable("input() in a notebook actor works only while one of its cells runs")
    reply = shipper.ask(InputRequest(prompt=str(prompt), password=password))
    if reply.error == "no-stdin":
        raise StdinNotAvailable(
            "input() needs a notebook frontend that answers prompts; this one does not (allow_stdin=False). "
            "Run the cell in JupyterLab or Notebook, or %actor push the value instead."
        )
    if reply.error == "interrupted":
        raise KeyboardInterrupt
    if reply.error == "eof":  # Ctrl-D
        raise EOFError
    return reply.value


def cell_input(prompt: Any = "") -> str:
    """``input()`` in a notebook actor: the prompt appears in the notebook."""
    return _ask(str(prompt), password=False)


def cell_getpass(prompt: str = "Password: ", stream: Any = None) -> str:
    """``getpass.getpass()`` in a notebook actor: a password prompt in the notebook."""
    return _ask(prompt, password=True)


def install(stdout: Any, stderr: Any) -> None:
    """Capture this process' stdio and stdin prompts for notebook cells."""
    import sys

    sys.stdout = CellStream("stdout", stdout)
    sys.stderr = CellStream("stderr", stderr)
    builtins.input = cell_input
    getpass.getpass = cell_getpass
