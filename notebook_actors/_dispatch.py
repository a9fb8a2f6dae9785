"""Serving calls: what an actor does with each message its peers send.

A ``Start`` becomes a task in the actor's RPC nursery (or, for a plain sync
function, a call run right in the channel's loop); every other message goes to the
call it names. The answer is a ``Return``, or an ``Error`` boxing what went wrong,
so a caller always learns the outcome in one message.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec
import trio

from . import _hooks, _payload
from ._call import DEFAULT_WINDOW, SERVING, Call, encode_pld
from ._channel import Channel
from ._context import CURRENT_CTX, INLINE_CALL, Context, MsgStream, endpoint_kind, endpoint_types
from ._exceptions import MsgTypeError, TransportClosed, box_error
from .msg import Cancel, Error, ErrorInfo, Return, Start, payload_head

if TYPE_CHECKING:
    from ._runtime import Actor

log = logging.getLogger("notebook_actors.runtime")

#: ``_call_inline`` answered the call itself.
_DONE = object()
#: Return values that are never awaitable (no isinstance check against the ABC).
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), list, dict, tuple})
#: Code flags of ``async def`` functions and (async) generators: never run inline.
_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_GENERATOR | inspect.CO_ITERABLE_COROUTINE
#: Return values encoded straight into the reply's frame (no payload encoded apart).
_SCALARS = frozenset({int, float, str, bytes, bool, type(None)})


def _load_args(kwargs: dict[str, Any], name: str, refuse: str | None) -> dict[str, Any]:
    """A call's pickled arguments, rebuilt (``refuse``: the text of who refuses
    pickled values, for a typed-only context or actor).

    Raises:
        MsgTypeError: an argument was refused, or cannot be rebuilt here.
    """
    try:
        return _payload.load_args(kwargs, refuse)
    except msgspec.DecodeError as exc:
        raise MsgTypeError(f"the arguments of {name}: {exc}") from None


def _only_cancelled(exc: BaseException) -> bool:
    """``exc`` is trio.Cancelled, or a group of nothing but (groups of) it."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def reply_error(chan: Channel, cid: int | None, info: ErrorInfo) -> None:
    """Answer a call with an error, unless its caller is gone already."""
    if not chan.closed:
        try:
            chan.send_nowait(Error(cid, info))
        except TransportClosed:
            pass


