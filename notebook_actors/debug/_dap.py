"""The Debug Adapter Protocol (DAP) inside an actor, carried by the tree.

``serve_dap()`` (an RPC every actor serves) starts debugpy in the actor on demand and
has it dial out to a one-shot socket of the actor's bridge thread (debugpy's own
listening mode would accept any local user, at any time, each new client replacing
the last: another user could attach and evaluate code as you). The bridge thread runs its own trio loop (a breakpoint stops the actor's trio thread, and
pydevd suspends every traced thread: the bridge is marked as one of pydevd's own) and
carries DAP messages over an ordinary authenticated channel to the actor's parent,
where the ``_dap_relay`` context hands them to the front end that registered with
:func:`set_dap_handler` (the notebook kernel proxies JupyterLab's ``debug_request``s).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._context import context

log = logging.getLogger("notebook_actors.debug")

#: ``handler(uid, send, receive)``: ``await send(msg)`` sends a DAP message to actor
#: ``uid``'s debugpy, ``async for msg in receive`` yields its responses and events.
DapHandler = Callable[[Any, Callable[[dict[str, Any]], Awaitable[None]], Any], Awaitable[None]]
_handler: DapHandler | None = None
#: seconds serve_dap waits for debugpy to connect to the bridge (a hang guard)
CONNECT_TIMEOUT = 10.0


def set_dap_handler(handler: DapHandler | None) -> DapHandler | None:
    """Where the root sends actors' DAP sessions (None: refuse them). Returns the old one."""
    global _handler
    old, _handler = _handler, handler
    return old


# -- in the debugged actor --------------------------------------------------------------


def serve_dap() -> int:
    """RPC: start debugpy here (once), bridge it to the parent; return debugpy's port.

    Raises:
        RuntimeError: this actor is the root (it has no parent to carry the session).
    """
    from .._state import current_actor

    actor = current_actor()
    if actor.parent_addr is None:
        raise RuntimeError("the root actor has no parent to carry a DAP session: debug a child actor")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # no frozen-modules warning
    import debugpy  # noqa: T100 - the debugger is what was asked for

    sock = _connection_from_debugpy(debugpy)
    threading.Thread(target=_bridge, args=(actor, sock), name="notebook_actors-dap", daemon=True).start()
    port: int = sock.getsockname()[1]
    return port


def _connection_from_debugpy(debugpy: Any) -> socket.socket:
    """A socket debugpy has connected to, from this very process, on a one-shot
    loopback listener that is closed before this returns.

    Another local user may find the listener's port and connect first: a connection
    from any socket that is not this process' own is closed (logged), and accepting
    goes on until debugpy's arrives (CONNECT_TIMEOUT at most).

    Raises:
        TimeoutError: debugpy did not connect in time.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        # debugpy.connect() returns only once the client sends configurationDone
        dial = threading.Thread(
            target=debugpy.connect, args=(("127.0.0.1", port),), name="notebook_actors-dap-dial", daemon=True
        )
        dial.start()
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            listener.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                raise TimeoutError(
                    f"debugpy did not connect to the debugger bridge within {CONNECT_TIMEOUT:g} s"
                ) from None
            if _from_this_process(peer):
                conn.setblocking(True)
                return conn
            log.warning("the debugger bridge refused a connection from %s:%s (not debugpy in this actor)", *peer[:2])
            conn.close()


def _from_this_process(peer: tuple[str, int]) -> bool:
    """Whether the TCP socket at ``peer`` (a loopback address) is one of this process'."""
    import psutil

    own = {(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections(kind="tcp") if c.laddr}
    return (peer[0], peer[1]) in own


def _bridge(actor: Any, sock: socket.socket) -> None:
    me = threading.current_thread()
    me.is_pydev_daemon_thread = True  # type: ignore[attr-defined]  # never suspended by a breakpoint
    me.pydev_do_not_trace = True  # type: ignore[attr-defined]
    try:
        trio.run(_carry, actor, sock)
    except Exception:
        log.warning("the DAP bridge of actor %s ended", actor.uid, exc_info=True)
    finally:
        sock.close()


async def _carry(actor: Any, raw: socket.socket) -> None:
    import msgspec

    from .._channel import connect
    from .._exceptions import TransportClosed
    from ..msg import Credit, Start, Stop, Yield, any_decoder, encoder

    dap = trio.socket.from_stdlib_socket(raw)
    chan = await connect(actor.parent_addr, actor.secret, actor.ident)
    try:
        async with trio.open_nursery() as n:
            n.start_soon(chan.run_writer)
            cid = chan.next_cid()
            chan.send_nowait(Start(cid, __name__, "_dap_relay", {"requester": list(actor.uid)}, "context"))
            chan.send_nowait(Credit(cid, 1 << 30))
            credit = [0]
            credit_changed = trio.lowlevel.ParkingLot()

            async def up() -> None:  # debugpy -> the tree
                async for message in _read_dap(dap):
                    while credit[0] <= 0:
                        await credit_changed.park()
                    credit[0] -= 1
                    chan.send_nowait(Yield(cid, msgspec.Raw(encoder.encode(message))))
                chan.send_nowait(Stop(cid))
                n.cancel_scope.cancel()

            n.start_soon(up)
            while True:  # the tree -> debugpy
                try:
                    batch = await chan.receive_batch()
                except TransportClosed:
                    break
                for msg in batch:
                    if type(msg) is Credit:
                        credit[0] += msg.n
                        credit_changed.unpark_all()
                    elif type(msg) is Yield:
                        await _write_dap(dap, any_decoder.decode(msg.pld))
                    elif type(msg).__name__ in ("Return", "Error", "Stop"):
                        n.cancel_scope.cancel()
            n.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await chan.aclose()


async def _read_dap(sock: Any) -> Any:
    """DAP messages (``Content-Length`` framed JSON) from ``sock`` until it closes."""
    buf = b""
    while True:
        while b"\r\n\r\n" not in buf:
            data = await sock.recv(65536)
            if not data:
                return
            buf += data
        head, _, buf = buf.partition(b"\r\n\r\n")
        size = next(
            int(v)
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
            if k.strip().lower() == b"content-length"
        )
        while len(buf) < size:
            data = await sock.recv(65536)
            if not data:
                return
            buf += data
        body, buf = buf[:size], buf[size:]
        yield json.loads(body)


async def _write_dap(sock: Any, message: Any) -> None:
    body = json.dumps(message).encode()
    data = b"Content-Length: %d\r\n\r\n" % len(body) + body
    while data:
        sent = await sock.send(data)
        data = data[sent:]


# -- at the root ------------------------------------------------------------------------------


@context
async def _dap_relay(ctx: Any, requester: list[str]) -> None:
    """A child's DAP bridge connected: hand its session to the registered front end."""
    handler = _handler
    if handler is None:
        raise RuntimeError("no front end takes DAP sessions here (the notebook kernel installs one)")
    await ctx.started()
    async with ctx.open_stream() as stream:
        await handler(tuple(requester), stream.send, stream)
