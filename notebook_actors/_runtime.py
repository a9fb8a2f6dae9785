"""The actor: one per process. It listens, serves channels, runs RPC tasks, and hosts
the registry when it is the root of a tree (or a daemon) and nobody else does.

Shutdown order matters: RPC tasks (and the child nurseries they hold) are cancelled
and awaited first, so their last messages are queued; then channels are flushed and
closed; then listeners stop and socket files are removed.
"""

from __future__ import annotations

import collections
import functools
import inspect
import logging
import os
import sys
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import trio

from . import _hooks, _payload, _state, _transport
from ._call import DEFAULT_WINDOW, SERVING, Call, encode_pld
from ._channel import Channel, connect, handshake_as_acceptor
from ._context import CURRENT_CTX, Context, MsgStream, endpoint_kind, endpoint_types
from ._exceptions import (
    ActorCrashed,
    FrameError,
    HandshakeError,
    ModuleNotExposed,
    MsgTypeError,
    PeerLeft,
    RemoteActorError,
    TransportClosed,
    box_error,
)
from ._transport._admission import DropLog, HandshakeGate, peer_source
from ._transport._rundir import default_registry_addr
from .msg import Cancel, Error, ErrorInfo, Ident, Return, Start

log = logging.getLogger("notebook_actors.runtime")

#: ``_call_inline`` answered the call itself.
_DONE = object()
#: Code flags of ``async def`` functions and (async) generators: never run inline.
_ASYNC_FLAGS = inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR | inspect.CO_GENERATOR | inspect.CO_ITERABLE_COROUTINE

#: How long a caller waits for another actor's parent to tell how that actor ended
#: (the parent itself waits a bound for the exit status): a hang guard.
ASK_PARENT_TIMEOUT = 10.0

#: ``Actor`` methods other actors may call through namespace ``'self'``.
SELF_RPC = frozenset(
    {
        "cancel",
        "get_registry",
        "find_actor",
        "find_actors",
        "wait_for_actor",
        "register_actor",
        "unregister_actor",
        "ping",
        "crash_of_child",
    }
)


def _load_args(kwargs: dict[str, Any], name: str, fn: Any, refuse: str | None = None) -> dict[str, Any]:
    """A call's pickled arguments, rebuilt (refused by a typed-only ``@context``, or
    with ``refuse`` set, by a typed-only actor: the text says who refuses).

    Raises:
        MsgTypeError: an argument was refused, or cannot be rebuilt here.
    """
    if endpoint_types(fn)[1]:
        refuse = f"{name!r} accepts typed values only (typed_only=True)"
    try:
        return _payload.load_args(kwargs, refuse)
    except msgspec.DecodeError as exc:
        raise MsgTypeError(f"the arguments of {name}: {exc}") from None


