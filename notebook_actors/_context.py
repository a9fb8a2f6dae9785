"""Contexts and message streams: the two ends of one call between two actors.

One :class:`Context` exists on each side of a call (``side`` is ``"caller"`` or
``"callee"``). The channel's dispatch loop drops the call's messages into the
context's inbox without blocking; the owning task pulls them out.

Flow control is credit-based: a receiver grants its peer a window of messages
(``msg_buffer_size``) when it opens its stream, and returns credit as it consumes, so
its buffer can never grow past the window. A sender without credit waits
(``backpressure=True``, the default) or raises :class:`StreamOverrun`.
"""
from __future__ import annotations

import inspect
import logging
from collections import deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable

import msgspec
import trio

from ._channel import Wakeup
from ._exceptions import ContextCancelled, MsgTypeError, RemoteActorError, StreamOverrun, TransportClosed
from .msg import Credit, Error, Return, Started, Stop, Yield, any_decoder, encoder

if TYPE_CHECKING:
    from ._channel import Channel

log = logging.getLogger("notebook_actors.context")

DEFAULT_WINDOW = 512
_NOTHING = object()


def encode_pld(value: Any, what: str) -> msgspec.Raw:
    """Encode a payload, or raise TypeError saying what could not travel and why."""
    try:
        return msgspec.Raw(encoder.encode(value))
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(
            f"{what} of type {type(value).__name__} cannot be sent to another actor: {exc}. "
            "Send msgspec-encodable values (builtins, msgspec Structs, dataclasses)."
        ) from None


def unbox(info: Any) -> RemoteActorError:
    """Rebuild a boxed error as the matching RemoteActorError subclass."""
    from ._exceptions import ActorCrashed

    if info.type_name == "ContextCancelled":
        return ContextCancelled(info)
    if info.exitcode is not None:
        return ActorCrashed(info)
    return RemoteActorError(info)


class Context:
    """One side of a call between two actors. Made by the runtime; not built by users.

    On the caller side it comes from :meth:`Portal.open_context`; on the callee side it
    is the first argument of a :func:`context` function.
    """

    def __init__(self, chan: Channel, cid: int, side: str, *, fn_name: str = "") -> None:
        self.chan = chan
        self.cid = cid
        self.side = side
        self.fn_name = fn_name
        self._inbox: deque[Any] = deque()
        self._wakeup = Wakeup("context")
        self._final: Any = None  # the Return or Error that ended the call
        self._started = False
        self._stream: MsgStream | None = None
        self._stream_opened = False
        self._peer_stopped = False
        # sending credit (granted by the peer's receiver)
        self._credit = 0
        self._credit_known = False
        self._credit_wakeup = Wakeup("stream send")
        # callee side
        self._scope: trio.CancelScope | None = None
        self._canceller: tuple[str, str] | None = None
        self.cancel_called = False
        self._actor: Any = None

    def __repr__(self) -> str:
        return f"<Context {self.side} cid={self.cid} fn={self.fn_name} peer={self.chan.uid}>"

    # -- dispatch side (called synchronously by the channel loop) --
    def _deliver(self, msg: Any) -> None:
        if type(msg) is Credit:
            self._credit += msg.n
            self._credit_known = True
            self._credit_wakeup.set()
            return
        if type(msg) in (Return, Error):
            self._final = msg
            self._credit_wakeup.set()
        self._inbox.append(msg)
        self._wakeup.set()

    def _on_chan_closed(self) -> None:
        self._wakeup.set()
        self._credit_wakeup.set()

    async def _next(self) -> Any:
        """The next message of this call; TransportClosed if the channel died first."""
        while not self._inbox:
            if self.chan.closed:
                raise TransportClosed(
                    f"the channel to actor {self.chan.uid} closed before call {self.fn_name!r} ended"
                ) from self.chan._close_reason
            await self._wakeup.wait()
        return self._inbox.popleft()

    # -- public API --
    @property
    def side_is_caller(self) -> bool:
        return self.side == "caller"

    async def started(self, value: Any = None) -> None:
        """Tell the caller the context is up, handing it ``value`` (once only).

        Raises:
            RuntimeError: called twice, or on the caller's side.
            TypeError: ``value`` cannot be encoded (raised here, in the sender).
        """
        if self.side != "callee":
            raise RuntimeError("started() is called by the context function, not by its caller")
        if self._started:
            raise RuntimeError(f"ctx.started() was already called in {self.fn_name!r}")
        pld = encode_pld(value, "the value passed to ctx.started()")
        self._started = True
        self.chan.send_nowait(Started(self.cid, pld))
        await trio.lowlevel.checkpoint()

    def open_stream(
        self,
        backpressure: bool = True,
        msg_buffer_size: int | None = None,
        allow_overruns: bool = False,
        msg_type: Any = None,
    ) -> Any:
        """Open the context's two-way stream (an async context manager → MsgStream).

        Args:
            backpressure: when the peer has not consumed enough, ``send`` waits (True)
                or raises :class:`StreamOverrun` (False).
            msg_buffer_size: how many unread messages this side buffers (the window
                it grants the sender); default 512.
            allow_overruns: never limit the sender (this side's buffer is unbounded).
            msg_type: decode received messages as this type; a mismatch raises
                :class:`MsgTypeError` naming the field.

        Raises:
            RuntimeError: the context was not started yet, or a stream is already open.
        """
        if self.side == "callee" and not self._started:
            raise RuntimeError(
                f"open_stream() before started() in {self.fn_name!r}: call `await ctx.started()` first"
            )
        if self._stream_opened:
            raise RuntimeError("this context's stream was already opened")
        self._stream_opened = True
        stream = MsgStream(
            self,
            window=msg_buffer_size or DEFAULT_WINDOW,
            backpressure=backpressure,
            allow_overruns=allow_overruns,
            msg_type=msg_type,
        )
        self._stream = stream
        return _stream_cm(stream)

    async def cancel(self) -> None:
        """Cancel the context: the other side sees ContextCancelled naming us."""
        self.cancel_called = True
        if self.side == "caller":
            if self._final is None and not self.chan.closed:
                from .msg import Cancel

                self.chan.send_nowait(Cancel(self.cid))
        elif self._scope is not None:
            self._canceller = self._actor.uid if self._actor else None
            self._scope.cancel()
        await trio.lowlevel.checkpoint()

    async def result(self) -> Any:
        """Wait for and return the far end's return value (raises its error boxed)."""
        while self._final is None:
            msg = await self._next()
            if type(msg) is Yield:
                log.debug("dropping stream message on %r waiting for its result", self)
        return self._final_value()

    def _final_value(self) -> Any:
        msg = self._final
        if type(msg) is Return:
            return any_decoder.decode(msg.pld)
        err = unbox(msg.err)
        if isinstance(err, ContextCancelled) and self.cancel_called and err.canceller == self._my_uid():
            return None
        raise err

    def _my_uid(self) -> Any:
        from ._state import current_actor_or_none

        actor = self._actor or current_actor_or_none()
        return actor.uid if actor else None

    # -- legacy @stream support --
    async def send_yield(self, value: Any) -> None:
        """Send one value to the caller of a legacy ``@stream`` function."""
        if self._stream is None:
            self._stream = MsgStream(self, window=DEFAULT_WINDOW, backpressure=True)
        await self._stream.send(value)

    async def _send_stop(self) -> None:
        if not self.chan.closed:
            self.chan.send_nowait(Stop(self.cid))


