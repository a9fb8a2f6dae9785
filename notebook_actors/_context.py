"""Contexts and message streams: the two ends of one call between two actors.

One :class:`Context` exists on each side of a call (``side`` is ``"caller"`` or
``"callee"``). The channel's dispatch loop hands the call's messages to
:meth:`Context._deliver` without blocking; the owning task pulls them out.

Flow control is credit-based: a receiver grants its peer a window of messages
(``msg_buffer_size``) when it opens its stream, and returns credit as it consumes, so
its buffer never grows past the window. A sender without credit waits
(``backpressure=True``, the default) or raises :class:`StreamOverrun`. A sender
whose peer has not opened its stream yet always waits for that first grant.

Ends of a stream (see ``docs/streaming.md``):

- ``aclose()`` (or leaving ``open_stream``) closes *this side for good*: it sends
  ``Stop``, reads no more and drops what still arrives.
- The peer's ``receive`` then drains what was sent before the ``Stop`` and ends
  (``EndOfChannel``/end of ``async for``); its ``send`` raises
  :class:`trio.BrokenResourceError`. Leaving the peer's own ``open_stream`` block
  because of that very error is a clean end (the block swallows it), so a sender
  loop simply stops when the receiver goes away.
- The context's final result (or error) still travels after both streams ended.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec
import trio

from . import _codec, _payload
from ._exceptions import ContextCancelled, MsgTypeError, RemoteActorError, StreamOverrun, TransportClosed
from .msg import Cancel, Credit, Error, ErrorInfo, Reject, Return, Started, Stop, Yield, encoder

if TYPE_CHECKING:
    from ._channel import Channel

log = logging.getLogger("notebook_actors.context")

#: Messages a receiver buffers by default (the credit it grants its sender).
DEFAULT_WINDOW = 512
#: Payload bytes a receiver buffers by default (the byte credit it grants).
DEFAULT_WINDOW_BYTES = 64 * 1024 * 1024
#: Credit granted by a receiver that opened its stream with ``allow_overruns=True``.
UNLIMITED = 1 << 62
#: How long leaving a context waits for the far end to confirm a cancel.
CANCEL_ACK_TIMEOUT = 2.0


def encode_pld(value: Any, what: str, root: str = "value") -> Any:
    """Encode a payload (msgpack, pickling what msgpack cannot encode), or raise
    TypeError saying what could not travel, where it sits (``root`` names the value
    in that path) and why."""
    try:
        pld = _payload.pack(value)
        _codec.check_payload_size(pld)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unencodable(value, what, exc, root) from None
    return pld


def encode_args(kwargs: dict[str, Any], what: str) -> tuple[Any, int]:
    """Encode a call's arguments; return them and how many travel pickled.

    Raises:
        TypeError: an argument cannot travel (the message gives its path and type).
    """
    try:
        packed, pickled = _payload.pack_args(kwargs)
        _codec.check_payload_size(packed)
    except (TypeError, ValueError, OverflowError) as exc:
        raise _unencodable(kwargs, what, exc, "kwargs") from None
    return packed, pickled


def _unencodable(value: Any, what: str, exc: BaseException, root: str = "value") -> TypeError:
    if isinstance(exc, _payload.Unpicklable):
        where = _payload.describe_unpicklable(value, root)
        return TypeError(f"{what} of type {type(value).__name__} cannot be sent to another actor: {where}")
    return TypeError(f"{what} of type {type(value).__name__} cannot be sent to another actor: {exc}")


def unbox(info: Any) -> RemoteActorError:
    """Rebuild a boxed error as the matching RemoteActorError subclass."""
    from ._exceptions import ActorCrashed

    if info.type_name == "ContextCancelled":
        return ContextCancelled(info)
    if info.exitcode is not None:
        return ActorCrashed(info)
    return RemoteActorError(info)


#: the Context of the running task: the callee's RPC task, or a caller's open_context block
CURRENT_CTX: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "notebook_actors.current_ipc_ctx", default=None
)


def current_ipc_ctx(error_on_not_set: bool = False) -> Context | None:
    """The :class:`Context` of the running task (tractor's ``current_ipc_ctx``).

    Inside a ``@context`` function (or any function called through ``portal.run``)
    it is that call's context; inside a caller's ``open_context`` block, that
    block's context. Elsewhere None.

    Raises:
        RuntimeError: no context here and ``error_on_not_set`` is true.
    """
    ctx = CURRENT_CTX.get()
    if ctx is None and error_on_not_set:
        raise RuntimeError(
            "no IPC context in this task: current_ipc_ctx() works inside a function called by "
            "another actor, or inside `async with portal.open_context(...)`"
        )
    return ctx


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


class _PeerClosed(trio.BrokenResourceError):
    """Raised by ``send`` once the other side closed its end of the stream.

    Leaving that stream's ``open_stream`` block with this error is a clean end.
    """

    def __init__(self, message: str, stream: MsgStream) -> None:
        super().__init__(message)
        self.stream = stream


class Context:
    """One side of a call between two actors. Made by the runtime; not built by users.

    On the caller side it comes from :meth:`Portal.open_context`; on the callee side it
    is the first argument of a :func:`context` function.

    Attributes:
        chan: the channel to the other actor.
        side: ``"caller"`` or ``"callee"``.
        cancel_called: this side asked for the cancellation (``await ctx.cancel()``).
    """

    def __init__(self, chan: Channel, cid: int, side: str, *, fn_name: str = "") -> None:
        self.chan = chan
        self.cid = cid
        self.side = side
        self.fn_name = fn_name
        self._inbox: deque[Any] = deque()
        self._arrived = trio.lowlevel.ParkingLot()
        self._final: Any = None  # the Return or Error that ended the call
        # caller side: the open_context body, interrupted when the far end fails
        self._body_scope: trio.CancelScope | None = None
        self._started = False
        self._stream: MsgStream | None = None
        self._stream_opened = False
        self._draining = False  # caller awaited result() without a stream: drop Yields
        self._peer_stopped = False
        self._stop_sent = False
        self._rejected: MsgTypeError | None = None  # the peer refused one of our messages
        self._payload_type: Any = None
        self._refuse: str | None = None  # typed-only: why pickled values are refused
        # sending credit (granted by the peer's receiver)
        self._credit = 0
        self._credit_bytes = 0
        self._credit_known = False
        self._peer_window = 0
        self._credit_lot = trio.lowlevel.ParkingLot()
        # callee side
        self._scope: trio.CancelScope | None = None
        self._canceller: tuple[str, str] | None = None
        self.cancel_called = False
        self._actor: Any = None

    def __repr__(self) -> str:
        return f"<Context {self.side} cid={self.cid} fn={self.fn_name} peer={self.chan.uid}>"

    # -- dispatch side (called synchronously by the channel loop) --
    def _deliver(self, msg: Any) -> None:
        kind = type(msg)
        if kind is Yield:
            stream = self._stream
            if self._draining or (stream is not None and stream._closed):
                return  # we closed our end, or only wait for the result: nobody will read it
            self._inbox.append(msg)
            if self._arrived:
                self._arrived.unpark_all()
            return
        if kind is Credit:
            if msg.n <= 0:
                return  # nonsense from a broken peer: granting nothing changes nothing
            if not self._credit_known:
                self._peer_window = msg.n
                self._credit_bytes = msg.nbytes or UNLIMITED  # 0: the peer counts messages only
            else:
                self._credit_bytes += msg.nbytes
            self._credit += msg.n
            self._credit_known = True
        elif kind is Stop:
            self._peer_stopped = True
        elif kind is Reject:
            self._rejected = MsgTypeError(
                f"actor {self.chan.uid} rejected a message sent on {self.fn_name!r}: {msg.err.message}"
            )
            log.warning("%s", self._rejected)
        else:
            if kind is Return or kind is Error:
                if kind is Error and self._refuse is not None:
                    msg.err.exc = None  # a typed-only side never unpickles an error's exception
                self._final = msg
                if kind is Error and self._body_scope is not None and not self.cancel_called:
                    self._body_scope.cancel()  # the far end failed or cancelled: stop waiting on it
            self._inbox.append(msg)
        self._arrived.unpark_all()
        self._credit_lot.unpark_all()

    def _on_chan_closed(self) -> None:
        self._arrived.unpark_all()
        self._credit_lot.unpark_all()

    def _transport_closed(self, during: str) -> TransportClosed:
        return TransportClosed(
            f"the channel to actor {self.chan.uid} closed during {during} of {self.fn_name!r}; "
            "the actor probably died (see its exit code / the nursery's error)"
        )

    async def _next(self) -> Any:
        """The next message of this call; ActorCrashed (with the exit code or signal)
        if the channel died with the actor, else TransportClosed."""
        while not self._inbox:
            if self.chan.closed:
                await self._raise_closed("the call")
            await self._arrived.park()
        return self._inbox.popleft()

    async def _crash_of_peer(self) -> BaseException | None:
        """How the far actor died, asked of its parent (who reaped it and knows the
        exit status): ourselves when it is our child, else its parent actor, through
        the address it gave in the handshake. None when it did not crash, or nobody
        can tell (its parent is gone too, or runs no runtime)."""
        from ._state import current_actor_or_none

        actor = current_actor_or_none()
        uid = self.chan.uid
        if actor is None or not uid:
            return None
        during = f"call {self.fn_name}()"
        child = actor.children.get(uid) or actor.exited_children.get(uid)  # dropped just before we woke?
        if child is not None and hasattr(child, "crash_report"):
            return await child.crash_report(actor, during)
        parent = self.chan.peer_parent_addr
        if not parent or parent == actor.accept_addr:
            return None
        return await actor.how_child_ended(parent, uid, during)

    async def _raise_closed(self, during: str) -> NoReturn:
        """Raise why the channel under this call closed: ActorCrashed with the exit code
        or signal when the far actor died, else TransportClosed."""
        crash = await self._crash_of_peer()
        if crash is not None:
            raise crash from None
        raise self._transport_closed(during) from self.chan._close_reason

    # -- public API --
    @property
    def canceller(self) -> tuple[str, str] | None:
        """The uid of the actor that cancelled this context, or None."""
        if self.side == "callee":
            return self._canceller
        final = self._final
        if type(final) is Error and final.err.canceller:
            return tuple(final.err.canceller)  # type: ignore[return-value]
        return self._my_uid() if self.cancel_called else None

    async def started(self, value: Any = None) -> None:
        """Tell the caller the context is up, handing it ``value`` (once only).

        The caller's ``open_context`` is blocked until this is called.

        Raises:
            RuntimeError: called twice, or on the caller's side.
            TypeError: ``value`` cannot be encoded (raised here, in the sender).
        """
        if self.side != "callee":
            raise RuntimeError("started() is called by the context function, not by its caller")
        if self._started:
            raise RuntimeError(f"ctx.started() was already called in {self.fn_name!r}: call it once")
        pld = encode_pld(value, "the value passed to ctx.started()")
        self._check_typed(pld, value, "the value passed to ctx.started()")
        self._started = True
        self.chan.send_nowait(Started(self.cid, pld))
        await trio.lowlevel.checkpoint()

    def open_stream(
        self,
        backpressure: bool = True,
        msg_buffer_size: int | None = None,
        allow_overruns: bool = False,
        msg_type: Any = None,
        buffer_bytes: int | None = None,
    ) -> Any:
        """Open the context's two-way stream (an async context manager → MsgStream).

        Both sides open it; a side that sends before the other side opened waits for
        it. Leaving the block closes this side (see the module docs).

        Args:
            backpressure: when the peer's buffer is full, ``send`` waits (True) or
                raises :class:`StreamOverrun` (False).
            msg_buffer_size: how many unread messages this side buffers (the window
                it grants the sender); default ``Actor.msg_buffer_size`` (512).
            allow_overruns: never limit the sender; this side's buffer is unbounded,
                so only use it when you know the peer sends a bounded amount.
            msg_type: decode received messages as this type (default: the
                ``payload_type`` of the ``@context``); a mismatch raises
                :class:`MsgTypeError` naming the field, here and to the sender.
            buffer_bytes: how many bytes of unread payload this side buffers (the
                byte window granted with the message window); default 64 MiB. A
                single larger message still goes through, alone.

        Raises:
            RuntimeError: the context was not started yet, or a stream is already open.
        """
        if self.cancel_called:
            raise self._cancelled_here()
        if self.side == "callee" and not self._started:
            raise RuntimeError(f"open_stream() before started() in {self.fn_name!r}: call `await ctx.started()` first")
        if self._stream_opened:
            if self._stream is None:
                raise RuntimeError(
                    f"ctx.result() of {self.fn_name!r} was awaited before this side opened its stream, "
                    "so its stream messages were dropped: open the stream first, then await the result"
                )
            raise RuntimeError(f"the stream of {self.fn_name!r} was already opened (one per context)")
        if msg_buffer_size is not None and msg_buffer_size < 1:
            raise ValueError(f"msg_buffer_size must be at least 1, not {msg_buffer_size}")
        if buffer_bytes is not None and buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be at least 1, not {buffer_bytes}")
        self._stream_opened = True
        stream = MsgStream(
            self,
            window=msg_buffer_size or self._default_window(),
            backpressure=backpressure,
            allow_overruns=allow_overruns,
            msg_type=msg_type if msg_type is not None else self._payload_type,
            window_bytes=buffer_bytes or DEFAULT_WINDOW_BYTES,
        )
        self._stream = stream
        return _stream_cm(stream)

    async def cancel(self) -> None:
        """Cancel the context: the other side sees ContextCancelled naming us.

        On the caller side this asks the callee to stop and returns; ``result()`` then
        returns None (our own cancel is not an error). On the callee side it cancels
        the context function itself.
        """
        self.cancel_called = True
        if self.side == "caller":
            if self._final is None and not self.chan.closed:
                self.chan.send_nowait(Cancel(self.cid))
        elif self._scope is not None:
            self._canceller = self._my_uid()
            self._scope.cancel()
        await trio.lowlevel.checkpoint()

    async def wait_for_result(self) -> Any:
        """Current tractor's name for :meth:`result`."""
        return await self.result()

    async def result(self) -> Any:
        """Wait for the far end's return value (its error is raised, boxed).

        Stream messages still unread are discarded (their credit is returned, so a
        sender finishing a finite stream is not stuck): do not await it while another
        task still reads the stream. If this side never opened its stream, the far
        end's stream messages are dropped (its ``send`` never waits for a reader) and
        the stream cannot be opened any more.
        After our own ``cancel()`` it returns None (or the value, if the far end
        finished first). Safe to call again.

        Raises:
            RemoteActorError: the far end failed; ContextCancelled if it was cancelled
                by someone other than us.
            TransportClosed: the channel died before the result came.
            RuntimeError: called on the callee's side.
        """
        if self.side != "caller":
            raise RuntimeError(f"ctx.result() is for the caller of {self.fn_name!r}; the callee returns it")
        if not self._stream_opened:
            # nobody will read the far end's stream: let it send without waiting for a
            # reader (its messages are dropped as they arrive) rather than stopping it,
            # so a callee that streams then returns gives its result (tractor's rule)
            self._stream_opened = self._draining = True
            self._grant_unlimited()
        elif self._stream is not None and self._stream._closed:
            self._stop_nowait()  # owed if our stream block was left by an error
        while self._final is None:
            self._drain_unread()
            if self._final is not None:
                break
            if self.chan.closed:
                await self._raise_closed("the wait for the result")
            await self._arrived.park()
        return self._final_value()

    def _grant_unlimited(self) -> None:
        if not self.chan.closed and self._final is None:
            try:
                self.chan.send_nowait(Credit(self.cid, UNLIMITED))
            except TransportClosed:
                pass

    def _cancelled_here(self) -> ContextCancelled:
        """The ContextCancelled for using a context this side already cancelled."""
        uid = self._my_uid()
        info = ErrorInfo(
            "ContextCancelled",
            ContextCancelled.__module__,
            f"{self.fn_name!r} was already cancelled by this side ({self.side}, actor {uid})",
            "",
            uid,
            [uid] if uid else [],
            uid,
        )
        return ContextCancelled(info)

    async def _cancel_if_it_streams_unread(self) -> None:
        """At the end of the caller's block: if this side never opened its stream, wait
        until the callee either returns or opens its own stream; in the second case
        cancel it (nobody will ever read what it sends, or send what it waits for)."""
        if self.side != "caller" or self._stream_opened:
            return
        while self._final is None and not self._credit_known and not self.chan.closed:
            await self._arrived.park()  # Started came; Credit (its open_stream) or the end follows
        if self._final is None and self._credit_known and not self.chan.closed:
            await self.cancel()

    def _drain_unread(self) -> None:
        dropped = dropped_bytes = 0
        while self._inbox and type(self._inbox[0]) is not Return and type(self._inbox[0]) is not Error:
            msg = self._inbox.popleft()
            if type(msg) is Yield:
                dropped += 1
                dropped_bytes += len(msg.pld)
        stream = self._stream
        if dropped and stream is not None and not stream._closed:
            log.debug("%r: %d unread stream messages dropped while waiting for the result", self, dropped)
            stream._grant(dropped, dropped_bytes)

    def _final_value(self) -> Any:
        msg = self._final
        if type(msg) is Return:
            return self._decode_result(msg.pld)
        err = unbox(msg.err)
        if self._is_own_cancel(err):
            return None
        raise err

    def _decode_result(self, pld: Any) -> Any:
        """The far end's return value.

        Raises:
            MsgTypeError: it cannot be rebuilt here, or it was pickled and this side
                accepts typed values only.
        """
        try:
            return _payload.decode(pld, refuse=self._refuse)
        except msgspec.DecodeError as exc:
            raise MsgTypeError(f"the return value of {self.fn_name!r} from actor {self.chan.uid}: {exc}") from None

    def _check_typed(self, pld: Any, value: Any, what: str) -> None:
        """Refuse to send a pickled value from a typed-only context."""
        if self._refuse is not None and _payload.is_pickled(pld):
            raise TypeError(f"{what} of type {type(value).__name__} would travel pickled, and {self._refuse}")

    @property
    def typed_only(self) -> bool:
        """Whether this side refuses pickled values (``@context(typed_only=True)``)."""
        return self._refuse is not None

    def _set_actor(self, actor: Any) -> None:
        """Bind the actor this side runs in: a typed-only actor's every context refuses
        pickled values (a typed-only context function still says so by its own name)."""
        self._actor = actor
        if actor is not None and actor.typed_only:
            self._refuse = f"actor {actor.name!r} accepts typed values only (typed_only=True)"

    def _check_typed_args(self, kwargs: dict[str, Any], pickled: int, what: str) -> None:
        """Refuse to send a call's pickled arguments from a typed-only side."""
        if self._refuse is None or not pickled:
            return
        for key, value in kwargs.items():
            if _payload.is_pickled(_payload.pack(value)):
                raise TypeError(
                    f"{what}: kwargs[{key!r}] of type {type(value).__name__} would travel pickled, and {self._refuse}"
                )

    def _set_typed_only(self, fn_name: str) -> None:
        self._refuse = f"{fn_name!r} accepts typed values only (typed_only=True)"

    def _is_own_cancel(self, err: BaseException) -> bool:
        return isinstance(err, ContextCancelled) and self.cancel_called and err.canceller == self._my_uid()

    def _final_error(self) -> RemoteActorError | None:
        """The far end's error, unless it is our own cancel coming back."""
        if type(self._final) is not Error:
            return None
        err = unbox(self._final.err)
        return None if self._is_own_cancel(err) else err

    def _default_window(self) -> int:
        """This actor's ``msg_buffer_size`` (tractor's ``Actor.msg_buffer_size``)."""
        from ._state import current_actor_or_none

        actor = self._actor or current_actor_or_none()
        return getattr(actor, "msg_buffer_size", DEFAULT_WINDOW) or DEFAULT_WINDOW

    def _my_uid(self) -> Any:
        from ._state import current_actor_or_none

        actor = self._actor or current_actor_or_none()
        return actor.uid if actor else None

    # -- caller side plumbing (used by Portal) --
    async def _wait_started(self) -> Any:
        """The value the callee passed to ``started()`` (decoded and type-checked)."""
        msg = await self._next()
        if type(msg) is Error:
            raise unbox(msg.err)
        if type(msg) is not Started:
            raise RuntimeError(f"{self.fn_name} returned without calling ctx.started()")
        try:
            return _payload.decode(msg.pld, _payload.decoder_for(self._payload_type), self._refuse)
        except msgspec.DecodeError as exc:
            raise self._reject(exc, "the value passed to ctx.started()", self._payload_type) from None

    async def _cancel_and_wait(self, timeout: float = CANCEL_ACK_TIMEOUT) -> None:
        """Cancel the far end if it still runs and wait (shielded, bounded) for its end."""
        with trio.CancelScope(shield=True):
            try:
                if self._final is None and not self.chan.closed:
                    self.cancel_called = True
                    self.chan.send_nowait(Cancel(self.cid))
                    with trio.move_on_after(timeout):
                        while self._final is None and not self.chan.closed:
                            await self._arrived.park()
            except TransportClosed:
                pass
            finally:
                self.chan.ctxs.pop(self.cid, None)

    def _reject(self, exc: Exception, what: str, tp: Any) -> MsgTypeError:
        """Build the MsgTypeError for a payload that does not match ``tp``, and tell the sender."""
        if isinstance(exc, _payload.PickleRefused):
            problem = "was refused"
        elif isinstance(exc, msgspec.ValidationError):
            problem = f"does not match {_type_name(tp)}"
        else:
            problem = "cannot be decoded" if tp is None else f"cannot be decoded as {_type_name(tp)}"
        err = MsgTypeError(f"{what} from actor {self.chan.uid} on {self.fn_name!r} {problem}: {exc}")
        if not self.chan.closed:
            uid = self._my_uid()
            info = ErrorInfo(
                "MsgTypeError", MsgTypeError.__module__, f"{what} {problem}: {exc}", "", uid, [uid] if uid else []
            )
            try:
                self.chan.send_nowait(Reject(self.cid, info))
            except TransportClosed:
                pass
        return err

    # -- legacy @stream support --
    async def send_yield(self, value: Any) -> None:
        """Send one value to the caller of a legacy ``@stream`` function."""
        if self._stream is None:
            self._stream = MsgStream(self, window=DEFAULT_WINDOW, backpressure=True)
        await self._stream.send(value)

    async def _send_stop(self) -> None:
        """Tell the peer this side's stream is over (the runtime's one-way streams)."""
        self._stop_nowait()
        await trio.lowlevel.checkpoint()

    def _stop_nowait(self) -> None:
        if not self._stop_sent and not self.chan.closed and self._final is None:
            self._stop_sent = True
            try:
                self.chan.send_nowait(Stop(self.cid))
            except TransportClosed:
                pass


@asynccontextmanager
async def _stream_cm(stream: MsgStream) -> AsyncIterator[MsgStream]:
    stream._grant()
    try:
        yield stream
    except BaseException as exc:
        if _only_peer_closed(exc, stream):
            await stream.aclose()  # the peer went away and our sender hit it: a clean end
            return
        # No Stop now: a Stop first would let the peer end "cleanly" before it sees
        # what happened. The callee's Error (or Return) follows; the caller's
        # open_context cancels the callee, or, if the error is caught inside it,
        # ctx.result() sends the Stop then.
        stream._close_quietly()
        raise
    await stream.aclose()


def _only_peer_closed(exc: BaseException, stream: MsgStream) -> bool:
    """``exc`` is (a group of nothing but) this stream's own peer-closed error."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_peer_closed(e, stream) for e in exc.exceptions)
    return isinstance(exc, _PeerClosed) and exc.stream is stream


def _yield_head(cid: int) -> bytes:
    """The encoding of ``Yield(cid, <payload>)`` up to the payload (array-like tagged
    struct: a 3-array of tag, cid, payload), so a send encodes the value in place."""
    return b"\x93" + encoder.encode("yield") + encoder.encode(cid)


class MsgStream(trio.abc.Channel[Any]):
    """A two-way stream of messages inside a context (built by the runtime).

    ``send``/``receive``/``async for``/``aclose``. Receiving after the other side
    closed ends iteration; sending after it closed raises
    :class:`trio.BrokenResourceError`; sending on a stream this side closed raises
    :class:`trio.ClosedResourceError`.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        window: int,
        backpressure: bool = True,
        allow_overruns: bool = False,
        msg_type: Any = None,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
    ) -> None:
        self._ctx = ctx
        self._window = window
        self._window_bytes = window_bytes
        self._bytes_batch = max(1, window_bytes // 4)
        self._consumed_bytes = 0
        self._backpressure = backpressure
        self._allow_overruns = allow_overruns
        self._msg_type = msg_type
        self._decoder = _payload.decoder_for(msg_type)
        self._credit_batch = max(1, min(window // 2, 64))
        self._head = _yield_head(ctx.cid)
        self._consumed = 0
        self._closed = False
        self._broadcaster: Any = None
        self._receive_only = False
        self.received = 0
        self.sent = 0

    def __repr__(self) -> str:
        return f"<MsgStream {self._ctx.fn_name!r} with {self._ctx.chan.uid}>"

    @property
    def ctx(self) -> Context:
        return self._ctx

    def _grant(self, n: int | None = None, nbytes: int = 0) -> None:
        """Grant the peer our receive window (on open) or return consumed credit."""
        if self._allow_overruns and n is not None:
            return  # the first grant was unlimited
        ctx = self._ctx
        if ctx.chan.closed or ctx._final is not None:
            return
        if n is None:
            n, nbytes = (UNLIMITED, UNLIMITED) if self._allow_overruns else (self._window, self._window_bytes)
        try:
            ctx.chan.send_nowait(Credit(ctx.cid, n, nbytes))
        except TransportClosed:
            pass

    def _consume(self, msg: Any) -> None:
        """Count a message taken by the reader; return credit in batches (or at once
        when its bytes reach a quarter of the byte window)."""
        self.received += 1
        self._consumed += 1
        self._consumed_bytes += len(msg.pld)
        if self._consumed >= self._credit_batch or self._consumed_bytes >= self._bytes_batch:
            self._grant(self._consumed, self._consumed_bytes)
            self._consumed = self._consumed_bytes = 0

    # -- sending --
    async def send(self, value: Any) -> None:
        """Send ``value`` to the other side.

        Raises:
            trio.ClosedResourceError: this side closed the stream (or cancelled the
                context).
            trio.BrokenResourceError: the other side closed its end or returned.
            StreamOverrun: the peer's buffer is full and ``backpressure=False``.
            MsgTypeError: the peer rejected an earlier message (wrong type).
            RemoteActorError: the other side failed.
            TransportClosed: the channel to the other actor died.
            TypeError: ``value`` cannot be encoded (nothing was sent).
        """
        ctx = self._ctx
        # a cancelled send sends nothing: check first, send, then only a shielded yield
        await trio.lowlevel.checkpoint_if_cancelled()
        if ctx._refuse is not None:
            ctx._check_typed(encode_pld(value, "a stream message"), value, "a stream message")
        if (
            ctx._credit <= 0
            or ctx._credit_bytes <= 0
            or self._closed
            or ctx._peer_stopped
            or ctx._final is not None
            or ctx._rejected is not None
        ):
            await self._wait_to_send()
        try:
            try:
                nbytes = ctx.chan.send_prefixed_nowait(self._head, value)
            except (TypeError, OverflowError) as exc:
                if isinstance(exc, _payload.Unpicklable):
                    raise
                # msgpack refused the value as a whole (an int over 64 bits, a dict with
                # tuple keys): it travels as one pickle
                nbytes = ctx.chan.send_prefixed_nowait(self._head, _payload.whole(value))
        except (TypeError, ValueError, OverflowError) as exc:
            raise _unencodable(value, "a stream message", exc) from None
        ctx._credit -= 1
        ctx._credit_bytes -= nbytes
        self.sent += 1
        if nbytes >= _payload.OOB_MIN:
            await ctx.chan.wait_sent()  # large buffers read from the caller's memory have left
            # and let the writer take the frame now: a producer of large values that ran
            # 64 sends ahead would hold a window of segments before the reader saw one
            await trio.lowlevel.cancel_shielded_checkpoint()
        elif not self.sent & 63:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _wait_to_send(self) -> None:
        """The slow path of ``send``: raise why we cannot send, or wait for credit."""
        ctx = self._ctx
        while True:
            self._check_can_send()
            if ctx._credit > 0 and ctx._credit_bytes > 0:
                return
            if ctx._credit_known and not self._backpressure:
                if ctx._credit > 0:
                    raise StreamOverrun(
                        f"actor {ctx.chan.uid} has a full byte window of unread messages of {ctx.fn_name!r} "
                        "buffered (its buffer_bytes): open the stream with backpressure=True to wait, "
                        "or have the peer read faster / use a bigger buffer_bytes"
                    )
                raise StreamOverrun(
                    f"actor {ctx.chan.uid} has {ctx._peer_window} unread messages of {ctx.fn_name!r} "
                    "buffered (its msg_buffer_size): open the stream with backpressure=True to wait, "
                    "or have the peer read faster / use a bigger msg_buffer_size"
                )
            await ctx._credit_lot.park()

    def _check_can_send(self) -> None:
        ctx = self._ctx
        if self._receive_only:
            raise TypeError(
                f"the stream from {ctx.fn_name!r} is receive-only (portal.open_stream_from); "
                "for a two-way stream use a @context with portal.open_context() and ctx.open_stream()"
            )
        if self._closed:
            raise trio.ClosedResourceError(f"this side closed the stream of {ctx.fn_name!r}; sending on it is an error")
        if ctx._rejected is not None:
            rejected, ctx._rejected = ctx._rejected, None
            raise rejected
        final = ctx._final
        if type(final) is Error:
            err = unbox(final.err)
            if ctx._is_own_cancel(err):
                raise trio.ClosedResourceError(f"this side cancelled the context {ctx.fn_name!r}: sending ended")
            raise err
        if ctx._peer_stopped or final is not None:
            raise _PeerClosed(
                f"actor {ctx.chan.uid} closed its end of the stream {ctx.fn_name!r} and reads no more; "
                "leaving the `open_stream` block on this error is a clean end",
                self,
            )
        if ctx.chan.closed:
            raise ctx._transport_closed("the stream") from ctx.chan._close_reason

    # -- receiving --
    def receive_nowait(self) -> Any:
        """A buffered message, or ``trio.WouldBlock``."""
        ctx = self._ctx
        inbox = ctx._inbox
        if inbox and type(inbox[0]) is Yield:
            msg = inbox.popleft()
            self._consume(msg)
            try:
                return _payload.decode(msg.pld, self._decoder, ctx._refuse, once=True)
            except msgspec.DecodeError as exc:
                raise ctx._reject(exc, f"stream message #{self.received}", self._msg_type) from None
        self._raise_if_ended()
        if inbox and type(inbox[0]) is Yield:
            return self.receive_nowait()
        raise trio.WouldBlock

    def _raise_if_ended(self) -> None:
        """Raise why this stream has nothing more to give; return if a message is next
        or one may still come (without an exception: this runs before every wait)."""
        ctx = self._ctx
        inbox = ctx._inbox
        while inbox:
            msg = inbox[0]
            kind = type(msg)
            if kind is Yield:
                return
            if kind is Error:
                err = unbox(msg.err)
                if ctx._is_own_cancel(err):
                    raise trio.EndOfChannel
                raise err
            if kind is Return:
                raise trio.EndOfChannel
            inbox.popleft()  # a stray Started: nothing to do with the stream
        if self._closed:
            raise trio.ClosedResourceError(f"this side closed the stream of {ctx.fn_name!r}")
        if ctx._peer_stopped:
            raise trio.EndOfChannel
        if ctx.chan.closed:
            raise ctx._transport_closed("the stream") from ctx.chan._close_reason

    async def _receive_direct(self) -> Any:
        # Like trio's memory channels: a cancelled receive never takes a message
        # (check first, then take, then only a cancel-shielded yield).
        await trio.lowlevel.checkpoint_if_cancelled()
        inbox = self._ctx._inbox
        while not (inbox and type(inbox[0]) is Yield):
            try:
                self._raise_if_ended()
            except TransportClosed:
                await self._ctx._raise_closed("the stream")  # the crash behind it, if any
            if not inbox:
                await self._ctx._arrived.park()
        # receive_nowait's fast path, inlined: this runs once per message
        msg = inbox.popleft()
        self._consume(msg)
        if not self.received & 63:
            await trio.lowlevel.cancel_shielded_checkpoint()
        try:
            return _payload.decode(msg.pld, self._decoder, self._ctx._refuse, once=True)
        except msgspec.DecodeError as exc:
            raise self._ctx._reject(exc, f"stream message #{self.received}", self._msg_type) from None

    async def receive(self) -> Any:
        """The next message; ``trio.EndOfChannel`` once the other side closed.

        Raises:
            trio.EndOfChannel: the other side closed its end (after its last message).
            MsgTypeError: the message does not match the stream's type (the message
                is skipped: receiving again goes on with the next one).
            RemoteActorError: the other side failed.
            ContextCancelled: the other side cancelled the context.
            TransportClosed: the channel to the other actor died.
        """
        if self._broadcaster is None:
            return await self._receive_direct()
        return await self._broadcaster.receive()

    async def __anext__(self) -> Any:
        try:
            if self._broadcaster is None:
                return await self._receive_direct()
            return await self._broadcaster.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Close this side: the other side's iteration ends. Idempotent."""
        if not self._closed:
            ctx = self._ctx
            self._close_quietly()
            ctx._stop_nowait()
            ctx._arrived.unpark_all()
            ctx._credit_lot.unpark_all()
        await trio.lowlevel.checkpoint()

    def _close_quietly(self) -> None:
        """Close this side without telling the peer (a one-way stream's caller cancels
        the generator instead); unread messages are freed."""
        self._closed = True
        ctx = self._ctx
        kept = [m for m in ctx._inbox if type(m) is not Yield]
        ctx._inbox.clear()
        ctx._inbox.extend(kept)

    def subscribe(self) -> Any:
        """An async context manager → a broadcast receiver of this stream, so several
        local tasks can each see every message (from the moment they subscribed).

        Once a stream has subscribers, its own ``receive`` is one of them too. A
        subscriber more than ``msg_buffer_size`` messages behind gets
        :class:`~notebook_actors.trionics.Lagged` and skips ahead.
        """
        if self._broadcaster is None:
            from ._broadcast import broadcast_receiver

            self._broadcaster = broadcast_receiver(
                self._receive_direct, max_buffer_size=self._window, what=f"stream {self._ctx.fn_name!r}"
            )
        return self._broadcaster.subscribe()

    def statistics(self) -> dict[str, int]:
        """Counters: messages sent/received, buffered here, send credit, window."""
        return {
            "sent": self.sent,
            "received": self.received,
            "buffered": sum(1 for m in self._ctx._inbox if type(m) is Yield),
            "send_credit": self._ctx._credit,
            "window": self._window,
        }


# -- opening contexts (the caller side of Portal.open_context) ------------------------


@asynccontextmanager
async def open_context_from(portal: Any, fn: Any, kwargs: dict[str, Any]) -> AsyncIterator[tuple[Context, Any]]:
    """The body of :meth:`Portal.open_context` (see there)."""
    if getattr(fn, "_notebook_actors_kind", "context") != "context":
        raise TypeError(
            f"{fn.__qualname__} is a {fn._notebook_actors_kind} function, not a @context one: "
            f"use portal.open_stream_from({fn.__name__})"
        )
    ctx = portal._start(fn, (), kwargs, "context")
    ctx._payload_type = getattr(fn, "_notebook_actors_payload_type", None)
    if getattr(fn, "_notebook_actors_typed_only", False):
        ctx._set_typed_only(ctx.fn_name)
    # Made before Started arrives: the far end's Error may come in the same batch,
    # and a scope cancelled before it is entered is cancelled on entry.
    ctx._body_scope = trio.CancelScope()
    try:
        first = await ctx._wait_started()
    except BaseException:
        ctx._body_scope = None
        await ctx._cancel_and_wait()
        raise
    token = CURRENT_CTX.set(ctx)
    try:
        with ctx._body_scope:
            yield ctx, first
    except ContextCancelled as exc:
        if not ctx._is_own_cancel(exc):
            await ctx._cancel_and_wait()
            _note_far_end_error(ctx, exc)
            raise
        # our own ctx.cancel() coming back from open_stream()/receive(): the block
        # ends as after any cancel of ours (tractor's rule), the result is None
    except BaseException as exc:
        # The body failed or was cancelled: stop the far end, then let the body's error
        # win; a different failure of the far end is not lost, it becomes a note.
        await ctx._cancel_and_wait()
        _note_far_end_error(ctx, exc)
        raise
    finally:
        ctx._body_scope = None
        CURRENT_CTX.reset(token)
    try:
        await ctx._cancel_if_it_streams_unread()
        # Also raises the far end's error when it is what interrupted the body.
        await ctx.result()
    finally:
        ctx.chan.ctxs.pop(ctx.cid, None)


def _note_far_end_error(ctx: Context, exc: BaseException) -> None:
    err = ctx._final_error()
    if err is None or (isinstance(exc, RemoteActorError) and exc.info is ctx._final.err):
        return
    if isinstance(exc, RemoteActorError) and exc.info.tb_str == err.info.tb_str:
        return
    exc.add_note(f"meanwhile {ctx.fn_name!r} in actor {ctx.chan.uid} ended with {err.type_name}: {err.info.message}")


# -- decorators ------------------------------------------------------------------------


def _has_ctx_param(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "ctx" in params or any(p.annotation in (Context, "Context") for p in params.values())


def context(fn: Callable[..., Any] | None = None, *, payload_type: Any = None, typed_only: bool = False) -> Any:
    """Mark ``async def fn(ctx, **kwargs)`` as a context endpoint.

    Use as ``@context`` or ``@context(payload_type=MyStruct)``: the type of the value
    passed to ``ctx.started`` and of the stream's messages in both directions,
    checked where they are received (a mismatch raises :class:`MsgTypeError` there
    and is reported to the sender). Call it with ``portal.open_context(fn, **kw)``,
    not ``portal.run``.

    With ``typed_only=True`` both sides of the context refuse pickled values (see
    ``docs/data.md``): sending one raises TypeError, receiving one raises
    :class:`MsgTypeError` naming its type (and the sender is told).
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@context needs an `async def`; {f.__qualname__} is not one")
        if not _has_ctx_param(f):
            raise TypeError(
                f"@context function {f.__qualname__} must take the context as a `ctx` parameter: "
                f"`async def {f.__name__}(ctx, ...)`"
            )
        endpoint = f
        if payload_type is not None or typed_only:

            @functools.wraps(f)
            async def endpoint(ctx: Context, *args: Any, **kwargs: Any) -> Any:
                ctx._payload_type = payload_type
                if typed_only:
                    ctx._set_typed_only(ctx.fn_name)
                return await f(ctx, *args, **kwargs)

        endpoint._notebook_actors_kind = "context"  # type: ignore[attr-defined]
        endpoint._notebook_actors_payload_type = payload_type  # type: ignore[attr-defined]
        endpoint._notebook_actors_typed_only = typed_only  # type: ignore[attr-defined]
        return endpoint

    return mark(fn) if fn is not None else mark


def stream(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Legacy one-way streaming: ``async def fn(ctx, ...)`` calling ``ctx.send_yield(v)``.

    Call it with ``portal.open_stream_from(fn, **kw)``. New code uses an async
    generator (same call) or a ``@context``.

    Raises:
        TypeError: ``fn`` has no ``ctx`` parameter.
    """
    if not _has_ctx_param(fn):
        # the "<name> must be `ctx: tractor.Context`" wording is what tractor programs
        # and their tests look for (tests/core/test_tractor_fidelity.py)
        raise TypeError(
            f"the first parameter of @stream function {fn.__qualname__} must be `ctx: tractor.Context` "
            f"(notebook_actors.Context): `async def {fn.__name__}(ctx, ...)` calling "
            "`await ctx.send_yield(value)`"
        )
    fn._notebook_actors_kind = "stream"  # type: ignore[attr-defined]
    return fn


__all__ = ["Context", "MsgStream", "context", "current_ipc_ctx", "stream"]