def _only_cancelled(exc: BaseException) -> bool:
    """``exc`` is trio.Cancelled, or a group of nothing but (groups of) it."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancelled(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


#: the names the program's script goes by: ``__main__`` in the root, ``__mp_main__`` in children
_SCRIPT_NAMES = frozenset({"__main__", "__mp_main__"})


class Actor:
    """The actor this process runs (see :func:`notebook_actors.current_actor`).

    Attributes:
        name, uid: ``uid == (name, uuid_hex)``.
        is_arbiter: this actor hosts the registry.
        loglevel, accept_addr, enable_modules.
        typed_only: every context of this actor refuses pickled values, both ways.
        msg_buffer_size: (class attribute) how many unread stream messages a
            ``ctx.open_stream()`` buffers when no ``msg_buffer_size=`` is given: past
            it a sender waits, or gets StreamOverrun with ``backpressure=False``.
            512 here (tractor's is 64; a bigger window streams ~2.5x faster with
            credit-based flow control); set it to change every actor's default.
    """

    msg_buffer_size: int = DEFAULT_WINDOW

    def __init__(
        self,
        name: str,
        *,
        uid: str | None = None,
        secret: bytes,
        enable_modules: Any = (),
        loglevel: str | None = None,
        debug_mode: bool = False,
        registry_addrs: list[str] | None = None,
        parent_addr: str | None = None,
        parent_main_path: str | None = None,
        parent_main_module: str | None = None,
        bind_addr: str | None = None,
        infect_asyncio: bool = False,
        start_method: str | None = None,
        typed_only: bool = False,
        also_known_as: list[str] | None = None,
    ) -> None:
        self.name = name
        #: refuse pickled values on every context, both ways (see docs/data.md)
        self.typed_only = typed_only
        self.uid: tuple[str, str] = (name, uid or uuid.uuid4().hex)
        self.secret = secret
        self.enable_modules = set(enable_modules or ())
        self.loglevel = loglevel
        self.debug_mode = debug_mode
        self.registry_addrs = list(registry_addrs or [])
        self.parent_addr = parent_addr
        self.parent_main_path = parent_main_path
        self.parent_main_module = parent_main_module
        self.bind_addr = bind_addr
        #: forwarded addresses dialers reach us through (see docs/security.md)
        self.also_known_as = list(also_known_as or [])
        self._aliases: frozenset[str] = frozenset()
        self.start_method = start_method
        self._infected_aio = infect_asyncio
        self.accept_addr: str | None = None
        self.is_arbiter = False
        self.pid = os.getpid()
        self.parent_chan: Channel | None = None
        # connections
        self._peers: dict[tuple[str, str], list[Channel]] = {}
        self._chans_by_addr: dict[str, Channel] = {}
        self._connect_locks: dict[str, trio.Lock] = {}
        self._pending_children: dict[tuple[str, str], Channel] = {}
        # registry (when is_arbiter)
        self._registry: dict[tuple[str, str], str] = {}
        self._registry_changed = trio.lowlevel.ParkingLot()
        # lifecycle
        self._transport_n: trio.Nursery | None = None
        self._rpc_n: trio.Nursery | None = None
        self._listeners: list[trio.abc.Listener] = []
        self._cancel_requested = trio.Event()
        self._cancelled_by: tuple[str, str] | None = None
        self._on_cancel: list[Callable[[], None]] = []
        self._lifetime_scope: trio.CancelScope | None = None
        self.children: dict[tuple[str, str], Any] = {}  # uid -> child record (supervisors)
        #: the last children that exited (uid -> record), so a call whose channel closed
        #: with its child still finds the exit status after the supervisor dropped it
        self.exited_children: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        self._accepting = True
        self._drops: DropLog | None = None
        self._gates: list[HandshakeGate] = []

    def __repr__(self) -> str:
        return f"<Actor {self.uid} pid={self.pid}>"

    @property
    def ident(self) -> Ident:
        return Ident(self.uid, self.pid, self.accept_addr, self.parent_addr)

    def is_infected_aio(self) -> bool:
        return self._infected_aio

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. ``task_status.started()`` once reachable."""
        undo_addons = _hooks.actor_running(self)  # e.g. the debugger's stack dumps and breakpoint()
        try:
            async with trio.open_nursery() as transport_n:
                self._transport_n = transport_n
                await self._listen()
                async with trio.open_nursery() as rpc_n:
                    self._rpc_n = rpc_n
                    if self.parent_addr is None:
                        # a root is registered once it is up (other programs look for it
                        # right away); a child registers concurrently with its start-up
                        await self._register_self()
                    else:
                        await self._connect_parent()
                        transport_n.start_soon(self._register_self)
                    task_status.started()
                    await self._cancel_requested.wait()
                    rpc_n.cancel_scope.cancel()
                self._accepting = False
                await self._unregister_self()
                await self._close_all_channels()
                transport_n.cancel_scope.cancel()
        finally:
            undo_addons()
            self._accepting = False
            if self._drops is not None:
                self._drops.flush()
            for listener in self._listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()
            if self.accept_addr:
                _transport.cleanup(self.accept_addr)
            if self.is_arbiter:
                for addr in self.registry_addrs:
                    if addr.startswith("uds:"):
                        _transport.cleanup(addr)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when this actor starts cancelling (``cancel_soon``)."""
        self._on_cancel.append(callback)

    def expect_child(self, uid: tuple[str, str], chan: Channel) -> None:
        """A child ``uid`` is starting: its connection back to us becomes ``chan``
        (where its first requests already wait for it)."""
        self._pending_children[uid] = chan

    def forget_child_start(self, uid: tuple[str, str]) -> None:
        """The child ``uid`` ended: a late connection from it is no longer expected."""
        self._pending_children.pop(uid, None)

    def channels(self) -> set[Channel]:
        """Every channel this actor holds: to its peers, by address, and to its children."""
        chans = {c for cs in list(self._peers.values()) for c in cs}
        chans.update(self._chans_by_addr.values())
        chans.update(c for c in (getattr(child, "chan", None) for child in list(self.children.values())) if c)
        return chans

    def cancel_soon(self, by: tuple[str, str] | None = None) -> None:
        """Start cancelling this actor: its tasks, its children, then itself."""
        if self._cancelled_by is None:
            self._cancelled_by = by or self.uid
        self._cancel_requested.set()
        for cb in self._on_cancel:
            cb()

    @property
    def cancel_called(self) -> bool:
        return self._cancel_requested.is_set()

    async def cancel(self) -> bool:
        """RPC: cancel this actor (returns True once the request is taken)."""
        self.cancel_soon()
        return True

    def ping(self) -> str:
        return "pong"

    # -- listening and connecting -----------------------------------------------------
    async def _listen(self) -> None:
        from ._transport._uds import runtime_dir, socket_path, sweep_stale

        if self.bind_addr is None:
            if self.parent_addr is None:
                sweep_stale(runtime_dir())
            self.bind_addr = "uds:" + socket_path(self.name, self.uid[1])
        self._aliases = await _resolve_aliases(self.also_known_as)
        listeners, self.accept_addr = await _transport.listen(self.bind_addr, secret=self.secret)
        self._serve_listeners(listeners)
        if self.parent_addr is None:
            await self._maybe_become_registry()

    def _serve_listeners(self, listeners: list[trio.abc.Listener]) -> None:
        """Accept on each listener, each with its own budget of pending handshakes
        (a flood on one address never touches another: _transport._admission)."""
        assert self._transport_n is not None
        if self._drops is None:
            self._drops = DropLog(f"actor {self.uid}")
            self._transport_n.start_soon(self._drops.run)
        self._listeners.extend(listeners)
        for listener in listeners:
            gate = HandshakeGate(self._drops)
            self._gates.append(gate)
            self._transport_n.start_soon(self._accept_loop, listener, gate)

    @property
    def pending_handshakes(self) -> int:
        """Connections accepted but not yet authenticated, over all listeners."""
        return sum(gate.pending for gate in self._gates)

    async def _maybe_become_registry(self) -> None:
        """Host the registry at the first registry address, unless someone already does."""
        addr = self.registry_addrs[0]
        try:
            listeners, _ = await _transport.listen(addr, secret=self.secret)
        except OSError as exc:
            log.info("registry address %s is taken (%s): joining that registry", addr, exc)
            return
        self.is_arbiter = True
        self._serve_listeners(listeners)
        self._registry[self.uid] = self.accept_addr  # type: ignore[assignment]

    async def _accept_loop(self, listener: trio.abc.Listener, gate: HandshakeGate) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:  # e.g. out of file descriptors: back off, keep serving
                log.warning("accept failed on %s: %s", self.accept_addr, exc)
                await trio.sleep(0.05)
                continue
            self._transport_n.start_soon(self._handle_incoming, stream, gate)  # type: ignore[union-attr]

    async def _handle_incoming(self, stream: trio.abc.Stream, gate: HandshakeGate) -> None:
        peer = f"connection to {self.uid}"
        source = peer_source(stream)
        ident = None
        with gate.admit(source) as slot:
            try:
                ident, rest = await handshake_as_acceptor(
                    stream, self.secret, self.ident, peer, also_known_as=self._aliases
                )
            except (HandshakeError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                # A peer that just hung up proved nothing wrong (a liveness probe, a program
                # cancelled while connecting): only a failed or garbled handshake is a warning.
                hung_up = isinstance(exc, (PeerLeft, trio.BrokenResourceError, trio.ClosedResourceError))
                level = logging.DEBUG if hung_up else logging.WARNING
                self._drops.drop(level, f"dropped an unauthenticated peer: {exc}", source)  # type: ignore[union-attr]
        if ident is None:  # refused, or evicted for a newer connection
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        assert not slot.evicted
        uid = tuple(ident.uid)
        chan = self._pending_children.pop(uid, None)  # type: ignore[arg-type]
        if chan is None:
            chan = Channel(dialer=False)
        elif self.is_arbiter and ident.addr:
            # our own child: registered as it connects back, so whoever got an answer
            # from it can also find it by name (its own registration follows, idempotent)
            self.register_actor(list(uid), ident.addr)
        chan.attach(stream, ident, rest)
        await self._serve_channel(chan)

    async def connect_to(self, addr: str) -> Channel:
        """A served channel to the actor at ``addr`` (cached per address)."""
        chan = self._chans_by_addr.get(addr)
        if chan is not None and not chan.closed:
            return chan
        lock = self._connect_locks.setdefault(addr, trio.Lock())
        async with lock:
            chan = self._chans_by_addr.get(addr)
            if chan is not None and not chan.closed:
                return chan
            if self.parent_chan is not None and self.parent_chan.raddr == addr and not self.parent_chan.closed:
                return self.parent_chan
            chan = await connect(addr, self.secret, self.ident)
            self._chans_by_addr[addr] = chan
            self._transport_n.start_soon(self._serve_channel, chan)  # type: ignore[union-attr]
            return chan

    async def _connect_parent(self) -> None:
        assert self.parent_addr is not None
        chan = await connect(self.parent_addr, self.secret, self.ident)
        self.parent_chan = chan
        self._chans_by_addr[self.parent_addr] = chan
        chan.on_close.append(lambda _: self.cancel_soon(by=chan.uid))
        self._transport_n.start_soon(self._serve_channel, chan)  # type: ignore[union-attr]

    # -- the message loop ---------------------------------------------------------------
    async def _serve_channel(self, chan: Channel) -> None:
        """Run ``chan``'s writer and dispatch its messages until it closes."""
        await chan.wait_attached()
        if chan.closed:
            return
        uid = chan.uid
        self._peers.setdefault(uid, []).append(chan)  # type: ignore[arg-type]
        chan.on_close.append(self._forget_channel)
        self._transport_n.start_soon(chan.run_writer)  # type: ignore[union-attr]
        try:
            while True:
                for msg in await chan.receive_batch():
                    self._dispatch(chan, msg)
        except TransportClosed:
            pass
        except FrameError as exc:
            log.error("actor %s closes its channel to %s: %s", self.uid, uid, exc)
        finally:
            chan.mark_closed(None)
            with trio.CancelScope(shield=True):
                await chan.aclose(flush_timeout=0)

    def _forget_channel(self, chan: Channel) -> None:
        chans = self._peers.get(chan.uid, [])  # type: ignore[arg-type]
        if chan in chans:
            chans.remove(chan)
        if not chans:
            self._peers.pop(chan.uid, None)  # type: ignore[arg-type]
            if self.is_arbiter and chan.uid in self._registry and chan.uid != self.uid:
                # its last channel closed: the actor is gone, even if it was SIGKILLed
                # (test_discovery.py::test_killed_actor_leaves_registry)
                self.unregister_actor(list(chan.uid))
        for call in list(chan.ctxs.values()):
            call.cancel_by(chan.uid)  # the caller is gone: stop working for it
            call.wake()

    def _dispatch(self, chan: Channel, msg: Any) -> None:
        kind = type(msg)
        if kind is Start:
            self._start_rpc(chan, msg)
        elif kind is Cancel:
            call = chan.ctxs.get(msg.cid)
            if call is not None:
                call.cancel_by(chan.uid)
        elif kind is Error and msg.cid is None:
            log.error("actor %s reports a channel error: %s", chan.uid, msg.err.message)
        else:
            call = chan.ctxs.get(msg.cid)
            if call is not None:
                call.deliver(msg)
            else:
                log.debug("message for unknown call %s from %s dropped: %s", msg.cid, chan.uid, kind.__name__)

    # -- RPC ---------------------------------------------------------------------------
    def _start_rpc(self, chan: Channel, msg: Start) -> None:
        if msg.cid in chan.ctxs or chan.is_own_cid(msg.cid):
            self._reply_error(chan, msg.cid, ValueError(f"call id {msg.cid} is invalid or in use"))
            return
        if not self._accepting or self._rpc_n is None or self.cancel_called:
            self._reply_error(chan, msg.cid, RuntimeError(f"actor {self.uid} is shutting down"))
            return
        pending = self._call_inline(chan, msg) if msg.kind == "call" and not msg.code else None
        if pending is _DONE:
            return
        call = Call(chan, msg.cid, "callee", f"{msg.ns}:{msg.func}", self)
        Context(call)
        # made now, entered when the task runs: a Cancel in the same batch as this
        # Start (the caller gave up at once) must not find "nothing to cancel"
        call.scope = trio.CancelScope()
        chan.ctxs[msg.cid] = call
        self._rpc_n.start_soon(self._run_rpc, call, msg, pending)

    def _call_inline(self, chan: Channel, msg: Start) -> Any:
        """Run a plain sync function right here, in the channel's dispatch loop.

        A sync function blocks this actor's event loop wherever it runs, so running it
        inline changes nothing a caller can see, and saves a task spawn and a task switch
        per call (RPC round trip 200 -> 120 µs here, with the channel's eager write).
        Returns ``_DONE`` when the call was answered; None to take the task path (async
        functions, ``self`` methods, debug mode, errors resolving it); or the awaitable a
        sync function returned, for the task path to await.
        """
        if self.debug_mode or msg.ns == "self" or self.typed_only:
            return None  # (a typed-only actor checks every value on the task path)
        try:
            fn = self.resolve(msg.ns, msg.func, None)
        except Exception:
            return None  # the task path reports it
        if not inspect.isfunction(fn) or fn.__code__.co_flags & _ASYNC_FLAGS or endpoint_kind(fn):
            return None
        try:
            kwargs = _load_args(msg.kwargs, f"{msg.ns}:{msg.func}", fn) if msg.pickled else msg.kwargs
            result = fn(**kwargs)
            del kwargs  # a received segment is released once the call's values die
        except Exception as exc:
            self._reply_error(chan, msg.cid, exc)
            return _DONE
        except BaseException as exc:  # KeyboardInterrupt, SystemExit in user code
            self._reply_error(chan, msg.cid, exc)
            if not isinstance(exc, (SystemExit, GeneratorExit)):
                raise
            return _DONE
        if inspect.isawaitable(result):
            return result
        try:
            pld = encode_pld(result, f"the return value of {msg.ns}:{msg.func}")
        except TypeError as exc:
            self._reply_error(chan, msg.cid, exc)
        else:
            if not chan.closed:
                chan.send_nowait(Return(msg.cid, pld))
        return _DONE

    def _reply_error(self, chan: Channel, cid: int | None, exc: BaseException, *, pickled: bool = True) -> None:
        self._send_error(chan, cid, box_error(exc, self.uid, pickled=pickled))

    def _send_error(self, chan: Channel, cid: int | None, info: ErrorInfo) -> None:
        """Answer a call with an error, unless its caller is gone already."""
        if not chan.closed:
            try:
                chan.send_nowait(Error(cid, info))
            except TransportClosed:
                pass

    async def _run_rpc(self, call: Call, msg: Start, pending: Any = None) -> None:
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
                    self._reply_error(chan, call.cid, exc)
                else:
                    chan.send_nowait(Return(call.cid, pld))
        except BaseException as exc:
            if _only_cancelled(exc):  # a nursery in the function wraps it in a group
                self._reply_cancelled(call)
                raise
            if isinstance(exc, Exception):
                await self._maybe_post_mortem(exc)
                self._reply_error(chan, call.cid, exc, pickled=call.refuse is None)
            else:  # KeyboardInterrupt, SystemExit in user code
                self._reply_error(chan, call.cid, exc, pickled=call.refuse is None)
                if not isinstance(exc, (SystemExit, GeneratorExit)):
                    raise
        finally:
            SERVING.reset(serving)
            CURRENT_CTX.reset(token)
            call.forget()

    def _reply_cancelled(self, call: Call) -> None:
        canceller = call.canceller or self._cancelled_by or self.uid
        exc = trio.Cancelled.__new__(trio.Cancelled)  # only for its type name in the box
        info = box_error(exc, self.uid, canceller=canceller)
        if tuple(canceller) == tuple(self.uid) and call.canceller is not None:
            when = "" if call.started else " before calling ctx.started()"
            info.message = f"{call.fn_name} in actor {self.uid} cancelled itself (ctx.cancel()){when}"
        else:
            info.message = f"{call.fn_name} in actor {self.uid} was cancelled by actor {canceller}"
        info.tb_str = "".join(traceback.format_stack(limit=4))
        self._send_error(call.chan, call.cid, info)

    async def _maybe_post_mortem(self, exc: BaseException) -> None:
        if self.debug_mode:
            await _hooks.crashed_in_debug_mode(exc)

    async def _invoke(self, call: Call, msg: Start) -> Any:
        if msg.ns == "self" and msg.func == "cancel":
            # remember who asked: every call this cancels names them as its canceller
            self.cancel_soon(by=call.chan.uid)
            return True
        fn = self.resolve(msg.ns, msg.func, msg.code)
        kind = endpoint_kind(fn)
        name = call.fn_name
        ctx = call.context
        # a local, not on the message: a received segment is released once the call's
        # values die, while the message lives on until the channel's next batch
        kwargs = _load_args(msg.kwargs, name, fn, call.refuse) if msg.pickled else msg.kwargs
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
            call.expect(*endpoint_types(fn))
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

    def resolve(self, ns: str, func: str, code: bytes | None) -> Callable[..., Any]:
        """Find the function a peer asked for, enforcing ``enable_modules`` (``ns`` is a
        module, or ``"self"`` for this actor's own RPC methods; ``code`` a cloudpickled
        function sent by value)."""
        if code is not None:
            import cloudpickle

            fn = cloudpickle.loads(code)
            if not callable(fn):
                raise TypeError(f"the code sent for {ns}:{func} is not callable")
            return fn
        if ns == "self":
            if func in SELF_RPC:
                return getattr(self, func)
            addon = _hooks.self_rpc(func)
            if addon is None:
                offered = sorted(SELF_RPC | set(_hooks.self_rpc_names()))
                raise self._refused(f"actor {self.uid} has no RPC method {func!r}; it offers {offered}")
            return functools.partial(addon, self)
        if ns in _SCRIPT_NAMES and _SCRIPT_NAMES & set(self.enable_modules):
            # one script, two names: a child loaded its parent's __main__ as __mp_main__
            ns = "__main__"
        elif ns not in self.enable_modules and not _hooks.is_runtime_module(ns):
            raise self._refused(f"module {ns!r} is not enabled in actor {self.uid}; pass enable_modules=[{ns!r}]")
        module = self._import(ns)
        obj: Any = module
        for part in func.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                raise AttributeError(f"module {ns!r} in actor {self.uid} has no function {func!r}")
            if inspect.ismodule(obj) and obj.__name__ not in self.enable_modules:
                # `calc:os.system` must not reach what `calc` merely imports
                raise self._refused(
                    f"{ns}:{func} reaches into module {obj.__name__!r}, which is not enabled in actor "
                    f"{self.uid}; call it by its own module and pass enable_modules=[{obj.__name__!r}]"
                )
        if not callable(obj):
            raise TypeError(f"{ns}:{func} in actor {self.uid} is not callable")
        return obj

    def _refused(self, text: str) -> ModuleNotExposed:
        """Log an unauthorised call (the caller gets the error boxed) and return its error."""
        log.warning("refused a call: %s", text)
        return ModuleNotExposed(text)

    def _import(self, ns: str) -> Any:
        # a grandchild is asked for "__mp_main__": its parent loaded the script under that name
        if ns in _SCRIPT_NAMES:
            return self._main_module()
        import importlib

        return importlib.import_module(ns)

    def _main_module(self) -> Any:
        """The parent's ``__main__`` script, loaded here as ``__mp_main__`` (like
        multiprocessing does), so functions defined in a script can run in children."""
        mod = sys.modules.get("__mp_main__")
        if mod is not None:
            return mod
        if self.parent_main_module is not None:
            return self._run_main("module", self.parent_main_module)
        if self.parent_main_path is None:
            main = sys.modules["__main__"]
            if getattr(main, "__file__", None) and self.parent_addr is None:
                return main
            raise ModuleNotExposed(f"actor {self.uid} cannot import its parent's __main__ (no script path)")
        return self._run_main("path", self.parent_main_path)

    def _run_main(self, how: str, where: str) -> Any:
        import runpy
        import types

        mod = types.ModuleType("__mp_main__")
        sys.modules["__mp_main__"] = mod
        try:
            if how == "module":  # `python -m pkg.mod`: by name, so relative imports work
                mod.__dict__.update(runpy.run_module(where, run_name="__mp_main__"))
            else:
                mod.__file__ = where
                mod.__dict__.update(runpy.run_path(where, run_name="__mp_main__"))
        except Exception as exc:
            del sys.modules["__mp_main__"]
            raise RuntimeError(
                f"actor {self.uid} could not load its parent's script {where} "
                f"(to find a function defined there): {type(exc).__name__}: {exc}. Every child "
                "re-runs the script's top level: put the program under "
                "`if __name__ == '__main__':`"
            ) from exc
        except BaseException:
            del sys.modules["__mp_main__"]
            raise
        return mod

    # -- registry ----------------------------------------------------------------------
    async def _register_self(self) -> None:
        if self.is_arbiter:
            return
        try:
            with trio.move_on_after(5):
                reg = await self.connect_to(self.registry_addrs[0])
                from ._portal import Portal

                await Portal(reg, self).run_from_ns("self", "register_actor", uid=list(self.uid), addr=self.accept_addr)
        except HandshakeError as exc:  # something that is not our tree holds the address
            log.warning(
                "actor %s did not register at %s: whatever listens there is not an actor of your tree "
                "(another user's program?): %s",
                self.uid,
                self.registry_addrs[0],
                exc,
            )
        except (OSError, RemoteActorError, TransportClosed, trio.BrokenResourceError) as exc:
            log.info("actor %s could not register at %s: %s", self.uid, self.registry_addrs, exc)

    async def _unregister_self(self) -> None:
        if self.is_arbiter:
            return
        chan = self._chans_by_addr.get(self.registry_addrs[0]) if self.registry_addrs else None
        if chan is not None and not chan.closed:
            from ._portal import Portal

            with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                try:
                    await Portal(chan, self).run_from_ns("self", "unregister_actor", uid=list(self.uid))
                except Exception:
                    pass

    def register_actor(self, uid: list[str], addr: str) -> None:
        self._registry[tuple(uid)] = addr  # type: ignore[index]
        self._registry_changed.unpark_all()

    def unregister_actor(self, uid: list[str]) -> None:
        self._registry.pop(tuple(uid), None)  # type: ignore[arg-type]
        self._registry_changed.unpark_all()

    async def get_registry(self) -> dict[str, str]:
        """``{'name.uuid': addr}`` for every registered actor (tractor's shape).

        A coroutine, as tractor's: ``await actor.get_registry()``, or remotely
        ``await portal.run_from_ns('self', 'get_registry')``.
        """
        return {f"{n}.{u}": a for (n, u), a in self._registry.items()}

    def find_actors(self, name: str) -> list[list[Any]]:
        return [[list(uid), addr] for uid, addr in self._registry.items() if uid[0] == name]

    def find_actor(self, name: str) -> str | None:
        found = self.find_actors(name)
        return found[-1][1] if found else None

    async def wait_for_actor(self, name: str) -> list[str]:
        while True:
            found = self.find_actors(name)
            if found:
                return [addr for _, addr in found]
            await self._registry_changed.park()

    async def how_child_ended(self, parent: str, uid: tuple[str, str], during: str) -> ActorCrashed | None:
        """The ActorCrashed of actor ``uid`` as its parent at ``parent`` reports it, or
        None (a peer's channel closed: its parent knows how it ended)."""
        from ._portal import Portal

        with trio.move_on_after(ASK_PARENT_TIMEOUT):
            try:
                chan = await self.connect_to(parent)
                fields = await Portal(chan, self).run_from_ns("self", "crash_of_child", uid=list(uid), during=during)
            except (OSError, HandshakeError, TransportClosed, RemoteActorError):
                return None  # the parent is gone too, or cannot tell: the closed channel is all we know
            if fields:
                return ActorCrashed(ErrorInfo(**fields))
        return None

    async def crash_of_child(self, uid: list[str], during: str) -> dict[str, Any] | None:
        """RPC: how our child ``uid`` died, for a caller whose channel to it closed
        (it reached the child directly, not through us): the boxed ActorCrashed's
        fields, or None when the child ended cleanly, as asked, or is not ours.

        Waits (a bound) for the child to be reaped, like a call of our own would.
        """
        key = (uid[0], uid[1])
        child = self.children.get(key) or self.exited_children.get(key)
        if child is None or not hasattr(child, "crash_report"):
            return None
        crash = await child.crash_report(self, during)
        return None if crash is None else msgspec.structs.asdict(crash.info)

    # -- closing -------------------------------------------------------------------------
    async def _close_all_channels(self) -> None:
        with trio.CancelScope(shield=True):
            chans = {c for cs in self._peers.values() for c in cs} | set(self._chans_by_addr.values())
            async with trio.open_nursery() as n:
                for chan in chans:
                    n.start_soon(chan.aclose)