@asynccontextmanager
async def _stream_cm(stream: MsgStream) -> AsyncIterator[MsgStream]:
    stream._grant()
    try:
        yield stream
    finally:
        await stream.aclose()


class MsgStream(trio.abc.Channel[Any]):
    """A two-way stream of messages inside a context (built by the runtime).

    ``send``/``receive``/``async for``/``aclose``. Receiving after the other side
    closed ends iteration; sending after either side closed raises
    ``trio.ClosedResourceError``.
    """

    def __init__(
        self,
        ctx: Context,
        *,
        window: int,
        backpressure: bool = True,
        allow_overruns: bool = False,
        msg_type: Any = None,
    ) -> None:
        self._ctx = ctx
        self._window = window
        self._backpressure = backpressure
        self._allow_overruns = allow_overruns
        self._decode = (msgspec.msgpack.Decoder(msg_type) if msg_type is not None else any_decoder).decode
        self._msg_type = msg_type
        self._consumed = 0
        self._closed = False
        self.received = 0
        self.sent = 0

    @property
    def ctx(self) -> Context:
        return self._ctx

    def _grant(self, n: int | None = None) -> None:
        """Grant the peer our receive window (on open) or return consumed credit."""
        if not self._ctx.chan.closed and self._ctx._final is None:
            self._ctx.chan.send_nowait(Credit(self._ctx.cid, self._window if n is None else n))

    async def send(self, value: Any) -> None:
        """Send ``value`` to the other side.

        Raises:
            trio.ClosedResourceError: this side closed the stream, or the peer did.
            StreamOverrun: the peer's buffer is full and ``backpressure=False``.
            TypeError: ``value`` cannot be encoded.
        """
        ctx = self._ctx
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed: sending on it is an error")
        if not self._allow_overruns:
            while ctx._credit <= 0:
                self._check_peer_open()
                if ctx._credit_known and not self._backpressure:
                    raise StreamOverrun(
                        f"actor {ctx.chan.uid} has not read its last {self._window} messages of "
                        f"{ctx.fn_name!r}; open the stream with backpressure=True to wait instead"
                    )
                await ctx._credit_wakeup.wait()
            ctx._credit -= 1
        self._check_peer_open()
        ctx.chan.send_nowait(Yield(ctx.cid, encode_pld(value, "a stream message")))
        self.sent += 1
        if self.sent & 63 == 0:
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.checkpoint_if_cancelled()

    def _check_peer_open(self) -> None:
        ctx = self._ctx
        if ctx._peer_stopped or ctx._final is not None:
            if type(ctx._final) is Error:
                raise unbox(ctx._final.err)
            raise trio.ClosedResourceError(f"actor {ctx.chan.uid} closed this stream")
        if ctx.chan.closed:
            raise TransportClosed(f"the channel to actor {ctx.chan.uid} closed") from ctx.chan._close_reason

    def receive_nowait(self) -> Any:
        """A buffered message, or ``trio.WouldBlock``."""
        ctx = self._ctx
        while ctx._inbox:
            msg = ctx._inbox[0]
            kind = type(msg)
            if kind is Yield:
                ctx._inbox.popleft()
                self.received += 1
                self._consumed += 1
                if self._consumed >= self._window // 2 or self._consumed >= 64:
                    self._grant(self._consumed)
                    self._consumed = 0
                try:
                    return self._decode(msg.pld)
                except msgspec.ValidationError as exc:
                    raise MsgTypeError(
                        f"a message from actor {ctx.chan.uid} on {ctx.fn_name!r} does not match "
                        f"{getattr(self._msg_type, '__name__', self._msg_type)}: {exc}"
                    ) from None
            if kind is Stop:
                ctx._inbox.popleft()
                ctx._peer_stopped = True
                continue
            if kind is Error:
                err = unbox(msg.err)
                if isinstance(err, ContextCancelled) and ctx.cancel_called:
                    raise trio.EndOfChannel
                raise err
            if kind is Return:
                raise trio.EndOfChannel
            ctx._inbox.popleft()  # a stray Started: ignore
        if self._closed:
            raise trio.ClosedResourceError("this stream was closed")
        if ctx._peer_stopped:
            raise trio.EndOfChannel
        if ctx.chan.closed:
            raise TransportClosed(
                f"the channel to actor {ctx.chan.uid} closed during stream {ctx.fn_name!r}"
            ) from ctx.chan._close_reason
        raise trio.WouldBlock

    async def receive(self) -> Any:
        """The next message; ``trio.EndOfChannel`` once the other side closed.

        Raises:
            RemoteActorError: the other side failed.
            ContextCancelled: the other side cancelled the context.
            TransportClosed: the channel to the other actor died.
        """
        while True:
            try:
                value = self.receive_nowait()
            except trio.WouldBlock:
                await self._ctx._wakeup.wait()
                continue
            await trio.lowlevel.checkpoint_if_cancelled()
            return value

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Close this side: the other side's iteration ends. Idempotent."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        ctx = self._ctx
        if ctx._final is None and not ctx.chan.closed:
            ctx.chan.send_nowait(Stop(ctx.cid))
        await trio.lowlevel.checkpoint()

    def subscribe(self) -> Any:
        """An async context manager → a broadcast receiver of this stream, so several
        local tasks can each see every message."""
        from .trionics import _subscribe_stream

        return _subscribe_stream(self)

    def statistics(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "received": self.received,
            "buffered": sum(1 for m in self._ctx._inbox if type(m) is Yield),
            "send_credit": self._ctx._credit,
            "window": self._window,
        }


