"""The actor: one per process. It listens, serves channels, runs RPC tasks, and hosts
the registry when it is the root of a tree (or a daemon) and nobody else does.

Shutdown order matters: RPC tasks (and the child nurseries they hold) are cancelled
and awaited first, so their last messages are queued; then channels are flushed and
closed; then listeners stop and socket files are removed.
"""

from __future__ import annotations

import collections
import functools
import logging
import os
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from . import _hooks, _transport
from ._call import DEFAULT_WINDOW
from ._channel import Channel, connect, handshake_as_acceptor
from ._dispatch import Dispatcher
from ._exceptions import (
    FrameError,
    HandshakeError,
    PeerLeft,
    RemoteActorError,
    TransportClosed,
    box_error,
    unbox,
)
from ._registry import Registry
from ._resolve import FunctionTable, refused, trim_import_frames
from ._transport._admission import DropLog, HandshakeGate, peer_source
from .msg import ActorConfig, Error, ErrorInfo, Ident

log = logging.getLogger("notebook_actors.runtime")

#: How long a caller waits for another actor's parent to tell how that actor ended
#: (the parent itself waits a bound for the exit status): a hang guard.
ASK_PARENT_TIMEOUT = 10.0


class Actor:
    """The actor this process runs (see :func:`notebook_actors.current_actor`).

    Attributes:
        name, uid: ``uid == (name, uuid_hex)``.
        is_arbiter: this actor hosts the registry.
        loglevel, enable_modules.
        accept_addr: where it accepts connections, in tractor's form: ``(host, port)``
            on TCP (its loopback TCP listener when the tree's registry was given as a
            local TCP address), else ``'uds:/path'``; ``accept_addrs``: every one.
        addr: its first address, internally (``'tcp:host:port'``/``'uds:/path'``): the
            one its own children dial (its private Unix socket unless bound elsewhere).
        typed_only: every context of this actor refuses pickled values, both ways.
        msg_buffer_size: (class attribute) how many unread stream messages a
            ``ctx.open_stream()`` buffers when no ``msg_buffer_size=`` is given: past
            it a sender waits, or gets StreamOverrun with ``backpressure=False``.
            512 here (tractor's is 64; a bigger window streams ~2.5x faster with
            credit-based flow control); set it to change every actor's default.
    """

    msg_buffer_size: int = DEFAULT_WINDOW

    def __init__(self, config: ActorConfig, *, secret: bytes) -> None:
        self.config = config
        self.uid: tuple[str, str] = (config.name, config.uid or uuid.uuid4().hex)
        self.secret = secret
        self.functions = FunctionTable(config, self.uid)
        self.dispatcher = Dispatcher(self)
        self.registry = Registry()  # filled when this actor hosts it (is_arbiter)
        self._aliases: frozenset[str] = frozenset()
        #: the address this actor listens at first (internal form; see accept_addr)
        self.addr: str | None = None
        #: where to listen on loopback TCP as well: the tree's registry was given as a
        #: loopback TCP address (tractor's programs expect (host, port) addresses then)
        tcp_bind = config.tcp_bind
        if tcp_bind is None and config.parent_addr is None and config.registry_addrs:
            if _transport.is_loopback_tcp(config.registry_addrs[0]):
                tcp_bind = _transport.loopback_bind_addr(config.registry_addrs[0])
        self.tcp_bind = tcp_bind
        #: the loopback TCP address it listens at too (see tcp_bind), or None
        self.tcp_addr: str | None = None
        self.is_arbiter = False
        self.pid = os.getpid()
        self.parent_chan: Channel | None = None
        # connections
        self._peers: dict[tuple[str, str], list[Channel]] = {}
        self._chans_by_addr: dict[str, Channel] = {}
        self._connect_locks: dict[str, trio.Lock] = {}
        self._pending_children: dict[tuple[str, str], Channel] = {}
        # lifecycle
        self._transport_n: trio.Nursery | None = None
        self._listeners: list[trio.abc.Listener[trio.abc.Stream]] = []
        self._cancel_requested = trio.Event()
        self._cancelled_by: tuple[str, str] | None = None
        self._on_cancel: list[Callable[[], None]] = []
        self.children: dict[tuple[str, str], Any] = {}  # uid -> child record (supervisors)
        #: the last children that exited (uid -> record), so a call whose channel closed
        #: with its child still finds the exit status after the supervisor dropped it
        self.exited_children: collections.OrderedDict[tuple[str, str], Any] = collections.OrderedDict()
        self._accepting = True
        self._drops: DropLog | None = None
        self._gates: list[HandshakeGate] = []
        #: what peers may call through namespace ``'self'`` (add-ons add theirs: _hooks)
        self._self_rpc: dict[str, Callable[..., Any]] = {
            "cancel": self.cancel,
            "ping": self.ping,
            "crash_of_child": self.crash_of_child,
            "get_registry": self.get_registry,
            "register_actor": self.registry.register,
            "unregister_actor": self.registry.unregister,
            "find_actor": self.registry.find,
            "find_actors": self.registry.find_all,
            "wait_for_actor": self.registry.wait_for,
        }

    # tractor's attribute names, read from the config
    @property
    def name(self) -> str:
        return self.config.name

    @property
    def loglevel(self) -> str | None:
        return self.config.loglevel

    @property
    def enable_modules(self) -> list[str]:
        return self.config.enable_modules

    @property
    def debug_mode(self) -> bool:
        return self.config.debug_mode

    @property
    def parent_addr(self) -> str | None:
        return self.config.parent_addr

    @property
    def cancelled_by(self) -> tuple[str, str] | None:
        """Who asked this actor to cancel (None until someone did)."""
        return self._cancelled_by

    def __repr__(self) -> str:
        return f"<Actor {self.uid} pid={self.pid}>"

    @property
    def ident(self) -> Ident:
        return Ident(self.uid, self.pid, self.registered_addr, self.parent_addr)

    @property
    def registered_addr(self) -> str | None:
        """The address others find this actor at (internal form): its loopback TCP
        listener if it has one, else its first address."""
        return self.tcp_addr or self.addr

    @property
    def accept_addr(self) -> Any:
        """Where this actor accepts connections, in tractor's form: ``(host, port)`` for
        TCP, ``'uds:/path'`` for a Unix socket (None before it listens)."""
        return _transport.public_addr(self.registered_addr)

    @property
    def accept_addrs(self) -> list[Any]:
        """Every address this actor accepts connections at, in tractor's form."""
        return [_transport.public_addr(a) for a in dict.fromkeys((self.tcp_addr, self.addr)) if a]

    def is_infected_aio(self) -> bool:
        return self.config.infect_asyncio

    # -- lifecycle ---------------------------------------------------------------------
    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. ``task_status.started()`` once reachable."""
        try:
            self.functions.import_enabled()
        except Exception as exc:
            if self.parent_addr is None:
                raise  # a root's caller gets it
            await self._report_start_failure(exc)
            return
        undo_addons = _hooks.actor_running(self)  # e.g. the debugger's stack dumps and breakpoint()
        try:
            async with trio.open_nursery() as transport_n:
                self._transport_n = transport_n
                await self._listen()
                async with trio.open_nursery() as rpc_n:
                    self.dispatcher.serve_in(rpc_n)
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
                self._stop_accepting()
                await self._unregister_self()
                await self._close_all_channels()
                transport_n.cancel_scope.cancel()
        finally:
            undo_addons()
            self._stop_accepting()
            self._transport_n = None
            if self._drops is not None:
                self._drops.flush()
            for listener in self._listeners:
                with trio.CancelScope(shield=True):
                    await listener.aclose()
            if self.addr:
                _transport.cleanup(self.addr)
            if self.is_arbiter:
                for addr in self.config.registry_addrs:
                    if addr.startswith("uds:"):
                        _transport.cleanup(addr)

    async def _report_start_failure(self, exc: Exception) -> None:
        """Tell the parent why this child cannot start (an ``enable_modules`` entry did
        not import), then end without serving: its calls must not run here."""
        log.info("actor %s cannot start: %s: %s", self.uid, type(exc).__name__, exc)
        assert self.parent_addr is not None
        chan = await connect(self.parent_addr, self.secret, self.ident)
        async with trio.open_nursery() as n:
            n.start_soon(chan.run_writer)
            chan.send_nowait(Error(None, box_error(trim_import_frames(exc), self.uid)))
            await chan.aclose()

    def _stop_accepting(self) -> None:
        self._accepting = False
        self.dispatcher.close()

    def start_service(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in this actor's RPC nursery: the runtime's shutdown cancels
        it first, before it closes channels (e.g. the tree widget's feed).

        Raises:
            RuntimeError: the actor is shutting down.
        """
        self.dispatcher.start_task(fn, *args)

    @property
    def running(self) -> bool:
        """The actor is serving (between the start and the end of ``run``)."""
        return self._transport_n is not None

    def start_until_shutdown(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` until the very end of this actor's shutdown: it is
        cancelled last, after the children are reaped and the channels closed.

        Raises:
            RuntimeError: the actor is not running, or has ended.
        """
        if self._transport_n is None:
            raise RuntimeError(f"actor {self.uid} is not running")
        self._transport_n.start_soon(fn, *args)

    def resolve(self, ns: str, func: str, code: bytes | None) -> Callable[..., Any]:
        """The function a peer's call names, enforcing ``enable_modules`` (``ns`` is a
        module, or ``"self"`` for this actor's own RPC methods; ``code`` a cloudpickled
        function sent by value)."""
        if code is not None:
            return self.functions.unpickle(ns, func, code)
        if ns != "self":
            return self.functions.lookup(ns, func)
        method = self._self_rpc.get(func)
        if method is not None:
            return method
        addon = _hooks.self_rpc(func)
        if addon is None:
            offered = sorted(set(self._self_rpc) | set(_hooks.self_rpc_names()))
            raise refused(f"actor {self.uid} has no RPC method {func!r}; it offers {offered}")
        return functools.partial(addon, self)

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when this actor starts cancelling (``cancel_soon``)."""
        self._on_cancel.append(callback)

    def expect_child(self, uid: tuple[str, str], chan: Channel) -> None:
        """A child ``uid`` is starting: its connection back to us becomes ``chan``
        (where its first requests already wait for it)."""
        self._pending_children[uid] = chan

    def peer_failed(self, chan: Channel, err: ErrorInfo) -> None:
        """``chan``'s actor reports that it failed as a whole (not one call): a child
        that could not start tells its supervisor, anyone else is logged."""
        child = self.children.get(chan.uid) if chan.uid else None
        if child is not None and hasattr(child, "failed_to_start"):
            child.failed_to_start(unbox(err))
        else:
            log.error("actor %s reports a channel error: %s", chan.uid, err.message)

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

        bind_addr = self.config.bind_addr
        if bind_addr is None:
            if self.parent_addr is None:
                sweep_stale(runtime_dir())
            bind_addr = "uds:" + socket_path(self.name, self.uid[1])
        self._aliases = await _resolve_aliases(self.config.also_known_as)
        listeners, self.addr = await _transport.listen(bind_addr, secret=self.secret)
        self._serve_listeners(listeners)
        if self.parent_addr is None:
            await self._maybe_become_registry()
        if self.tcp_bind is not None and self.tcp_addr is None and not self.addr.startswith("tcp:"):
            # the tree's registry is on loopback TCP: be reachable there too (behind the
            # same handshake); children still dial our Unix socket
            listeners, self.tcp_addr = await _transport.listen(self.tcp_bind, secret=self.secret)
            self._serve_listeners(listeners)

    def _serve_listeners(self, listeners: list[trio.abc.Listener[trio.abc.Stream]]) -> None:
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
        addr = self.config.registry_addrs[0]
        try:
            listeners, bound = await _transport.listen(addr, secret=self.secret)
        except OSError as exc:
            log.info("registry address %s is taken (%s): joining that registry", addr, exc)
            return
        self.is_arbiter = True
        self._serve_listeners(listeners)
        if bound.startswith("tcp:") and not self.addr.startswith("tcp:"):  # type: ignore[union-attr]
            self.tcp_addr = bound  # as in tractor, the registry's actor accepts at its address
        self.registry.register(self.uid, self.registered_addr)

    async def _accept_loop(self, listener: trio.abc.Listener[trio.abc.Stream], gate: HandshakeGate) -> None:
        while True:
            try:
                stream = await listener.accept()
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            except OSError as exc:  # e.g. out of file descriptors: back off, keep serving
                log.warning("accept failed on %s: %s", self.addr, exc)
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
            self.registry.register(uid, ident.addr)  # type: ignore[arg-type]
        chan.attach(stream, ident, rest)
        await self._serve_channel(chan)

    async def connect_to(self, addr: Any) -> Channel:
        """A served channel to the actor at ``addr`` (any form ``_transport.normalize_addr``
        reads, e.g. a registry's ``(host, port)``; cached per address)."""
        addr = _transport.normalize_addr(addr)
        chan = self._chans_by_addr.get(addr)
        if chan is not None and not chan.closed:
            return chan
        lock = self._connect_locks.setdefault(addr, trio.Lock())
        async with lock:
            chan = self._chans_by_addr.get(addr)
            if chan is not None and not chan.closed:
                return chan
            if self.parent_chan is not None and self.parent_chan.peer_addr == addr and not self.parent_chan.closed:
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
            await chan.serve(functools.partial(self.dispatcher.dispatch, chan))
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
            if self.is_arbiter and chan.uid in self.registry and chan.uid != self.uid:
                # its last channel closed: the actor is gone, even if it was SIGKILLed
                # (test_discovery.py::test_killed_actor_leaves_registry)
                self.registry.unregister(chan.uid)  # type: ignore[arg-type]
        for call in list(chan.calls.values()):
            call.cancel_by(chan.uid)  # the caller is gone: stop working for it
            call.wake()

    # -- registry ----------------------------------------------------------------------
    async def _register_self(self) -> None:
        if self.is_arbiter:
            return
        try:
            with trio.move_on_after(5):
                reg = await self.connect_to(self.config.registry_addrs[0])
                from ._portal import Portal

                await Portal(reg, self).run_from_ns(
                    "self", "register_actor", uid=list(self.uid), addr=self.registered_addr
                )
        except HandshakeError as exc:  # something that is not our tree holds the address
            log.warning(
                "actor %s did not register at %s: whatever listens there is not an actor of your tree "
                "(another user's program?): %s",
                self.uid,
                self.config.registry_addrs[0],
                exc,
            )
        except (OSError, RemoteActorError, TransportClosed, trio.BrokenResourceError) as exc:
            log.info("actor %s could not register at %s: %s", self.uid, self.config.registry_addrs, exc)

    async def _unregister_self(self) -> None:
        if self.is_arbiter:
            return
        chan = self._chans_by_addr.get(self.config.registry_addrs[0]) if self.config.registry_addrs else None
        if chan is not None and not chan.closed:
            from ._portal import Portal

            with trio.CancelScope(shield=True), trio.move_on_after(0.5):
                try:
                    await Portal(chan, self).run_from_ns("self", "unregister_actor", uid=list(self.uid))
                except Exception:
                    pass

    async def get_registry(self) -> dict[str, Any]:
        """``{'name.uuid': addr}`` for every registered actor (tractor's shape; an
        address is ``(host, port)`` for TCP, ``'uds:/path'`` for a Unix socket).

        A coroutine, as tractor's: ``await actor.get_registry()``, or remotely
        ``await portal.run_from_ns('self', 'get_registry')``.
        """
        return self.registry.by_key()

    async def how_child_ended(self, parent: str, uid: tuple[str, str], during: str) -> RemoteActorError | None:
        """How actor ``uid`` failed as its parent at ``parent`` reports it (ActorCrashed, or
        the error it could not start with), or None (a peer's channel closed: its
        parent knows how it ended)."""
        from ._portal import Portal

        with trio.move_on_after(ASK_PARENT_TIMEOUT):
            try:
                chan = await self.connect_to(parent)
                fields = await Portal(chan, self).run_from_ns("self", "crash_of_child", uid=list(uid), during=during)
            except (OSError, HandshakeError, TransportClosed, RemoteActorError):
                return None  # the parent is gone too, or cannot tell: the closed channel is all we know
            if fields:
                return unbox(ErrorInfo(**fields))
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