async def _resolve_aliases(aliases: list[str]) -> frozenset[str]:
    """Every spelling a dialer may use for the forwarded addresses ``aliases``.

    Raises:
        OSError: a host name among them does not resolve (said at start, not as a
            refused connection later).
    """
    names: set[str] = set()
    for alias in aliases:
        try:
            names |= await _transport.spellings(alias)
        except OSError as exc:
            raise OSError(f"cannot resolve the also_known_as address {alias}: {exc}") from None
    return frozenset(names)


# -- the root actor ---------------------------------------------------------------------


def _default_registry_addrs(arbiter_addr: Any, registry_addrs: Any) -> list[str]:
    if registry_addrs:
        return [_transport.normalize_addr(a) for a in registry_addrs]
    if arbiter_addr:
        return [_transport.normalize_addr(arbiter_addr)]
    env = os.environ.get("NOTEBOOK_ACTORS_REGISTRY")
    return [_transport.normalize_addr(env) if env else default_registry_addr()]


@asynccontextmanager
async def open_root_actor(
    *,
    name: str = "root",
    arbiter_addr: Any = None,
    registry_addrs: Any = None,
    start_method: str | None = None,
    debug_mode: bool = False,
    loglevel: str | None = None,
    enable_modules: Any = None,
    infect_asyncio: bool = False,
    secret: Any = None,
    bind_addr: Any = None,
    also_known_as: Any = None,
) -> AsyncIterator[Actor]:
    """Start this process' actor runtime (the root of a new tree); yield the Actor.

    The root hosts the registry at the registry address (default: this user's private
    Unix socket, see docs/discovery.md) unless one already listens there, in which
    case it joins that one.

    Args:
        secret: the tree's shared secret (bytes or a key file); default: the per-user
            key file, so this user's programs can find and call each other.
        bind_addr: where to accept connections; default a private Unix socket.
        also_known_as: the forwarded addresses (``(host, port)`` pairs) dialers reach
            this actor through, e.g. a NAT gateway's port mapped to ``bind_addr``;
            the handshake refuses any other address it was not dialed at, as a relay
            (docs/security.md).

    Raises:
        RuntimeError: a runtime already runs in this process.
    """
    from ._asyncio_guest import is_guest_mode
    from ._channel import load_secret
    from ._process import check_start_method
    from .log import get_console_log

    if _state.current_actor_or_none() is not None:
        raise RuntimeError(
            "an actor runtime already runs in this process: use open_nursery() inside it "
            "instead of a second open_root_actor()"
        )
    if loglevel:
        get_console_log(loglevel)
    if start_method is not None:
        check_start_method(start_method)
    if infect_asyncio and not is_guest_mode():
        raise RuntimeError(
            "open_root_actor(infect_asyncio=True) needs trio running as a guest on asyncio: "
            "use notebook_actors.to_asyncio.run_as_asyncio_guest(main) instead of trio.run(main)"
        )
    actor = Actor(
        name,
        secret=load_secret(secret),
        enable_modules=enable_modules,
        loglevel=loglevel,
        debug_mode=debug_mode,
        registry_addrs=_default_registry_addrs(arbiter_addr, registry_addrs),
        bind_addr=_transport.normalize_addr(bind_addr) if bind_addr else None,
        infect_asyncio=infect_asyncio,
        start_method=start_method,
        also_known_as=[_transport.normalize_addr(a) for a in also_known_as or ()],
    )
    _state.set_actor(actor)
    unwrapped: BaseException | None = None
    try:
        async with trio.open_nursery() as n:
            await n.start(actor.run)
            # A remote cancel ends the user's block; the actor itself shuts down
            # gracefully (deregisters, flushes channels) in `actor.run`.
            body_scope = trio.CancelScope()
            actor.on_cancel(body_scope.cancel)
            try:
                with body_scope:
                    yield actor
            except Exception as exc:
                if debug_mode:  # the root's own post-mortem, while its runtime still runs
                    await _hooks.crashed_in_debug_mode(exc)
                raise
            finally:
                actor.cancel_soon()
    except BaseExceptionGroup as group:
        unwrapped = _unwrap(group)
    finally:
        _state.set_actor(None)
    if unwrapped is not None:
        # Raised outside the `except` block, so Python does not chain the group to it.
        raise unwrapped


