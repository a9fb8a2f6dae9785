"""Channels: framed, authenticated message pipes between two actors.

A channel owns one byte stream (any transport), a writer task that flushes a shared
output buffer (so a backlog leaves in one write), and the table of calls/contexts that
travel over it. Call ids are split by parity (the dialing side uses even ids, the
accepting side odd ones) so both sides can start calls without colliding.

Every connection starts with a handshake before anything else is read: the acceptor
sends a nonce, the dialer answers with an HMAC (under the tree's secret) over both
nonces, its identity and the address it meant to reach, and the acceptor checks that
address is its own before answering with an HMAC over the whole transcript and its
identity (so a proof cannot be relayed to another listener: docs/security.md). A peer
that fails, stalls (HANDSHAKE_TIMEOUT) or sends anything else is dropped, having been
able to make us buffer at most HANDSHAKE_MAX_FRAME bytes. TCP connections are
encrypted by their transport (TLS under a key derived from the secret); Unix sockets
rely on their private directory.
"""

from __future__ import annotations

import array
import contextvars
import hashlib
import hmac
import logging
import os
import secrets as _secrets
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from . import _shm, _transport
from ._codec import (
    HEADER,
    INLINE,
    MAX_FRAME,
    SHARED,
    FrameDecoder,
    InvalidFrame,
    append_frame,
    append_inline,
    encode_frame,
    make_data_frame,
)
from ._exceptions import FrameError, HandshakeError, PeerLeft, TransportClosed
from .msg import Error, ErrorInfo, Hello, Ident, Proof, Release, Welcome, encoder, handshake_decoder, msg_decoder

if TYPE_CHECKING:
    from ._call import Call

log = logging.getLogger("notebook_actors.channel")

PROTOCOL_VERSION = 3
NONCE_SIZE = 32
#: Seconds a connecting peer gets to complete the handshake before it is dropped.
HANDSHAKE_TIMEOUT = float(os.environ.get("NOTEBOOK_ACTORS_HANDSHAKE_TIMEOUT", 3.0))
HANDSHAKE_MAX_FRAME = 4096
RECV_SIZE = 256 * 1024
#: Output bytes buffered before ``send`` waits for the writer (socket backpressure).
HIGH_WATER = 4 * 1024 * 1024
#: Shared-memory segments one data frame passes at most (the rest go in line).
MAX_FDS_PER_FRAME = 64
_ANC_SPACE = socket.CMSG_SPACE(253 * 4)  # the kernel's limit of descriptors per message
_IOV_MAX = 512


def _fd_taker(fds: deque[int]) -> Callable[[], int | None]:
    """The decoder's source of received descriptors (a closure over the queue, not a
    method: the decoder must not keep its channel alive in a reference cycle)."""

    def take() -> int | None:
        return fds.popleft() if fds else None

    return take


class _Bulk:
    """Queued output with out-of-band buffers: the bytes before and of a data frame,
    the inline buffers (views of the sender's memory) and the segments' descriptors."""

    __slots__ = ("fds", "head", "inline", "nbytes", "segs", "views")

    def __init__(self, head: bytes, views: list[memoryview], segs: list[_shm.Segment]) -> None:
        self.head, self.views, self.segs = head, views, segs
        self.inline = bool(views)  # reads the sender's memory until written
        self.fds = [seg.fd for seg in segs]
        self.nbytes = len(head) + sum(v.nbytes for v in views)


class Wakeup:
    """Wake one waiting task; cheaper than an Event for a hot loop."""

    __slots__ = ("_task", "_what")

    def __init__(self, what: str = "resource") -> None:
        self._task: trio.lowlevel.Task | None = None
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