class Dispatcher:
    """Runs the calls peers send one actor, in that actor's RPC nursery."""

    def __init__(self, actor: Actor) -> None:
        self.actor = actor
        self._nursery: trio.Nursery | None = None

    @property
    def open(self) -> bool:
        """New calls are taken (between ``serve_in`` and ``close``)."""
        return self._nursery is not None and not self.actor.cancel_called

    def serve_in(self, nursery: trio.Nursery) -> None:
        """Take calls from now on, each as a task of ``nursery``."""
        self._nursery = nursery

    def close(self) -> None:
        """Refuse new calls (the actor is shutting down)."""
        self._nursery = None

    def start_task(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` beside the calls: cancelled with them at shutdown."""
        if not self.open:
            raise RuntimeError(f"actor {self.actor.uid} is shutting down")
        self._nursery.start_soon(fn, *args)  # type: ignore[union-attr]

    def dispatch(self, chan: Channel, msg: Any) -> None:
        """Act on one message from ``chan``."""
        kind = type(msg)
        if kind is Start:
            self._start(chan, msg)
        elif kind is Cancel:
            call = chan.calls.get(msg.cid)
            if call is not None:
                call.cancel_by(chan.uid)
        elif kind is Error and msg.cid is None:
            self.actor.peer_failed(chan, msg.err)
        else:
            call = chan.calls.get(msg.cid)
            if call is not None:
                call.deliver(msg)
            else:
                log.debug("message for unknown call %s from %s dropped: %s", msg.cid, chan.uid, kind.__name__)

    def _fail(self, chan: Channel, cid: int | None, exc: BaseException, *, pickled: bool = True) -> None:
        reply_error(chan, cid, box_error(exc, self.actor.uid, pickled=pickled))

    def _start(self, chan: Channel, msg: Start) -> None:
        if msg.cid in chan.calls or chan.is_own_cid(msg.cid):
            self._fail(chan, msg.cid, ValueError(f"call id {msg.cid} is invalid or in use"))
            return
        if not self.open:
            self._fail(chan, msg.cid, RuntimeError(f"actor {self.actor.uid} is shutting down"))
            return
        pending = self._call_inline(chan, msg) if msg.kind == "call" and not msg.code else None
        if pending is _DONE:
            return
        call = Call(chan, msg.cid, "callee", f"{msg.ns}:{msg.func}", self.actor)
        Context(call)
        # made now, entered when the task runs: a Cancel in the same batch as this
        # Start (the caller gave up at once) must not find "nothing to cancel"
        call.scope = trio.CancelScope()
        chan.calls[msg.cid] = call
        self._nursery.start_soon(self._run, call, msg, pending)  # type: ignore[union-attr]

    def _call_inline(self, chan: Channel, msg: Start) -> Any:
        """Run a plain sync function right here, in the channel's dispatch loop.

        A sync function blocks this actor's event loop wherever it runs, so running it
        inline changes nothing a caller can see, and saves a task spawn and a task switch
        per call (RPC round trip 200 -> 120 µs here, with the channel's eager write).
        Returns ``_DONE`` when the call was answered; None to take the task path (async
        functions, ``self`` methods, debug mode); or the awaitable a
        sync function returned, for the task path to await. A call that names no
        function it may run is answered with its error here.
        """
        actor = self.actor
        if actor.config.debug_mode or msg.ns == "self" or actor.config.typed_only:
            return None  # (a typed-only actor checks every value on the task path)
        try:
            fn = actor.resolve(msg.ns, msg.func, None)
        except Exception as exc:  # answered here: resolving it again would log it twice
            self._fail(chan, msg.cid, exc)
            return _DONE
        if not inspect.isfunction(fn) or fn.__code__.co_flags & _ASYNC_FLAGS or endpoint_kind(fn):
            return None
        token = INLINE_CALL.set([chan, msg, self.actor, None])  # for current_ipc_ctx()
        try:
            kwargs = _load_args(msg.kwargs, f"{msg.ns}:{msg.func}", None) if msg.pickled else msg.kwargs
            result = fn(**kwargs)
            del kwargs  # a received segment is released once the call's values die
        except Exception as exc:
            self._fail(chan, msg.cid, exc)
            return _DONE
        except BaseException as exc:  # KeyboardInterrupt, SystemExit in user code
            self._fail(chan, msg.cid, exc)
            if not isinstance(exc, (SystemExit, GeneratorExit)):
                raise
            return _DONE
        finally:
            INLINE_CALL.reset(token)
        if type(result) not in _PLAIN and inspect.isawaitable(result):
            return result
        if chan.closed:
            return _DONE
        if type(result) in _SCALARS and self._reply_in_place(chan, msg.cid, result):
            return _DONE
        try:
            pld = encode_pld(result, f"the return value of {msg.ns}:{msg.func}")
        except TypeError as exc:
            self._fail(chan, msg.cid, exc)
        else:
            if not chan.closed:
                chan.send_nowait(Return(msg.cid, pld))
        return _DONE

    @staticmethod
    def _reply_in_place(chan: Channel, cid: int, result: Any) -> bool:
        """Send a scalar result as the Return's payload, encoded in the frame itself;
        False if it does not encode (an int past 64 bits: the general path pickles it)."""
        try:
            chan.send_prefixed_nowait(payload_head("return", cid), result)
        except (TypeError, ValueError, OverflowError):
            return False
        return True

    async def _run(self, call: Call, msg: Start, pending: Any = None) -> None:
        chan = call.chan
        token = CURRENT_CTX.set(call.context)
        serving = SERVING.set(call)
        try:
            with call.scope or trio.CancelScope() as scope:
                call.scope = scope
                result = await (pending if pending is not None else self._invoke(call, msg))
            if scope.cancelled_caught:
                self._reply_cancelled(call)
            elif not chan.closed:
                try:
                    pld = encode_pld(result, f"the return value of {call.fn_name}")
                    call.check_typed(pld, result, f"the return value of {call.fn_name}")
                except TypeError as exc:
                    self._fail(chan, call.cid, exc)
                else:
                    chan.send_nowait(Return(call.cid, pld))
        except BaseException as exc:
            if _only_cancelled(exc):  # a nursery in the function wraps it in a group
                self._reply_cancelled(call)
                raise
            if isinstance(exc, Exception):
                if self.actor.config.debug_mode:
                    await _hooks.crashed_in_debug_mode(exc)
                self._fail(chan, call.cid, exc, pickled=call.refuse is None)
            else:  # KeyboardInterrupt, SystemExit in user code
                self._fail(chan, call.cid, exc, pickled=call.refuse is None)
                if not isinstance(exc, (SystemExit, GeneratorExit)):
                    raise
        finally:
            SERVING.reset(serving)
            CURRENT_CTX.reset(token)
            call.forget()

    def _reply_cancelled(self, call: Call) -> None:
        me = self.actor.uid
        canceller = call.canceller or self.actor.cancelled_by or me
        exc = trio.Cancelled.__new__(trio.Cancelled)  # only for its type name in the box
        info = box_error(exc, me, canceller=canceller)
        if tuple(canceller) == tuple(me) and call.canceller is not None:
            when = "" if call.started else " before calling ctx.started()"
            info.message = f"{call.fn_name} in actor {me} cancelled itself (ctx.cancel()){when}"
        else:
            info.message = f"{call.fn_name} in actor {me} was cancelled by actor {canceller}"
        info.tb_str = "".join(traceback.format_stack(limit=4))
        reply_error(call.chan, call.cid, info)

    async def _invoke(self, call: Call, msg: Start) -> Any:
        if msg.ns == "self" and msg.func == "cancel":
            # remember who asked: every call this cancels names them as its canceller
            self.actor.cancel_soon(by=call.chan.uid)
            return True
        fn = self.actor.resolve(msg.ns, msg.func, msg.code)
        kind = endpoint_kind(fn)
        name = call.fn_name
        ctx = call.context
        if kind == "context":
            # the function's own typing (@context(payload_type, typed_only)) first: a
            # typed-only context refuses pickled arguments too
            call.expect(*endpoint_types(fn))
        # a local, not on the message: a received segment is released once the call's
        # values die, while the message lives on until the channel's next batch
        kwargs = _load_args(msg.kwargs, name, call.refuse) if msg.pickled else msg.kwargs
        if msg.kind == "call":
            if kind or inspect.isasyncgenfunction(fn):
                use = "open_context" if kind == "context" else "open_stream_from"
                raise TypeError(f"{name} is a streaming function: call it with portal.{use}(...)")
            result = fn(**kwargs)
            if inspect.isawaitable(result):
                result = await result
            return result
        if msg.kind == "context":
            if kind != "context":
                raise TypeError(f"{name} is not a @context function: decorate it with @notebook_actors.context")
            result = await fn(ctx, **kwargs)
            if not call.started:
                raise RuntimeError(f"context function {name} returned without calling `await ctx.started()`")
            return result
        if msg.kind == "stream":
            call.grant_start_credit(msg.credit, msg.credit_bytes)
            stream = MsgStream(call, window=DEFAULT_WINDOW)
            if inspect.isasyncgenfunction(fn):
                agen = fn(**kwargs)
                try:
                    async for value in agen:
                        await stream.send(value)
                finally:
                    with trio.CancelScope(shield=True):
                        await agen.aclose()
            elif kind == "stream":
                await fn(ctx=ctx, **kwargs)
            else:
                raise TypeError(f"{name} is neither an async generator nor a @stream function")
            call.stop_nowait()
            await trio.lowlevel.checkpoint()
            return None
        raise ValueError(f"unknown call kind {msg.kind!r}")
