"""The state of one call between two actors, shared by everything that works on it.

One :class:`Call` exists on each side of a call (``side`` is ``"caller"`` or
``"callee"``). Its channel's dispatch loop hands it the call's messages
(:meth:`Call.deliver`, never blocking); the public faces work on it through its
methods: :class:`~notebook_actors.Context` (what a ``@context`` function and an
``open_context`` block see), :class:`~notebook_actors.MsgStream` (the call's
stream), :class:`~notebook_actors.Portal` (the caller's side) and the actor's RPC
dispatcher (the callee's side). Like trio's memory channels, the two ends share one
state object, and no end reaches into another's fields.

Flow control is credit-based: a receiver grants its peer a window of messages (and
bytes) when it opens its stream and returns credit as it consumes, so its buffer
never grows past the window. The sending credit the peer granted lives here too.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from typing import TYPE_CHECKING, Any, NoReturn

import msgspec
import trio

from . import _codec, _payload
from ._exceptions import ContextCancelled, MsgTypeError, RemoteActorError, TransportClosed, unbox
from .msg import Cancel, Credit, Error, ErrorInfo, Reject, Return, Started, Stop, Yield

if TYPE_CHECKING:
    from ._channel import Channel
    from ._context import Context, MsgStream

log = logging.getLogger("notebook_actors.context")

#: Messages a receiver buffers by default (the credit it grants its sender).
DEFAULT_WINDOW = 512
#: Payload bytes a receiver buffers by default (the byte credit it grants).
DEFAULT_WINDOW_BYTES = 64 * 1024 * 1024
#: Credit granted by a receiver that opened its stream with ``allow_overruns=True``.
UNLIMITED = 1 << 62
#: How long leaving a call waits for the far end to confirm a cancel.
CANCEL_ACK_TIMEOUT = 2.0

#: the call the running task serves as the callee (set where an RPC runs; inherited
#: by the tasks it starts): the debugger's ``q`` cancels it
SERVING: contextvars.ContextVar[Call | None] = contextvars.ContextVar("notebook_actors.serving", default=None)


def encode_pld(value: Any, what: str, root: str = "value") -> Any:
    """Encode a payload (msgpack, pickling what msgpack cannot encode), or raise
    TypeError saying what could not travel, where it sits (``root`` names the value
    in that path) and why."""
    try:
        pld = _payload.pack(value)
        _codec.check_payload_size(pld)
    except (TypeError, ValueError, OverflowError) as exc:
        raise unencodable(value, what, exc, root) from None
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
        raise unencodable(kwargs, what, exc, "kwargs") from None
    return packed, pickled


def unencodable(value: Any, what: str, exc: BaseException, root: str = "value") -> TypeError:
    """The TypeError for a value that cannot be sent, saying where and why."""
    if isinstance(exc, _payload.Unpicklable):
        where = _payload.describe_unpicklable(value, root)
        return TypeError(f"{what} of type {type(value).__name__} cannot be sent to another actor: {where}")
    return TypeError(f"{what} of type {type(value).__name__} cannot be sent to another actor: {exc}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or repr(tp)


class Call:
    """One side of one call: its inbox, its final message, both credit windows, its
    cancel scope and canceller, and its stream's flags. Internal to the runtime."""

    # Defaults of the per-call state, as class attributes: a call sets only what it
    # changes (every RPC makes two of these, one per side; immutable values only here).
    context: Context | None = None  # the public face, set by Context itself
    final: Any = None  # the Return or Error that ended the call
    cancel_called = False  # this side asked for the cancel
    # caller side: the open_context body, interrupted when the far end fails
    body_scope: trio.CancelScope | None = None
    # callee side: the RPC task's scope (made before the task runs) and who cancelled it
    scope: trio.CancelScope | None = None
    canceller: tuple[str, str] | None = None
    started = False
    # this side's stream
    stream: MsgStream | None = None
    stream_opened = False
    stream_closed = False
    receive_only = False
    draining = False  # the caller awaited result() without a stream: drop Yields
    peer_stopped = False
    stop_sent = False
    rejected: MsgTypeError | None = None  # the peer refused one of our messages
    payload_type: Any = None
    refuse: str | None = None  # typed-only: why pickled values are refused
    # sending credit (granted by the peer's receiver)
    credit = 0
    credit_bytes = 0
    credit_known = False
    peer_window = 0
    # receiving window (granted by us when our stream opens)
    window = DEFAULT_WINDOW
    window_bytes = DEFAULT_WINDOW_BYTES
    unlimited_window = False
    _credit_batch = 64
    _bytes_batch = DEFAULT_WINDOW_BYTES // 4
    _consumed = 0
    _consumed_bytes = 0
    # the two parking lots, made on first wait: most calls end before anyone waits
    _arrived: trio.lowlevel.ParkingLot | None = None
    _credit_lot: trio.lowlevel.ParkingLot | None = None

    def __init__(self, chan: Channel, cid: int, side: str, fn_name: str, actor: Any = None) -> None:
        self.chan = chan
        self.cid = cid
        self.side = side
        self.fn_name = fn_name
        self.inbox: deque[Any] = deque()
        self.actor: Any = actor
        if actor is not None and actor.config.typed_only:
            self.bind_actor(actor)

    @property
    def arrived(self) -> trio.lowlevel.ParkingLot:
        """Where tasks wait for this call's next message."""
        if self._arrived is None:
            self._arrived = trio.lowlevel.ParkingLot()
        return self._arrived

    @property
    def credit_lot(self) -> trio.lowlevel.ParkingLot:
        """Where senders wait for more credit."""
        if self._credit_lot is None:
            self._credit_lot = trio.lowlevel.ParkingLot()
        return self._credit_lot

    def __repr__(self) -> str:
        return f"<Call {self.side} cid={self.cid} fn={self.fn_name} peer={self.chan.uid}>"

    # -- from the channel's dispatch loop (synchronous) --
    def deliver(self, msg: Any) -> None:
        """Take one message of this call from the channel (never blocks)."""
        kind = type(msg)
        if kind is Yield:
            if self.draining or self.stream_closed:
                return  # we closed our end, or only wait for the result: nobody will read it
            self.inbox.append(msg)
            if self._arrived:
                self._arrived.unpark_all()
            return
        if kind is Credit:
            self._add_credit(msg)
        elif kind is Stop:
            self.peer_stopped = True
        elif kind is Reject:
            self.rejected = MsgTypeError(
                f"actor {self.chan.uid} rejected a message sent on {self.fn_name!r}: {msg.err.message}"
            )
            log.warning("%s", self.rejected)
        else:
            if kind is Return or kind is Error:
                if kind is Error and self.refuse is not None:
                    msg.err.exc = None  # a typed-only side never unpickles an error's exception
                self.final = msg
                if kind is Error and self.body_scope is not None and not self.cancel_called:
                    self.body_scope.cancel()  # the far end failed or cancelled: stop waiting on it
            self.inbox.append(msg)
        self.wake()

    def _add_credit(self, msg: Credit) -> None:
        if msg.n <= 0:
            return  # nonsense from a broken peer: granting nothing changes nothing
        if not self.credit_known:
            self.peer_window = msg.n
            self.credit_bytes = msg.nbytes or UNLIMITED  # 0: the peer counts messages only
        else:
            self.credit_bytes += msg.nbytes
        self.credit += msg.n
        self.credit_known = True

    def wake(self) -> None:
        """Wake every task waiting on this call (a message came, the channel closed)."""
        if self._arrived:
            self._arrived.unpark_all()
        if self._credit_lot:
            self._credit_lot.unpark_all()

    def cancel_by(self, uid: Any) -> None:
        """Cancel the callee's RPC task on behalf of the actor ``uid`` (its caller, the
        caller's channel closing, or this actor's debugger)."""
        if self.side == "callee" and self.scope is not None:
            self.canceller = uid
            self.scope.cancel()

    def grant_start_credit(self, n: int, nbytes: int) -> None:
        """The sending credit a one-way stream's caller granted in its Start."""
        self.credit, self.credit_known = n, True
        self.credit_bytes = nbytes or UNLIMITED

    # -- waiting --
    async def next(self) -> Any:
        """The next message of this call; ActorCrashed (with the exit code or signal)
        if the channel died with the actor, else TransportClosed."""
        while not self.inbox:
            if self.chan.closed:
                await self.raise_closed("the call")
            await self.chan.wait_for(self)
        return self.inbox.popleft()

    def transport_closed(self, during: str) -> TransportClosed:
        return TransportClosed(
            f"the channel to actor {self.chan.uid} closed during {during} of {self.fn_name!r}; "
            "the actor probably died (see its exit code / the nursery's error)"
        )

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
            crash: BaseException | None = await child.crash_report(actor, during)
            return crash
        parent = self.chan.peer_parent_addr
        if not parent or parent == actor.addr:
            return None
        return await actor.how_child_ended(parent, uid, during)

    async def raise_closed(self, during: str) -> NoReturn:
        """Raise why the channel under this call closed: ActorCrashed with the exit code
        or signal when the far actor died, else TransportClosed."""
        crash = await self._crash_of_peer()
        if crash is not None:
            raise crash from None
        raise self.transport_closed(during) from self.chan.close_reason

    async def wait_started(self) -> Any:
        """The value the callee passed to ``started()`` (decoded and type-checked)."""
        msg = await self.next()
        if type(msg) is Error:
            raise unbox(msg.err)
        if type(msg) is not Started:
            raise RuntimeError(f"{self.fn_name} returned without calling ctx.started()")
        try:
            return _payload.decode(msg.pld, _payload.decoder_for(self.payload_type), self.refuse)
        except msgspec.DecodeError as exc:
            raise self.reject(exc, "the value passed to ctx.started()", self.payload_type) from None

    async def wait_final(self, during: str) -> None:
        """Wait until the far end's Return or Error arrived, dropping unread stream
        messages meanwhile (their credit goes back, so a finite sender is not stuck)."""
        while self.final is None:
            self.drop_unread()
            if self.final is not None:
                break
            if self.chan.closed:
                await self.raise_closed(during)
            await self.arrived.park()

    # -- the end of the call --
    def final_value(self) -> Any:
        """The far end's return value; its error raised (None for our own cancel)."""
        msg = self.final
        if type(msg) is Return:
            return self.decode_result(msg.pld)
        err = unbox(msg.err)
        if self.is_own_cancel(err):
            return None
        raise err

    def final_error(self) -> RemoteActorError | None:
        """The far end's error, unless it is our own cancel coming back."""
        if type(self.final) is not Error:
            return None
        err = unbox(self.final.err)
        return None if self.is_own_cancel(err) else err

    def note_far_end_error(self, exc: BaseException) -> None:
        """Add the far end's own, different failure to ``exc`` as a note."""
        err = self.final_error()
        if err is None or (isinstance(exc, RemoteActorError) and exc.info is self.final.err):
            return
        if isinstance(exc, RemoteActorError) and exc.info.tb_str == err.info.tb_str:
            return
        exc.add_note(
            f"meanwhile {self.fn_name!r} in actor {self.chan.uid} ended with {err.type_name}: {err.info.message}"
        )

    def decode_result(self, pld: Any) -> Any:
        """The far end's return value.

        Raises:
            MsgTypeError: it cannot be rebuilt here, or it was pickled and this side
                accepts typed values only.
        """
        try:
            return _payload.decode(pld, refuse=self.refuse)
        except msgspec.DecodeError as exc:
            raise MsgTypeError(f"the return value of {self.fn_name!r} from actor {self.chan.uid}: {exc}") from None

    def is_own_cancel(self, err: BaseException) -> bool:
        return isinstance(err, ContextCancelled) and self.cancel_called and err.canceller == self.my_uid()

    def cancelled_here(self) -> ContextCancelled:
        """The ContextCancelled for using a call this side already cancelled."""
        uid = self.my_uid()
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

    def request_cancel(self) -> None:
        """Caller side: ask the far end to stop (no wait)."""
        self.cancel_called = True
        if self.final is None and not self.chan.closed:
            self.chan.send_nowait(Cancel(self.cid))

    async def cancel_and_wait(self, timeout: float = CANCEL_ACK_TIMEOUT) -> None:
        """Cancel the far end if it still runs and wait (shielded, bounded) for its end."""
        with trio.CancelScope(shield=True):
            try:
                if self.final is None and not self.chan.closed:
                    self.request_cancel()
                    with trio.move_on_after(timeout):
                        while self.final is None and not self.chan.closed:
                            await self.arrived.park()
            except TransportClosed:
                pass
            finally:
                self.forget()

    async def cancel_if_it_streams_unread(self) -> None:
        """At the end of the caller's block: if this side never opened its stream, wait
        until the callee either returns or opens its own stream; in the second case
        cancel it (nobody will ever read what it sends, or send what it waits for)."""
        if self.side != "caller" or self.stream_opened:
            return
        while self.final is None and not self.credit_known and not self.chan.closed:
            await self.arrived.park()  # Started came; Credit (its open_stream) or the end follows
        if self.final is None and self.credit_known and not self.chan.closed:
            self.request_cancel()
            await trio.lowlevel.checkpoint()

    def forget(self) -> None:
        """Drop this call from its channel: later messages for it are ignored."""
        self.chan.calls.pop(self.cid, None)

    # -- typed values --
    def bind_actor(self, actor: Any) -> None:
        """Bind the actor this side runs in: a typed-only actor's every call refuses
        pickled values (a typed-only context function still says so by its own name)."""
        self.actor = actor
        if actor is not None and actor.config.typed_only:
            self.refuse = f"actor {actor.name!r} accepts typed values only (typed_only=True)"

    def expect(self, payload_type: Any, typed_only: bool) -> None:
        """Apply a ``@context(payload_type=..., typed_only=...)`` endpoint's types."""
        self.payload_type = payload_type
        if typed_only:
            self.refuse = f"{self.fn_name!r} accepts typed values only (typed_only=True)"

    def check_typed(self, pld: Any, value: Any, what: str) -> None:
        """Refuse to send a pickled value from a typed-only side."""
        if self.refuse is not None and _payload.is_pickled(pld):
            raise TypeError(f"{what} of type {type(value).__name__} would travel pickled, and {self.refuse}")

    def check_typed_args(self, kwargs: dict[str, Any], pickled: int, what: str) -> None:
        """Refuse to send a call's pickled arguments from a typed-only side."""
        if self.refuse is None or not pickled:
            return
        for key, value in kwargs.items():
            if _payload.is_pickled(_payload.pack(value)):
                raise TypeError(
                    f"{what}: kwargs[{key!r}] of type {type(value).__name__} would travel pickled, and {self.refuse}"
                )

    def reject(self, exc: Exception, what: str, tp: Any) -> MsgTypeError:
        """Build the MsgTypeError for a payload that does not match ``tp``, and tell the sender."""
        if isinstance(exc, _payload.PickleRefused):
            problem = "was refused"
        elif isinstance(exc, msgspec.ValidationError):
            problem = f"does not match {_type_name(tp)}"
        else:
            problem = "cannot be decoded" if tp is None else f"cannot be decoded as {_type_name(tp)}"
        err = MsgTypeError(f"{what} from actor {self.chan.uid} on {self.fn_name!r} {problem}: {exc}")
        uid = self.my_uid()
        info = ErrorInfo(
            "MsgTypeError", MsgTypeError.__module__, f"{what} {problem}: {exc}", "", uid, [uid] if uid else []
        )
        self._send_quietly(Reject(self.cid, info))
        return err

    def my_uid(self) -> Any:
        from ._state import current_actor_or_none

        actor = self.actor or current_actor_or_none()
        return actor.uid if actor else None

    def default_window(self) -> int:
        """This actor's ``msg_buffer_size`` (tractor's ``Actor.msg_buffer_size``)."""
        from ._state import current_actor_or_none

        actor = self.actor or current_actor_or_none()
        return getattr(actor, "msg_buffer_size", DEFAULT_WINDOW) or DEFAULT_WINDOW

    # -- the receiving window --
    def open_window(self, window: int, window_bytes: int, unlimited: bool) -> None:
        """Record this side's receive window as its stream opens (granted by :meth:`grant_window`)."""
        self.window, self.window_bytes, self.unlimited_window = window, window_bytes, unlimited
        self._credit_batch = max(1, min(window // 2, 64))
        self._bytes_batch = max(1, window_bytes // 4)

    def grant_window(self) -> None:
        """Grant the peer our whole receive window (when our stream opens)."""
        if self.unlimited_window:
            self._grant(UNLIMITED, UNLIMITED)
        else:
            self._grant(self.window, self.window_bytes)

    def grant_unlimited(self) -> None:
        self._grant(UNLIMITED, 0)

    def consume(self, msg: Any) -> None:
        """Count a message taken by our reader; return credit in batches (or at once
        when its bytes reach a quarter of the byte window)."""
        self._consumed += 1
        self._consumed_bytes += len(msg.pld)
        if self._consumed >= self._credit_batch or self._consumed_bytes >= self._bytes_batch:
            self._return_credit(self._consumed, self._consumed_bytes)
            self._consumed = self._consumed_bytes = 0

    def drop_unread(self) -> None:
        """Drop the stream messages nobody will read now (their credit goes back)."""
        dropped = dropped_bytes = 0
        inbox = self.inbox
        while inbox and type(inbox[0]) is not Return and type(inbox[0]) is not Error:
            msg = inbox.popleft()  # a Yield, or a stray Started
            if type(msg) is Yield:
                dropped += 1
                dropped_bytes += len(msg.pld)
        if dropped and self.stream is not None and not self.stream_closed:
            log.debug("%r: %d unread stream messages dropped while waiting for the result", self, dropped)
            self._return_credit(dropped, dropped_bytes)

    def close_stream(self) -> None:
        """Close this side's stream without telling the peer; unread messages are freed."""
        self.stream_closed = True
        kept = [m for m in self.inbox if type(m) is not Yield]
        self.inbox.clear()
        self.inbox.extend(kept)

    def _return_credit(self, n: int, nbytes: int) -> None:
        if not self.unlimited_window:  # the first grant was unlimited
            self._grant(n, nbytes)

    def _grant(self, n: int, nbytes: int) -> None:
        if self.final is None:
            self._send_quietly(Credit(self.cid, n, nbytes))

    # -- the sending side of the stream --
    def has_credit(self) -> bool:
        return self.credit > 0 and self.credit_bytes > 0

    def spend_credit(self, nbytes: int) -> None:
        self.credit -= 1
        self.credit_bytes -= nbytes

    def stop_nowait(self) -> None:
        """Tell the peer this side's stream is over (once)."""
        if not self.stop_sent and self.final is None:
            self.stop_sent = True
            self._send_quietly(Stop(self.cid))

    def _send_quietly(self, msg: Any) -> None:
        """Send, unless the channel is gone (then nobody is left to tell)."""
        if not self.chan.closed:
            try:
                self.chan.send_nowait(msg)
            except TransportClosed:
                pass