def _unwrap(group: BaseExceptionGroup) -> BaseException:
    """The user's own error, not trio's one-member groups around it.

    Ctrl-C wins: trio raises KeyboardInterrupt in whichever task runs when SIGINT
    arrives (often an RPC task, deep in the actor's nurseries); the user gets it as a
    plain KeyboardInterrupt, as from any other trio program.
    """
    interrupts, _ = group.split(KeyboardInterrupt)
    if interrupts is not None:
        exc: BaseException = interrupts
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        return exc
    exc = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if exc is not group:
        exc.__context__ = None
    return exc


def run(async_fn: Callable[..., Any], *args: Any, **root_kwargs: Any) -> Any:
    """Run ``async_fn(*args)`` inside a new root actor; return its result (sync)."""

    async def main() -> Any:
        async with open_root_actor(**root_kwargs):
            return await async_fn(*args)

    return _run_trio(main, root_kwargs)


def run_daemon(enable_modules: Any, **root_kwargs: Any) -> None:
    """Run a root actor that serves RPC for ``enable_modules`` (and the registry) until
    cancelled; SIGINT ends it with KeyboardInterrupt."""

    async def main() -> None:
        async with open_root_actor(enable_modules=enable_modules, **root_kwargs):
            await trio.sleep_forever()

    _run_trio(main, root_kwargs)


def _run_trio(main: Callable[[], Any], root_kwargs: dict[str, Any]) -> Any:
    """``trio.run(main)``, or a guest run on a new asyncio loop for ``infect_asyncio``."""
    if root_kwargs.get("infect_asyncio"):
        from ._asyncio_guest import run_as_asyncio_guest

        return run_as_asyncio_guest(main)
    return trio.run(main)


__all__ = ["Actor", "open_root_actor", "run", "run_daemon"]
