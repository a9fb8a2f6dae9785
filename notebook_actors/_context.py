"""Contexts and message streams: the public faces of one call between two actors.

One :class:`Context` exists on each side of a call; it and the call's
:class:`MsgStream` work on the call's shared state (:class:`~notebook_actors._call.Call`,
where messages arrive and credit is kept) through its methods.

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
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from . import _payload
from ._call import (
    DEFAULT_WINDOW,
    DEFAULT_WINDOW_BYTES,
    Call,
    encode_pld,
    unencodable,
)
from ._exceptions import StreamOverrun, TransportClosed, unbox
from .msg import Error, Return, Started, Yield, payload_head

#: the Context of the running task: the callee's RPC task, or a caller's open_context block
CURRENT_CTX: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "notebook_actors.current_ipc_ctx", default=None
)


#: a plain sync function the runtime runs inline (no task, no call state):
#: ``[channel, start message, actor, context or None]``; its Context is made only if
#: the function asks for it (:func:`current_ipc_ctx`), so the fast path stays fast
INLINE_CALL: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "notebook_actors.inline_call", default=None
)


def _inline_context() -> Context | None:
    pending = INLINE_CALL.get()
    if pending is None:
        return None
    if pending[3] is None:
        chan, msg, actor = pending[:3]
        pending[3] = Context(Call(chan, msg.cid, "callee", f"{msg.ns}:{msg.func}", actor))
    ctx: Context = pending[3]
    return ctx


def current_ipc_ctx(error_on_not_set: bool = False) -> Context | None:
    """The :class:`Context` of the running task (tractor's ``current_ipc_ctx``).

    Inside a ``@context`` function (or any function called through ``portal.run``,
    async or sync) it is that call's context; inside a caller's ``open_context``
    block, that block's context. Elsewhere None.

    Raises:
        RuntimeError: no context here and ``error_on_not_set`` is true.
    """
    ctx = CURRENT_CTX.get() or _inline_context()
    if ctx is None and error_on_not_set:
        raise RuntimeError(
            "no IPC context in this task: current_ipc_ctx() works inside a function called by "
            "another actor, or inside `async with portal.open_context(...)`"
        )
    return ctx


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
    """

    def __init__(self, call: Call) -> None:
        self._call = call
        call.context = self

    @property
    def chan(self) -> Any:
        """The channel to the other actor."""
        return self._call.chan

    @property
    def cid(self) -> int:
        """This call's id on its channel."""
        return self._call.cid

    @property
    def side(self) -> str:
        """``"caller"`` or ``"callee"``."""
        return self._call.side

    @property
    def fn_name(self) -> str:
        """``"module:function"`` of the called function."""
        return self._call.fn_name

    @property
    def cancel_called(self) -> bool:
        """This side asked for the cancellation (``await ctx.cancel()``)."""
        return self._call.cancel_called

    def __repr__(self) -> str:
        return f"<Context {self.side} cid={self.cid} fn={self.fn_name} peer={self.chan.uid}>"

    @property
    def canceller(self) -> tuple[str, str] | None:
        """The uid of the actor that cancelled this context, or None."""
        call = self._call
        if call.side == "callee":
            return call.canceller
        final = call.final
        if type(final) is Error and final.err.canceller:
            return tuple(final.err.canceller)  # type: ignore[return-value]
        return call.my_uid() if call.cancel_called else None

    async def started(self, value: Any = None) -> None:
        """Tell the caller the context is up, handing it ``value`` (once only).

        The caller's ``open_context`` is blocked until this is called.

        Raises:
            RuntimeError: called twice, or on the caller's side.
            TypeError: ``value`` cannot be encoded (raised here, in the sender).
        """
        call = self._call
        if call.side != "callee":
            raise RuntimeError("started() is called by the context function, not by its caller")
        if call.started:
            raise RuntimeError(f"ctx.started() was already called in {call.fn_name!r}: call it once")
        pld = encode_pld(value, "the value passed to ctx.started()")
        call.check_typed(pld, value, "the value passed to ctx.started()")
        call.started = True
        call.chan.send_nowait(Started(call.cid, pld))
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
        call = self._call
        if call.cancel_called:
            raise call.cancelled_here()
        if call.side == "callee" and not call.started:
            raise RuntimeError(f"open_stream() before started() in {call.fn_name!r}: call `await ctx.started()` first")
        if call.stream_opened:
            if call.stream is None:
                raise RuntimeError(
                    f"ctx.result() of {call.fn_name!r} was awaited before this side opened its stream, "
                    "so its stream messages were dropped: open the stream first, then await the result"
                )
            raise RuntimeError(f"the stream of {call.fn_name!r} was already opened (one per context)")
        if msg_buffer_size is not None and msg_buffer_size < 1:
            raise ValueError(f"msg_buffer_size must be at least 1, not {msg_buffer_size}")
        if buffer_bytes is not None and buffer_bytes < 1:
            raise ValueError(f"buffer_bytes must be at least 1, not {buffer_bytes}")
        call.stream_opened = True
        stream = MsgStream(
            call,
            window=msg_buffer_size or call.default_window(),
            backpressure=backpressure,
            allow_overruns=allow_overruns,
            msg_type=msg_type if msg_type is not None else call.payload_type,
            window_bytes=buffer_bytes or DEFAULT_WINDOW_BYTES,
        )
        return _stream_cm(call, stream)

    async def cancel(self) -> None:
        """Cancel the context: the other side sees ContextCancelled naming us.

        On the caller side this asks the callee to stop and returns; ``result()`` then
        returns None (our own cancel is not an error). On the callee side it cancels
        the context function itself.
        """
        call = self._call
        if call.side == "caller":
            call.request_cancel()
        else:
            call.cancel_called = True
            call.cancel_by(call.my_uid())
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
        call = self._call
        if call.side != "caller":
            raise RuntimeError(f"ctx.result() is for the caller of {call.fn_name!r}; the callee returns it")
        if not call.stream_opened:
            # nobody will read the far end's stream: let it send without waiting for a
            # reader (its messages are dropped as they arrive) rather than stopping it,
            # so a callee that streams then returns gives its result (tractor's rule)
            call.stream_opened = call.draining = True
            call.grant_unlimited()
        elif call.stream_closed:
            call.stop_nowait()  # owed if our stream block was left by an error
        await call.wait_final("the wait for the result")
        return call.final_value()

    @property
    def typed_only(self) -> bool:
        """Whether this side refuses pickled values (``@context(typed_only=True)``)."""
        return self._call.refuse is not None

    # -- legacy @stream support --
    async def send_yield(self, value: Any) -> None:
        """Send one value to the caller of a legacy ``@stream`` function."""
        stream = self._call.stream or MsgStream(self._call, window=DEFAULT_WINDOW, backpressure=True)
        await stream.send(value)


@asynccontextmanager
async def _stream_cm(call: Call, stream: MsgStream) -> AsyncIterator[MsgStream]:
    call.grant_window()
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
        call.close_stream()
        raise
    await stream.aclose()


def _only_peer_closed(exc: BaseException, stream: MsgStream) -> bool:
    """``exc`` is (a group of nothing but) this stream's own peer-closed error."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_peer_closed(e, stream) for e in exc.exceptions)
    return isinstance(exc, _PeerClosed) and exc.stream is stream


class MsgStream(trio.abc.Channel[Any]):
    """A two-way stream of messages inside a context (built by the runtime).

    ``send``/``receive``/``async for``/``aclose``. Receiving after the other side
    closed ends iteration; sending after it closed raises
    :class:`trio.BrokenResourceError`; sending on a stream this side closed raises
    :class:`trio.ClosedResourceError`.
    """

    def __init__(
        self,
        call: Call,
        *,
        window: int,
        backpressure: bool = True,
        allow_overruns: bool = False,
        msg_type: Any = None,
        window_bytes: int = DEFAULT_WINDOW_BYTES,
        receive_only: bool = False,
    ) -> None:
        self._call = call
        self._window = window
        self._backpressure = backpressure
        self._msg_type = msg_type
        self._decoder = _payload.decoder_for(msg_type)
        self._head = payload_head("yield", call.cid)
        self._broadcaster: Any = None
        self._receive_only = receive_only
        self.received = 0
        self.sent = 0
        call.open_window(window, window_bytes, allow_overruns)
        call.stream = self

    def __repr__(self) -> str:
        return f"<MsgStream {self._call.fn_name!r} with {self._call.chan.uid}>"

    @property
    def ctx(self) -> Context:
        """The context this stream belongs to."""
        ctx = self._call.context
        assert ctx is not None
        return ctx

    @property
    def closed(self) -> bool:
        """This side closed the stream (``aclose()``, or its block was left)."""
        return self._call.stream_closed

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
        call = self._call
        # a cancelled send sends nothing: check first, send, then only a shielded yield
        await trio.lowlevel.checkpoint_if_cancelled()
        if call.refuse is not None:
            call.check_typed(encode_pld(value, "a stream message"), value, "a stream message")
        if (
            call.credit <= 0
            or call.credit_bytes <= 0
            or call.stream_closed
            or call.peer_stopped
            or call.final is not None
            or call.rejected is not None
        ):
            await self._wait_to_send()
        try:
            try:
                nbytes = call.chan.send_prefixed_nowait(self._head, value)
            except (TypeError, OverflowError) as exc:
                if isinstance(exc, _payload.Unpicklable):
                    raise
                # msgpack refused the value as a whole (an int over 64 bits, a dict with
                # tuple keys): it travels as one pickle
                nbytes = call.chan.send_prefixed_nowait(self._head, _payload.whole(value))
        except (TypeError, ValueError, OverflowError) as exc:
            raise unencodable(value, "a stream message", exc) from None
        call.spend_credit(nbytes)
        self.sent += 1
        if nbytes >= _payload.OOB_MIN:
            await call.chan.wait_sent()  # large buffers read from the caller's memory have left
            # and let the writer take the frame now: a producer of large values that ran
            # 64 sends ahead would hold a window of segments before the reader saw one
            await trio.lowlevel.cancel_shielded_checkpoint()
        elif not self.sent & 63:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def _wait_to_send(self) -> None:
        """The slow path of ``send``: raise why we cannot send, or wait for credit."""
        call = self._call
        while True:
            self._check_can_send()
            if call.has_credit():
                return
            if call.credit_known and not self._backpressure:
                if call.credit > 0:
                    raise StreamOverrun(
                        f"actor {call.chan.uid} has a full byte window of unread messages of {call.fn_name!r} "
                        "buffered (its buffer_bytes): open the stream with backpressure=True to wait, "
                        "or have the peer read faster / use a bigger buffer_bytes"
                    )
                raise StreamOverrun(
                    f"actor {call.chan.uid} has {call.peer_window} unread messages of {call.fn_name!r} "
                    "buffered (its msg_buffer_size): open the stream with backpressure=True to wait, "
                    "or have the peer read faster / use a bigger msg_buffer_size"
                )
            await call.credit_lot.park()

    def _check_can_send(self) -> None:
        call = self._call
        if self._receive_only:
            raise TypeError(
                f"the stream from {call.fn_name!r} is receive-only (portal.open_stream_from); "
                "for a two-way stream use a @context with portal.open_context() and ctx.open_stream()"
            )
        if call.stream_closed:
            raise trio.ClosedResourceError(
                f"this side closed the stream of {call.fn_name!r}; sending on it is an error"
            )
        if call.rejected is not None:
            rejected, call.rejected = call.rejected, None
            raise rejected
        final = call.final
        if type(final) is Error:
            err = unbox(final.err)
            if call.is_own_cancel(err):
                raise trio.ClosedResourceError(f"this side cancelled the context {call.fn_name!r}: sending ended")
            raise err
        if call.peer_stopped or final is not None:
            raise _PeerClosed(
                f"actor {call.chan.uid} closed its end of the stream {call.fn_name!r} and reads no more; "
                "leaving the `open_stream` block on this error is a clean end",
                self,
            )
        if call.chan.closed:
            raise call.transport_closed("the stream") from call.chan.close_reason

    # -- receiving --
    def receive_nowait(self) -> Any:
        """A buffered message, or ``trio.WouldBlock``."""
        call = self._call
        inbox = call.inbox
        if inbox and type(inbox[0]) is Yield:
            msg = inbox.popleft()
            self._consume(msg)
            try:
                return _payload.decode(msg.pld, self._decoder, call.refuse, once=True)
            except msgspec.DecodeError as exc:
                raise call.reject(exc, f"stream message #{self.received}", self._msg_type) from None
        self._raise_if_ended()
        if inbox and type(inbox[0]) is Yield:
            return self.receive_nowait()
        raise trio.WouldBlock

    def _consume(self, msg: Any) -> None:
        self.received += 1
        self._call.consume(msg)

    def _raise_if_ended(self) -> None:
        """Raise why this stream has nothing more to give; return if a message is next
        or one may still come (without an exception: this runs before every wait)."""
        call = self._call
        inbox = call.inbox
        while inbox:
            msg = inbox[0]
            kind = type(msg)
            if kind is Yield:
                return
            if kind is Error:
                err = unbox(msg.err)
                if call.is_own_cancel(err):
                    raise trio.EndOfChannel
                raise err
            if kind is Return:
                raise trio.EndOfChannel
            inbox.popleft()  # a stray Started: nothing to do with the stream
        if call.stream_closed:
            raise trio.ClosedResourceError(f"this side closed the stream of {call.fn_name!r}")
        if call.peer_stopped:
            raise trio.EndOfChannel
        if call.chan.closed:
            raise call.transport_closed("the stream") from call.chan.close_reason

    async def _receive_direct(self) -> Any:
        # Like trio's memory channels: a cancelled receive never takes a message
        # (check first, then take, then only a cancel-shielded yield).
        await trio.lowlevel.checkpoint_if_cancelled()
        call = self._call
        inbox = call.inbox
        while not (inbox and type(inbox[0]) is Yield):
            try:
                self._raise_if_ended()
            except TransportClosed:
                await call.raise_closed("the stream")  # the crash behind it, if any
            if not inbox:
                await call.chan.wait_for(call)
        # receive_nowait's fast path, inlined: this runs once per message
        msg = inbox.popleft()
        self._consume(msg)
        if not self.received & 63:
            await trio.lowlevel.cancel_shielded_checkpoint()
        try:
            return _payload.decode(msg.pld, self._decoder, call.refuse, once=True)
        except msgspec.DecodeError as exc:
            raise call.reject(exc, f"stream message #{self.received}", self._msg_type) from None

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
        call = self._call
        if not call.stream_closed:
            call.close_stream()
            call.stop_nowait()
            call.wake()
        await trio.lowlevel.checkpoint()

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
                self._receive_direct, max_buffer_size=self._window, what=f"stream {self._call.fn_name!r}"
            )
        return self._broadcaster.subscribe()

    def statistics(self) -> dict[str, int]:
        """Counters: messages sent/received, buffered here, send credit, window."""
        return {
            "sent": self.sent,
            "received": self.received,
            "buffered": sum(1 for m in self._call.inbox if type(m) is Yield),
            "send_credit": self._call.credit,
            "window": self._window,
        }


# -- decorators ------------------------------------------------------------------------

#: the attributes our decorators mark an endpoint function with (read by the runtime
#: through endpoint_kind / endpoint_types, on both sides of a call)
_KIND, _PAYLOAD_TYPE, _TYPED_ONLY = (
    "_notebook_actors_kind",
    "_notebook_actors_payload_type",
    "_notebook_actors_typed_only",
)


def _mark(fn: Callable[..., Any], kind: str, payload_type: Any = None, typed_only: bool = False) -> None:
    setattr(fn, _KIND, kind)
    setattr(fn, _PAYLOAD_TYPE, payload_type)
    setattr(fn, _TYPED_ONLY, typed_only)


def endpoint_kind(fn: Any) -> str | None:
    """``"context"`` or ``"stream"`` for a function marked by our decorators, else None."""
    return getattr(fn, _KIND, None)


def endpoint_types(fn: Any) -> tuple[Any, bool]:
    """The ``payload_type`` and ``typed_only`` a ``@context`` endpoint declared."""
    return getattr(fn, _PAYLOAD_TYPE, None), getattr(fn, _TYPED_ONLY, False)


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
            # a new function carries the types, so ``context(typed_only=True)(fn)``
            # leaves ``fn`` as it was (``__wrapped__`` is the original)
            @functools.wraps(f)
            async def endpoint(*args: Any, **kwargs: Any) -> Any:
                return await f(*args, **kwargs)

        _mark(endpoint, "context", payload_type, typed_only)
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
    _mark(fn, "stream")
    return fn


__all__ = ["Context", "MsgStream", "context", "current_ipc_ctx", "stream"]
