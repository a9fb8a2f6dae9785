"""Channels: framed, authenticated message pipes between two actors.

A channel owns one byte stream (any transport), a writer task that flushes a shared
output buffer (so a backlog leaves in one write), and the table of calls/contexts that
travel over it. Call ids are split by parity (the dialing side uses even ids, the
accepting side odd ones) so both sides can start calls without colliding.

Every connection starts with a handshake before anything else is read: the acceptor
sends a nonce, the dialer answers with an HMAC of it under the tree's secret plus a
nonce of its own, and the acceptor answers that. A peer that fails, stalls or sends
anything else is dropped.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets as _secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import trio

from . import _transport
from ._codec import HEADER, MAX_FRAME, FrameDecoder, append_frame
from ._exceptions import FrameError, HandshakeError, TransportClosed
from .msg import Hello, Ident, Proof, Welcome, handshake_decoder, msg_decoder

if TYPE_CHECKING:
    from ._context import Context

log = logging.getLogger("notebook_actors.channel")

PROTOCOL_VERSION = 1
HANDSHAKE_TIMEOUT = 5.0
HANDSHAKE_MAX_FRAME = 4096
RECV_SIZE = 256 * 1024
#: Output bytes buffered before ``send`` waits for the writer (socket backpressure).
HIGH_WATER = 4 * 1024 * 1024


class Wakeup:
    """Wake one waiting task; cheaper than an Event for a hot loop."""

    __slots__ = ("_task", "_what")

    def __init__(self, what: str = "resource") -> None:
        self._task = None
        self._what = what

    def set(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            trio.lowlevel.reschedule(task)

    async def wait(self) -> None:
        if self._task is not None:
            raise trio.BusyResourceError(f"another task is already waiting on this {self._what}")
        self._task = trio.lowlevel.current_task()

        def abort(_: Any) -> trio.lowlevel.Abort:
            self._task = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


# --- secrets -------------------------------------------------------------------------

def default_secret_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(base) / "notebook_actors" / "secret"


def load_secret(secret: bytes | str | os.PathLike | None = None) -> bytes:
    """The tree's shared secret: given bytes, a key file, or the per-user default
    (created on first use with mode 0600, so only this user's programs can join)."""
    if isinstance(secret, bytes):
        return secret
    path = Path(secret) if secret is not None else default_secret_path()
    if secret is None and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(_secrets.token_hex(32).encode())
    return path.read_bytes().strip()


def _mac(secret: bytes, role: bytes, nonce: bytes) -> bytes:
    return hmac.new(secret, b"notebook_actors/1 " + role + b" " + nonce, hashlib.sha256).digest()


async def _recv_frame(stream: trio.abc.Stream, rest: bytes, peer: str) -> tuple[Any, bytes]:
    """Read exactly one handshake frame; return it and the bytes that followed it."""
    buf = rest
    while True:
        if len(buf) >= HEADER:
            size = int.from_bytes(buf[:HEADER], "big")
            if size > HANDSHAKE_MAX_FRAME:
                raise HandshakeError(f"{peer} sent a {size}-byte handshake frame (limit {HANDSHAKE_MAX_FRAME})")
            if len(buf) >= HEADER + size:
                body, rest = buf[HEADER : HEADER + size], buf[HEADER + size :]
                try:
                    return handshake_decoder.decode(body), rest
                except Exception as exc:
                    raise HandshakeError(f"{peer} sent an invalid handshake: {exc}") from None
        data = await stream.receive_some(HANDSHAKE_MAX_FRAME)
        if not data:
            raise HandshakeError(f"{peer} closed the connection during the handshake")
        buf += data


def _frame(msg: Any) -> bytes:
    out = bytearray()
    append_frame(out, msg)
    return bytes(out)


async def handshake_as_dialer(stream: trio.abc.Stream, secret: bytes, me: Ident, peer: str) -> tuple[Ident, bytes]:
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        hello, rest = await _recv_frame(stream, b"", peer)
        if not isinstance(hello, Hello) or hello.version != PROTOCOL_VERSION:
            raise HandshakeError(f"{peer} does not speak notebook_actors protocol {PROTOCOL_VERSION}")
        my_nonce = os.urandom(32)
        await stream.send_all(_frame(Proof(_mac(secret, b"dial", hello.nonce), my_nonce, me)))
        welcome, rest = await _recv_frame(stream, rest, peer)
        if not isinstance(welcome, Welcome) or not hmac.compare_digest(welcome.mac, _mac(secret, b"accept", my_nonce)):
            raise HandshakeError(f"{peer} failed to prove it knows the tree's secret")
        return welcome.ident, rest


async def handshake_as_acceptor(stream: trio.abc.Stream, secret: bytes, me: Ident, peer: str) -> tuple[Ident, bytes]:
    with trio.fail_after(HANDSHAKE_TIMEOUT):
        nonce = os.urandom(32)
        await stream.send_all(_frame(Hello(PROTOCOL_VERSION, nonce)))
        proof, rest = await _recv_frame(stream, b"", peer)
        if not isinstance(proof, Proof) or not hmac.compare_digest(proof.mac, _mac(secret, b"dial", nonce)):
            raise HandshakeError(f"{peer} failed the handshake (wrong secret or not an actor)")
        await stream.send_all(_frame(Welcome(_mac(secret, b"accept", proof.nonce), me)))
        return proof.ident, rest


# --- the channel ---------------------------------------------------------------------

class Channel:
    """A message pipe to one peer actor (see module docs).

    A channel may exist before its byte stream: a parent creates the channel to a child
    it is spawning and queues messages on it; they leave once the child connects back.
    """

    def __init__(self, *, dialer: bool, uid: tuple[str, str] | None = None, raddr: str | None = None) -> None:
        self.uid = uid
        self.raddr = raddr
        self.peer_pid: int | None = None
        self.ctxs: dict[int, Context] = {}
        self._next_cid = 0 if dialer else 1
        self._stream: trio.abc.Stream | None = None
        self._decoder: FrameDecoder | None = None
        self._out = bytearray()
        self._writer_wakeup = Wakeup("channel writer")
        self._drained = trio.lowlevel.ParkingLot()
        self._attached = trio.Event()
        self._closed = False
        self._closing = False
        self._close_reason: BaseException | None = None
        self._closed_event = trio.Event()
        self.on_close: list[Callable[[Channel], None]] = []
        self.msgs_sent = 0
        self.msgs_received = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._stream else "connecting")
        return f"<Channel to {self.uid} {state}>"

    # lifecycle
    def attach(self, stream: trio.abc.Stream, ident: Ident, rest: bytes) -> None:
        """Bind the handshaked byte stream; queued messages start flowing."""
        self._stream = stream
        self.uid = tuple(ident.uid)  # type: ignore[assignment]
        self.peer_pid = ident.pid
        self.raddr = ident.addr or self.raddr
        self._decoder = FrameDecoder(msg_decoder, max_frame=MAX_FRAME, peer=f"actor {self.uid}")
        self._rest = rest
        self._attached.set()

    def connected(self) -> bool:
        return self._stream is not None and not self._closed

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_attached(self) -> None:
        await self._attached.wait()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    def next_cid(self) -> int:
        cid = self._next_cid
        self._next_cid += 2
        return cid

    # sending
    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise TransportClosed(f"channel to actor {self.uid} is closed") from self._close_reason

    def send_nowait(self, msg: Any) -> None:
        """Queue ``msg`` for the writer. Raises TypeError if it cannot be encoded."""
        self._check_open()
        append_frame(self._out, msg)
        self.msgs_sent += 1
        self._writer_wakeup.set()

    async def send(self, msg: Any) -> None:
        """Queue ``msg``; wait while the output buffer is over its high-water mark."""
        self.send_nowait(msg)
        while len(self._out) > HIGH_WATER and not self._closed:
            await self._drained.park()
        await trio.lowlevel.checkpoint_if_cancelled()

    async def run_writer(self) -> None:
        """Flush the output buffer for as long as the channel lives."""
        await self._attached.wait()
        stream = self._stream
        assert stream is not None
        try:
            while True:
                if not self._out:
                    if self._closing or self._closed:
                        return
                    self._drained.unpark_all()
                    await self._writer_wakeup.wait()
                    continue
                data, self._out = self._out, bytearray()
                await stream.send_all(data)
                self._drained.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self._mark_closed(exc)
        finally:
            self._drained.unpark_all()

    # receiving
    async def receive_batch(self) -> list[Any]:
        """The next messages from the peer (at least one).

        Raises:
            TransportClosed: the peer closed the connection or it broke.
            FrameError: the peer sent bytes that are not a valid frame.
        """
        stream, decoder = self._stream, self._decoder
        assert stream is not None and decoder is not None
        if self._rest:
            rest, self._rest = self._rest, b""
            msgs = decoder.feed(rest)
            if msgs:
                self.msgs_received += len(msgs)
                return msgs
        while True:
            try:
                data = await stream.receive_some(RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise TransportClosed(f"channel to actor {self.uid} broke: {exc}") from exc
            if not data:
                raise TransportClosed(f"actor {self.uid} closed the channel")
            msgs = decoder.feed(data)
            if msgs:
                self.msgs_received += len(msgs)
                return msgs

    # closing
    def _mark_closed(self, reason: BaseException | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        self._writer_wakeup.set()
        self._attached.set()
        self._closed_event.set()
        for cb in self.on_close:
            cb(self)

    async def aclose(self, flush_timeout: float = 0.5) -> None:
        """Flush what is queued (briefly), then close the stream."""
        if self._closed:
            return
        self._closing = True
        self._writer_wakeup.set()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(flush_timeout):
                while self._out and self._stream is not None and not self._closed:
                    await self._drained.park()
            self._mark_closed(None)
            if self._stream is not None:
                with trio.move_on_after(0.1):
                    await self._stream.aclose()


async def connect(addr: str, secret: bytes, me: Ident) -> Channel:
    """Dial ``addr`` and handshake; the returned channel is attached but not yet served.

    Raises:
        OSError: nothing listens at ``addr``.
        HandshakeError: the peer is not an actor of this tree.
    """
    stream = await _transport.connect(addr)
    try:
        ident, rest = await handshake_as_dialer(stream, secret, me, addr)
    except BaseException:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        raise
    chan = Channel(dialer=True, raddr=addr)
    chan.attach(stream, ident, rest)
    return chan


__all__ = ["Channel", "FrameError", "HandshakeError", "TransportClosed", "connect", "load_secret"]