def _create_key_file(path: Path) -> None:
    """Write a fresh random key to ``path`` (mode 0600) unless it exists.

    Written to a temporary file first and linked into place, so a program starting
    at the same moment never reads a half-written key.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{_secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_secrets.token_hex(32).encode())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another program created it first: use theirs
    finally:
        tmp.unlink(missing_ok=True)


def _check_key_file(path: Path, *, strict: bool) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        text = (
            f"key file {path} has mode {mode:o}: other users may read it and join your actors; "
            f"fix it with `chmod 600 {path}`"
        )
        if strict:
            raise PermissionError(text)
        log.warning(text)


def load_secret(secret: bytes | str | os.PathLike[str] | None = None) -> bytes:
    """The tree's shared secret: given bytes, a key file, or the per-user default.

    The default key file (``$XDG_CONFIG_HOME/notebook_actors/secret``) is created on
    first use with mode 0600, so every program of this user can join the others and
    no other user can. A ``str`` is a path to a key file, not the secret itself:
    pass ``bytes`` for a literal secret.

    Raises:
        PermissionError: the default key file is readable by other users.
        FileNotFoundError: the given key file does not exist.
        ValueError: the secret is empty.
    """
    if isinstance(secret, (bytes, bytearray)):
        key = bytes(secret)
    else:
        path = Path(secret) if secret is not None else default_secret_path()
        if secret is None and not path.exists():
            _create_key_file(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"key file {path} does not exist: create it (e.g. `head -c 32 /dev/urandom | xxd -p > {path}; "
                f"chmod 600 {path}`) or pass the secret as bytes"
            )
        _check_key_file(path, strict=secret is None)
        key = path.read_bytes().strip()
    if not key:
        raise ValueError("the actor tree's secret is empty: give it at least 16 random bytes")
    return key


def _mac(secret: bytes, role: bytes, *parts: bytes) -> bytes:
    """HMAC over a role label and length-prefixed parts.

    The role (``dial``/``accept``) stops a peer from reflecting one side's answer as
    the other's; the parts are the transcript (see :func:`dial_mac`, :func:`accept_mac`).
    """
    h = hmac.new(secret, f"notebook_actors/{PROTOCOL_VERSION} ".encode() + role, hashlib.sha256)
    for part in parts:
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def dial_mac(secret: bytes, nonce_a: bytes, nonce_d: bytes, ident_d: Ident, target: str) -> bytes:
    """The dialer's proof: both nonces, its identity and the address it meant to reach."""
    return _mac(secret, b"dial", nonce_a, nonce_d, _ident_bytes(ident_d), target.encode())


def accept_mac(
    secret: bytes, nonce_a: bytes, nonce_d: bytes, ident_d: Ident, target: str, ident_a: Ident, own: str
) -> bytes:
    """The acceptor's proof: the whole transcript, its identity and its own address."""
    parts = (nonce_a, nonce_d, _ident_bytes(ident_d), target.encode(), _ident_bytes(ident_a), own.encode())
    return _mac(secret, b"accept", *parts)


def _ident_bytes(ident: Ident) -> bytes:
    return encoder.encode(ident)


def _socket_of(stream: trio.abc.Stream) -> Any:
    """The socket under ``stream`` (through a TLS layer), or None (in-memory)."""
    while not hasattr(stream, "socket") and hasattr(stream, "transport_stream"):
        stream = stream.transport_stream
    return getattr(stream, "socket", None)


def stream_addr(stream: trio.abc.Stream, *, local: bool) -> str:
    """The address at one end of a connected stream, in address form (``uds:``/``tcp:``).

    The dialer binds the address it reached (the peer's end), the acceptor the address
    it was reached at (its own end): for an honest connection both are the same, for a
    relayed one they differ. In-memory streams have no address (``""``).
    """
    sock = _socket_of(stream)
    if sock is None:
        return ""
    try:
        name = sock.getsockname() if local else sock.getpeername()
    except OSError:
        return ""
    if sock.family == socket.AF_UNIX:
        path = name.decode(errors="replace") if isinstance(name, bytes) else name
        return f"uds:{path}"
    host, port = name[:2]
    return f"tcp:[{host}]:{port}" if ":" in host else f"tcp:{host}:{port}"


def describe_peer(stream: trio.abc.Stream) -> str:
    """Who is on the other end of an accepted stream, for log lines: the process and
    user of a Unix socket peer (SO_PEERCRED), or the address of a TCP one."""
    sock = _socket_of(stream)
    if sock is None:
        return "an in-process stream"
    try:
        if sock.family == socket.AF_UNIX and hasattr(socket, "SO_PEERCRED"):
            creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            pid, uid, _gid = struct.unpack("3i", creds)
            return f"pid {pid} (user id {uid})"
        host, port = sock.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return "an unknown peer"


def _is_peer_process(sock: socket.socket | trio.socket.SocketType, pid: int) -> bool:
    """Whether the Unix socket's other end is the peer actor's own process.

    Not so when the socket is forwarded to another machine (``ssh -R``: the other end
    is ssh or sshd, which pass bytes but drop descriptors), so shared memory and
    descriptor passing stay off there and out-of-band data goes inline.
    """
    if not hasattr(socket, "SO_PEERCRED"):
        return False
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return False
    peer_pid: int = struct.unpack("3i", creds)[0]
    return peer_pid == pid


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
            raise PeerLeft(f"{peer} closed the connection during the handshake")
        buf += data


class RelayRefused(HandshakeError):
    """A proof made for another address arrived here: someone relayed a connection."""