# -- decorators ------------------------------------------------------------------------

def _has_ctx_param(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "ctx" in params or any(
        p.annotation in (Context, "Context") for p in params.values()
    )


def context(fn: Callable[..., Any] | None = None, *, payload_type: Any = None) -> Any:
    """Mark ``async def fn(ctx, **kwargs)`` as a context endpoint.

    Use as ``@context`` or ``@context(payload_type=MyStruct)`` (the type of the value
    passed to ``ctx.started`` and of the stream's messages, checked on receipt).
    """
    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"@context needs an `async def`; {f.__qualname__} is not one")
        if not _has_ctx_param(f):
            raise TypeError(
                f"@context function {f.__qualname__} must take the context as a `ctx` parameter: "
                f"`async def {f.__name__}(ctx, ...)`"
            )
        f._notebook_actors_kind = "context"  # type: ignore[attr-defined]
        f._notebook_actors_payload_type = payload_type  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


def stream(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Legacy one-way streaming: ``async def fn(ctx, ...)`` calling ``ctx.send_yield(v)``.

    Raises:
        TypeError: ``fn`` has no ``ctx`` parameter.
    """
    if not _has_ctx_param(fn):
        raise TypeError(
            f"@stream function {fn.__qualname__} must take a `ctx` parameter: "
            f"`async def {fn.__name__}(ctx, ...)` and call `await ctx.send_yield(value)`"
        )
    fn._notebook_actors_kind = "stream"  # type: ignore[attr-defined]
    return fn


__all__ = ["Context", "MsgStream", "context", "stream"]