async def handshake_as_dialer(
    stream: trio.abc.Stream, secret: bytes, me: Ident, peer: str, *, target: str | None = None
) -> tuple[Ident, bytes]:
    """Prove our knowledge of ``secret`` to the acceptor, and check its proof.

    Args:
        target: the address we meant to reach; default: the stream's far end.

    Raises:
        HandshakeError: the peer is not an actor of this tree, speaks another
            protocol, is not at ``target``, or stalled for HANDSHAKE_TIMEOUT seconds.
    """
    target = stream_addr(stream, local=False) if target is None else target
    with _handshake_deadline(peer):
        hello, rest = await _recv_frame(stream, b"", peer)
        if not isinstance(hello, Hello) or hello.version != PROTOCOL_VERSION:
            raise HandshakeError(f"{peer} does not speak notebook_actors protocol {PROTOCOL_VERSION}")
        my_nonce = os.urandom(NONCE_SIZE)
        mac = dial_mac(secret, hello.nonce, my_nonce, me, target)
        await stream.send_all(encode_frame(Proof(mac, my_nonce, me, target)))
        try:
            welcome, rest = await _recv_frame(stream, rest, peer)
        except PeerLeft:  # hanging up on our proof is how an acceptor refuses it
            forward = (
                " or does it not name this forwarded address (also_known_as=)" if target.startswith("tcp:") else ""
            )
            raise HandshakeError(
                f"{peer} refused our handshake: is it an actor of this tree (the same secret){forward}?"
            ) from None
        if not isinstance(welcome, Welcome) or not hmac.compare_digest(
            welcome.mac, accept_mac(secret, hello.nonce, my_nonce, me, target, welcome.ident, target)
        ):
            raise HandshakeError(f"{peer} failed to prove it knows the tree's secret")
        return welcome.ident, rest


async def handshake_as_acceptor(
    stream: trio.abc.Stream,
    secret: bytes,
    me: Ident,
    peer: str,
    *,
    own: str | None = None,
    also_known_as: Collection[str] = (),
) -> tuple[Ident, bytes]:
    """Challenge a connecting peer; nothing it sends is used before it proves itself.

    Args:
        own: the address this connection reached us at; default: the stream's near end.
        also_known_as: more addresses a dialer may honestly have meant (a forwarded
            port); a proof made for any other address is refused as a relay.

    Raises:
        HandshakeError: the peer sent anything but a valid proof, or stalled for
            HANDSHAKE_TIMEOUT seconds (the message names the peer's process and user
            for a Unix socket, its address for TCP).
        RelayRefused: the proof was made for another address (a relay).
    """
    own = stream_addr(stream, local=True) if own is None else own
    peer = f"{peer} from {describe_peer(stream)}"
    with _handshake_deadline(peer):
        nonce = os.urandom(NONCE_SIZE)
        await stream.send_all(encode_frame(Hello(PROTOCOL_VERSION, nonce)))
        proof, rest = await _recv_frame(stream, b"", peer)
        if (
            not isinstance(proof, Proof)
            or len(proof.nonce) < NONCE_SIZE
            or not hmac.compare_digest(proof.mac, dial_mac(secret, nonce, proof.nonce, proof.ident, proof.target))
        ):
            raise HandshakeError(f"{peer} failed the handshake (wrong secret, or not an actor)")
        if proof.target != own and proof.target not in also_known_as:
            hint = ""
            if proof.target.startswith("tcp:"):
                hint = f"; if {proof.target} is a port forward of yours to here, name it: also_known_as=[...]"
            raise RelayRefused(
                f"{peer} presented a proof made for {proof.target or 'no address'}, not for {own}: "
                f"someone relayed a connection meant for another address (refused; nothing ran){hint}"
            )
        mac = accept_mac(secret, nonce, proof.nonce, proof.ident, proof.target, me, proof.target)
        await stream.send_all(encode_frame(Welcome(mac, me)))
        return proof.ident, rest


@contextmanager
def _handshake_deadline(peer: str) -> Iterator[None]:
    """HANDSHAKE_TIMEOUT for the whole handshake; a stall or a failed TLS handshake is
    a HandshakeError that names the peer (an OSError, like every other way a
    connection fails)."""
    try:
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            yield
    except trio.TooSlowError:
        raise HandshakeError(f"{peer} did not complete the handshake within {HANDSHAKE_TIMEOUT:g} s") from None
    except trio.BrokenResourceError as exc:
        if isinstance(exc.__cause__, ssl.SSLError):
            raise HandshakeError(f"{peer} failed the TLS handshake (wrong secret, or not an actor)") from None
        raise


# --- the channel ---------------------------------------------------------------------


class Channel:
    """A message pipe to one peer actor (see module docs).

    A channel may exist before its byte stream: a parent creates the channel to a child
    it is spawning and queues messages on it; they leave once the child connects back.
    """

    def __init__(self, *, dialer: bool, uid: tuple[str, str] | None = None, peer_addr: str | None = None) -> None:
        self.uid = uid
        #: the address the peer accepts connections at (internal form, ``uds:``/``tcp:``;
        #: :attr:`raddr` is its public form)
        self.peer_addr = peer_addr
        self.peer_pid: int | None = None
        self.peer_parent_addr: str | None = None
        self.calls: dict[int, Call] = {}  # the calls on this channel, by id
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
        self.frames_refused = 0
        self._frame_error: FrameError | None = None
        # Eager writes (see _write_now): the writer is mid-write; one eager write is
        # allowed until the next flush or the next received batch.
        self._writing = False
        self._eager_ok = True
        # out-of-band data (see _queue_data): queued data frames, received descriptors,
        # segments the peer released, the segments we lend it
        self._bulk: deque[_Bulk] = deque()
        self._bulk_bytes = 0
        self._bulk_views = 0  # queued data frames still reading the senders' memory
        self._sock: Any = None  # the socket, for sendmsg/recvmsg (None: a plain stream)
        self._unix = False
        self._fds: deque[int] = deque()
        self._released: list[int] = []
        self._pool: _shm.SegmentPool | None = None
        # the read role (see serve and wait_for): the one task that reads the socket
        # now, whether it waits for it (parked) or not, and what the readers share
        self._raw: socket.socket | None = None  # the plain socket under a SocketStream
        self._server: trio.lowlevel.Task | None = None  # the reader task (serve)
        self._reader: trio.lowlevel.Task | None = None
        self._reader_parked = False
        self._reader_scope: trio.CancelScope | None = None  # the reader task's, while it has the role
        self._role_free = Wakeup("channel's read role")
        self._ready: deque[Any] = deque()  # received, not dispatched yet
        self._dispatch: Callable[[Any], None] | None = None
        self._dispatch_ctx: contextvars.Context | None = None
        self._read_error: BaseException | None = None  # a caller's read failed: the reader raises it

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("connected" if self._stream else "connecting")
        return f"<Channel to {self.uid} {state}>"

    # lifecycle
    def attach(self, stream: trio.abc.Stream, ident: Ident, rest: bytes) -> None:
        """Bind the handshaked byte stream; queued messages start flowing."""
        self._stream = stream
        self.uid = tuple(ident.uid)  # type: ignore[assignment]
        self.peer_pid = ident.pid
        self.peer_parent_addr = ident.parent_addr
        self.peer_addr = ident.addr or self.peer_addr
        sock = stream.socket if type(stream) is trio.SocketStream else None
        self._sock = sock
        raw = getattr(sock, "_sock", None)  # trio's socket wraps the standard library's
        self._raw = raw if isinstance(raw, socket.socket) else None
        self._unix = sock is not None and sock.family == socket.AF_UNIX and _is_peer_process(sock, ident.pid)
        if self._unix and _shm.available():
            self._pool = _shm.SegmentPool()
        self._decoder = FrameDecoder(
            msg_decoder,
            max_frame=MAX_FRAME,
            peer=f"actor {self.uid}",
            skip_invalid=True,
            take_fd=_fd_taker(self._fds) if self._unix else None,
            on_release=self._released.append,
        )
        self._rest = rest
        self._attached.set()

    def connected(self) -> bool:
        return self._stream is not None and not self._closed

    @property
    def raddr(self) -> Any:
        """Where the peer actor accepts connections, as tractor spells it:
        ``(host, port)`` for TCP, ``'uds:/path'`` for a Unix socket; None before the
        peer connected. For a channel we dialed it is the address we reached (as in
        tractor); for one the peer dialed, its listening address (tractor gives the
        peer socket's own ephemeral port there, which nobody can dial back)."""
        return _transport.public_addr(self.peer_addr) if self.peer_addr else None

    @property
    def laddr(self) -> Any:
        """This end of the channel's socket (``(host, port)`` for TCP, ``'uds:/path'``
        for a Unix socket), or None: not connected yet, or the unnamed dialing end of a
        Unix socket."""
        if self._stream is None:
            return None
        addr = stream_addr(self._stream, local=True)
        return _transport.public_addr(addr) if addr and addr != "uds:" else None

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_attached(self) -> None:
        await self._attached.wait()

    async def wait_closed(self) -> None:
        await self._closed_event.wait()

    def next_cid(self) -> int:
        """A new call id of our own (dialer and acceptor use different parities)."""
        cid = self._next_cid
        self._next_cid += 2
        return cid

    def is_own_cid(self, cid: int) -> bool:
        """Whether ``cid`` has the parity of the ids this side hands out (a peer's
        Start must not use one)."""
        return cid % 2 == self._next_cid % 2

    @property
    def close_reason(self) -> BaseException | None:
        """The error that closed the channel, if one did."""
        return self._close_reason

    # sending
    def _check_open(self) -> None:
        if self._closed or self._closing:
            raise TransportClosed(f"channel to actor {self.uid} is closed") from self._close_reason

    def send_nowait(self, msg: Any) -> None:
        """Queue ``msg`` for the writer. Raises TypeError if it cannot be encoded."""
        self.send_prefixed_nowait(b"", msg)

    def _write_now(self) -> bool:
        """Write a lone message from the sending task itself; True if it all left.

        A message with nothing queued before it would otherwise wait for the writer
        task's turn: one task switch per message, the biggest cost of an RPC round trip
        (200 -> 120 µs here, with inline sync calls). Only the first message after a
        flush or a receive goes eagerly, so a burst (a stream) still leaves in one
        batched write. What the socket does not take stays queued for the writer.
        """
        stream = self._stream
        if type(stream) is not trio.SocketStream:
            return False
        fd = stream.socket.fileno()
        if fd < 0:
            return False
        out = self._out
        try:
            sent = os.write(fd, out)
        except OSError:  # would block, or broke: the writer retries and reports it
            return False
        self._eager_ok = False
        del out[:sent]
        return not out

    def send_prefixed_nowait(self, head: bytes, value: Any) -> int:
        """Queue one frame: an already encoded message ``head`` followed by ``value``
        encoded in place (a stream's hot path: no bytes per message besides the frame).

        Returns the bytes of ``value``'s payload (its encoding and its buffers; what a
        stream's byte credit counts).

        Raises:
            TypeError: ``value`` cannot be encoded (nothing is queued).
            ValueError: the frame would exceed the frame limit (nothing is queued).
        """
        self._check_open()
        out = self._out
        lone = not out and self._eager_ok and not self._writing and not self._bulk
        start = len(out)
        bufs = append_frame(out, value, head)
        nbytes = len(out) - start - HEADER - len(head)
        if bufs:
            nbytes += sum(b.nbytes for b in bufs)
            self._queue_data(start, bufs)
        elif lone and self._write_now():
            return nbytes
        self._writer_wakeup.set()
        return nbytes

    def _queue_data(self, start: int, bufs: list[memoryview]) -> None:
        """Make the frame just appended at ``out[start:]`` a data frame: buffers of at
        least SHM_MIN bytes are copied into shared memory when the peer is on this
        host, the others follow the frame from the sender's memory."""
        out = self._out
        if self._sock is None:  # a plain byte stream: everything in line
            append_inline(out, start, bufs)
            return
        entries: list[tuple[int, int, int]] = []
        views: list[memoryview] = []
        segs: list[_shm.Segment] = []
        for buf in bufs:
            seg = self._segment_for(buf) if len(segs) < MAX_FDS_PER_FRAME else None
            if seg is not None:
                segs.append(seg)
                entries.append((buf.nbytes, SHARED, seg.id))
            else:
                entries.append((buf.nbytes, INLINE, 0))
                if buf.nbytes:
                    views.append(buf)
        make_data_frame(out, start, entries)
        item = _Bulk(bytes(out), views, segs)
        self._out = bytearray()
        self._bulk.append(item)
        self._bulk_bytes += item.nbytes
        self._bulk_views += item.inline

    def _segment_for(self, buf: memoryview) -> _shm.Segment | None:
        """A shared-memory segment holding ``buf``'s bytes, or None (in line)."""
        pool = self._pool
        if pool is None or buf.nbytes < _shm.SHM_MIN:
            return None
        try:
            seg = pool.take(buf.nbytes)
        except OSError as exc:  # out of descriptors or memory: the bytes still go, in line
            log.debug("no shared memory for a %d-byte buffer (%s): sent in line", buf.nbytes, exc)
            return None
        seg.fill([buf])
        return seg

    @property
    def pending_bytes(self) -> int:
        """Bytes queued for the peer and not yet written."""
        return len(self._out) + self._bulk_bytes

    async def wait_sent(self) -> None:
        """Wait until the buffers queued so far that are read from their senders'
        memory (large buffers sent in line) have been written, so that memory may
        change again; and while more than HIGH_WATER bytes wait to be written."""
        while (self._bulk_views or self.pending_bytes > HIGH_WATER) and not self._closed:
            await self._drained.park()

    async def send(self, msg: Any) -> None:
        """Queue ``msg``; wait while the output buffer is over its high-water mark."""
        self.send_nowait(msg)
        while self.pending_bytes > HIGH_WATER and not self._closed:
            await self._drained.park()
        await trio.lowlevel.checkpoint_if_cancelled()

    async def run_writer(self) -> None:
        """Flush the output buffer for as long as the channel lives."""
        await self._attached.wait()
        stream = self._stream
        assert stream is not None
        try:
            while True:
                if self._bulk:
                    await self._write_bulk(stream, self._bulk[0])
                    continue
                if not self._out:
                    if self._closing or self._closed:
                        return
                    self._drained.unpark_all()
                    await self._writer_wakeup.wait()
                    continue
                data, self._out = self._out, bytearray()
                self._writing = True
                try:
                    await stream.send_all(data)
                finally:
                    self._writing = False
                self._eager_ok = True
                self._drained.unpark_all()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            self.mark_closed(exc)
        finally:
            self._drained.unpark_all()

    async def _write_bulk(self, stream: trio.abc.Stream, item: _Bulk) -> None:
        """Write one queued data frame: its bytes and buffers with ``sendmsg`` (no
        copy), its segments' descriptors with the first byte."""
        pool = self._pool
        self._writing = True
        try:
            pieces = [memoryview(item.head), *item.views]
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", item.fds))] if item.fds else []
            while pieces:
                sent = await self._sock.sendmsg(pieces[:_IOV_MAX], anc)
                if anc:  # the descriptors left with the first byte
                    anc = []
                    for seg in item.segs:
                        pool.sent(seg)  # type: ignore[union-attr]
                    item.segs = []
                while sent:
                    n = pieces[0].nbytes
                    if sent < n:
                        pieces[0] = pieces[0][sent:]
                        break
                    sent -= n
                    pieces.pop(0)
        finally:
            self._writing = False
            for seg in item.segs:  # never left: the channel broke first
                pool.unsent(seg)  # type: ignore[union-attr]
            item.segs, item.views = [], []
        if self._bulk and self._bulk[0] is item:
            self._bulk.popleft()
            self._bulk_bytes -= item.nbytes
            self._bulk_views -= item.inline
        self._drained.unpark_all()

    # receiving
    async def receive_batch(self) -> list[Any]:
        """The next messages from the peer (at least one).

        A well-formed frame that is not a message we know (a newer peer's message
        type, a field of the wrong type) is answered with an error and skipped: the
        channel keeps serving.

        Raises:
            TransportClosed: the peer closed the connection or it broke.
            FrameError: the peer sent bytes that are not a valid frame (close the channel).
        """
        stream, decoder = self._stream, self._decoder
        assert stream is not None and decoder is not None
        msgs = self._read_before(decoder)
        if msgs:
            return msgs
        while True:
            if self._released:
                self._send_releases()
            try:
                msgs = await self._receive_some(stream, decoder)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise TransportClosed(f"channel to actor {self.uid} broke: {exc}") from exc
            if msgs:
                self._eager_ok = True  # a reply is due: let it leave at once
                return msgs

    # the read role: whoever waits for a reply reads it
    #
    # A served channel's messages are read by one task at a time, the holder of the read
    # role. Usually that is the channel's reader task (serve), which dispatches every
    # message; but a task waiting for a message of its own call (a reply, a stream's next
    # message) while the reader task merely waits for the socket takes the role and reads
    # the socket itself (wait_for). It dispatches whatever it reads exactly as the reader
    # task would (in order, in the reader task's context), and gives the role back as
    # soon as it has a batch: the reply wakes the task that waits for it, not a reader
    # task that then wakes it (one scheduling pass per round trip instead of two). The
    # role goes only from a parked reader task to a caller (cancelling the scope of the
    # reader's wait, which reads nothing once the role is gone) and back; a task that
    # finds another one reading waits on its call as before. A holder is cancelled only
    # in its wait for the socket, before it reads a byte: nothing read is ever dropped.

    async def serve(self, dispatch: Callable[[Any], None]) -> None:
        """Be the channel's reader task: read the peer's messages and ``dispatch`` each,
        in order, until the channel breaks (tasks waiting for their calls' messages may
        read them meanwhile: see :meth:`wait_for`).

        Raises:
            TransportClosed: the peer closed the connection or it broke.
            FrameError: the peer sent bytes that are not a valid frame.
        """
        self._dispatch = dispatch
        self._dispatch_ctx = contextvars.copy_context()
        me = trio.lowlevel.current_task()
        self._server = me
        try:
            if self._raw is None:  # TLS or an in-memory stream: this task alone reads
                while True:
                    for msg in await self.receive_batch():
                        dispatch(msg)
            while True:
                if self._read_error is not None:
                    raise self._read_error
                if self._reader is not None:  # a task reads for its call
                    await self._role_free.wait()
                    continue
                self._reader = me
                self._reader_scope = scope = trio.CancelScope()
                with scope:  # cancelled when a waiting task takes the role
                    while self._reader is me:
                        if self._ready:
                            self._dispatch_ready()
                        msgs, waited = await self._read_raw(me)
                        if self._reader is not me:
                            break  # taken while we waited: the new holder reads what came
                        self._dispatch_batch(msgs)
                        if not waited:  # a busy socket must not starve the other tasks
                            await trio.lowlevel.cancel_shielded_checkpoint()
                if self._reader is me:
                    self._reader = None
        finally:
            self._server = None
            if self._reader is me:
                self._reader = None

    async def wait_for(self, call: Call) -> None:
        """Wait until a message for ``call`` may have come (its inbox grew, or the
        channel closed): read the socket if only the reader task waits for it, else
        wait for whoever reads to deliver. The caller checks and loops."""
        holder = self._reader
        server = self._server
        if server is None or self._raw is None or self._read_error is not None or self._closed:
            await call.arrived.park()
            return
        if holder is not None:
            if holder is not server or not self._reader_parked:
                await call.arrived.park()  # someone reads now: it delivers
                return
            self._reader_parked = False
            self._reader_scope.cancel()  # type: ignore[union-attr]
        me = trio.lowlevel.current_task()
        self._reader = me
        try:
            ctx = self._dispatch_ctx
            assert ctx is not None
            if self._ready:
                ctx.run(self._dispatch_ready)
            msgs, _ = await self._read_raw(me)
            ctx.run(self._dispatch_batch, msgs)
        except (TransportClosed, FrameError) as exc:
            if not self._closed:
                self._read_error = exc  # the reader task raises it: the channel closes as ever
        finally:
            if self._reader is me:
                self._reader = None
                self._reader_parked = False
            self._role_free.set()

    def _dispatch_batch(self, msgs: list[Any]) -> None:
        self._eager_ok = True  # a reply is due: let it leave at once
        if len(msgs) == 1 and not self._ready:
            self._dispatch(msgs[0])  # type: ignore[misc]
            return
        self._ready.extend(msgs)
        self._dispatch_ready()

    def _dispatch_ready(self) -> None:
        """Dispatch the messages read and not yet dispatched (a dispatch that raised,
        e.g. a KeyboardInterrupt in a function run inline, leaves the rest to the next
        holder of the role)."""
        ready, dispatch = self._ready, self._dispatch
        assert dispatch is not None
        while ready:
            dispatch(ready.popleft())

    def _read_before(self, decoder: FrameDecoder) -> list[Any]:
        """What is already here before a read: the frame error a previous read found
        (raised), or the messages complete in the bytes it left over."""
        if self._frame_error is not None:
            raise self._frame_error
        if not self._rest:
            return []
        rest, self._rest = self._rest, b""
        return self._decode(decoder, rest)

    async def _read_raw(self, me: trio.lowlevel.Task) -> tuple[list[Any], bool]:
        """Read as the holder ``me`` of the read role until messages come; return them
        and whether we waited for the socket ([] when the role was taken from us)."""
        decoder = self._decoder
        assert decoder is not None
        msgs = self._read_before(decoder)
        if msgs:
            return msgs, False
        if self._released:
            self._send_releases()
        raw = self._raw
        assert raw is not None
        waited = False
        while True:
            try:
                msgs = self._recv_nowait(raw, decoder)
            except BlockingIOError:
                pass
            except OSError as exc:
                raise TransportClosed(f"channel to actor {self.uid} broke: {exc}") from exc
            else:
                if msgs:
                    return msgs, waited
                continue  # part of a frame: read on
            if raw.fileno() < 0:
                raise TransportClosed(f"channel to actor {self.uid} is closed")
            self._reader_parked = True
            try:
                await trio.lowlevel.wait_readable(raw)
            except (trio.ClosedResourceError, trio.BusyResourceError, OSError) as exc:
                raise TransportClosed(f"channel to actor {self.uid} closed: {exc}") from exc
            finally:
                if self._reader is me:
                    self._reader_parked = False
            waited = True
            if self._reader is not me:
                return [], waited

    def _recv_nowait(self, raw: socket.socket, decoder: FrameDecoder) -> list[Any]:
        """One non-blocking read (``_receive_some`` without trio's wrappers).

        Raises:
            BlockingIOError: nothing to read.
        """
        fill = decoder.fill_target()
        if fill is not None and len(fill) >= RECV_SIZE:
            n = raw.recv_into(fill)
            if not n:
                raise TransportClosed(f"actor {self.uid} closed the channel in the middle of a data frame")
            return decoder.filled(n)
        if self._unix:
            data, anc, _flags, _addr = raw.recvmsg(RECV_SIZE, _ANC_SPACE)
            if anc:
                self._collect_fds(anc)
        else:
            data = raw.recv(RECV_SIZE)
        if not data:
            raise TransportClosed(f"actor {self.uid} closed the channel")
        return self._decode(decoder, data)

    async def _receive_some(self, stream: trio.abc.Stream, decoder: FrameDecoder) -> list[Any]:
        """Read once; return the messages completed. A large inline buffer is read
        straight into its memory; on a Unix socket, descriptors are collected."""
        sock = self._sock
        fill = decoder.fill_target()
        if fill is not None and len(fill) >= RECV_SIZE and sock is not None:
            n = await sock.recv_into(fill)
            if not n:
                raise TransportClosed(f"actor {self.uid} closed the channel in the middle of a data frame")
            return decoder.filled(n)
        if self._unix:
            data, anc, _flags, _addr = await sock.recvmsg(RECV_SIZE, _ANC_SPACE)
            if anc:
                self._collect_fds(anc)
        else:
            data = await stream.receive_some(RECV_SIZE)
        if not data:
            raise TransportClosed(f"actor {self.uid} closed the channel")
        return self._decode(decoder, data)

    def _collect_fds(self, anc: list[tuple[int, int, bytes]]) -> None:
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
                if self._closed:
                    _shm.close_fds(fds)
                else:
                    self._fds.extend(fds)

    def _send_releases(self) -> None:
        """Tell the peer which of its segments we no longer map."""
        segs, self._released[:] = list(self._released), []
        if not self._closed and not self._closing:
            append_frame(self._out, Release(segs))
            self._writer_wakeup.set()

    def _on_release(self, msg: Release) -> bool:
        """The peer released segments we lent it (always False: not for dispatch)."""
        if self._pool is not None:
            for seg in msg.segs:
                self._pool.release(seg)
        return False

    def _decode(self, decoder: FrameDecoder, data: bytes) -> list[Any]:
        try:
            msgs = decoder.feed(data)
        except FrameError as exc:
            # deliver what arrived intact before the bad frame; fail on the next call
            msgs = getattr(exc, "decoded", [])
            if not msgs:
                raise
            self._frame_error = exc
        if len(msgs) == 1:  # the usual batch: skip the scan
            kind = type(msgs[0])
            if kind is not InvalidFrame and kind is not Release:
                return msgs
        if any(type(m) is InvalidFrame or type(m) is Release for m in msgs):
            msgs = [m for m in msgs if self._keep(m)]
        return msgs

    def _keep(self, msg: Any) -> bool:
        if type(msg) is InvalidFrame:
            return self._refuse(msg)
        if type(msg) is Release:
            return self._on_release(msg)
        return True

    def _refuse(self, bad: InvalidFrame) -> bool:
        """Answer a frame we cannot use with an error naming it (always False: drop it)."""
        from ._state import current_actor_or_none

        self.frames_refused += 1
        what = f"message type {bad.tag!r}" if bad.tag else "message"
        text = f"actor {self.uid} sent a {what} this actor cannot use ({bad.error}); it was dropped"
        log.warning(text)
        me = current_actor_or_none()
        me_uid = me.uid if me is not None else None
        cid = bad.cid if bad.tag == "start" else None  # answer a call, else report on the channel
        info = ErrorInfo("MsgTypeError", "notebook_actors._exceptions", text, "", me_uid, [me_uid] if me_uid else [])
        try:
            self.send_nowait(Error(cid, info))
        except TransportClosed:
            pass
        return False

    # closing
    def mark_closed(self, reason: BaseException | None = None) -> None:
        """Mark the channel closed (its reader saw the end, or its process exited)."""
        if self._closed:
            return
        self._closed = True
        self._close_reason = reason
        reader, raw = self._reader, self._raw
        if reader is not None and reader is not self._server and self._reader_parked and raw is not None:
            if raw.fileno() >= 0:  # a task waits for the socket for its call: wake it
                trio.lowlevel.notify_closing(raw)
        self._drop_data()
        self._writer_wakeup.set()
        self._attached.set()
        self._closed_event.set()
        for cb in self.on_close:
            cb(self)

    def _drop_data(self) -> None:
        """Free what out-of-band data holds: unsent frames, received descriptors not
        yet claimed, a partly received data frame, the segments we lend."""
        pool = self._pool
        for i, item in enumerate(self._bulk):
            if i == 0 and self._writing:
                continue  # the writer holds it: it frees its segments when its write ends
            for seg in item.segs:
                if pool is not None:
                    pool.unsent(seg)
            item.segs, item.views = [], []
        self._bulk.clear()
        self._bulk_bytes = self._bulk_views = 0
        _shm.close_fds(self._fds)
        self._fds.clear()
        if self._decoder is not None:
            self._decoder.close()
        if pool is not None:
            pool.close()

    async def aclose(self, flush_timeout: float = 0.5) -> None:
        """Flush what is queued (briefly), then close the stream.

        Closes the stream even when the channel was already marked closed (e.g. the
        peer hung up): marking only stops the traffic, the socket must still go.
        """
        self._closing = True
        self._writer_wakeup.set()
        with trio.CancelScope(shield=True):
            if not self._closed:
                with trio.move_on_after(flush_timeout):
                    while (self._out or self._bulk) and self._stream is not None and not self._closed:
                        await self._drained.park()
            self.mark_closed(None)
            if self._stream is not None:
                with trio.move_on_after(0.1):
                    await self._stream.aclose()


async def connect(addr: str, secret: bytes, me: Ident) -> Channel:
    """Dial ``addr`` and handshake; the returned channel is attached but not yet served.

    Raises:
        OSError: nothing listens at ``addr``.
        HandshakeError: the peer is not an actor of this tree.
    """
    stream = await _transport.connect(addr, secret=secret)
    try:
        # the address we meant: a routed dial (a forwarded socket) still means the
        # peer's own address; a direct one, the far end we reached (a resolved host)
        target = addr if _transport.is_routed(addr) else None
        ident, rest = await handshake_as_dialer(stream, secret, me, addr, target=target)
    except BaseException as exc:
        with trio.CancelScope(shield=True), trio.move_on_after(0.5):
            await stream.aclose()
        if isinstance(exc, trio.BrokenResourceError):  # the peer died mid-handshake
            raise HandshakeError(f"{addr} broke the connection during the handshake: {exc}") from exc
        raise
    chan = Channel(dialer=True, peer_addr=addr)
    chan.attach(stream, ident, rest)
    return chan


__all__ = ["Channel", "FrameError", "HandshakeError", "TransportClosed", "connect", "load_secret"]
