"""JupyterLab's visual debugger (DAP over the kernel's control channel) on an actor.

``%actor debugger NAME`` starts debugpy in actor NAME (on demand, loopback only; see
:mod:`notebook_actors.debug._dap`: the session travels over the tree's authenticated
channel) and from then on this kernel proxies every ``debug_request`` to it: the
replies go back as ``debug_reply`` on the control channel, the actor's events
(``stopped``, ``continued``, ``output``...) as ``debug_event`` on IOPub. ``%actor
debugger off`` (or the actor's end) gives the requests back to the kernel's own
debugger.

Threads: ipykernel answers control requests on its own thread and event loop; the
session lives in trio (the guest on the shell's loop). A request crosses with the trio
token, its reply comes back with ``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

import trio
from IPython.core.error import UsageError

from notebook_actors.debug import _dap

from ._commands import command

log = logging.getLogger("notebook_actors.kernel.dap")

#: Seconds the actor gets to answer one DAP request (a hang guard).
REQUEST_TIMEOUT = 30.0


def _kernel() -> Any:
    from IPython import get_ipython

    return getattr(get_ipython(), "kernel", None)


class ActorDebugSession:
    """One actor's DAP session, proxied for the kernel's control channel."""

    def __init__(self, uid: Any, send: Any, token: trio.lowlevel.TrioToken) -> None:
        self.uid = uid
        self.name = str(uid[0])
        self._send = send
        self._token = token
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._outbox, self._outbox_recv = trio.open_memory_channel[dict[str, Any]](math.inf)
        self.ended = trio.Event()

    async def serve(self, receive: Any) -> None:
        """Carry requests to the actor and its answers back, until the bridge closes."""
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._send_requests)
                async for message in receive:
                    self._deliver(message)
                n.cancel_scope.cancel()
        finally:
            self.ended.set()
            for loop, future in self._waiting.values():
                loop.call_soon_threadsafe(_fail, future, f"actor {self.name} ended its debug session")
            self._waiting.clear()

    async def _send_requests(self) -> None:
        async for message in self._outbox_recv:
            await self._send(message)

    def _deliver(self, message: dict[str, Any]) -> None:
        if message.get("type") == "response":
            waiting = self._waiting.pop(message.get("request_seq", -1), None)
            if waiting is not None:
                loop, future = waiting
                loop.call_soon_threadsafe(_resolve, future, message)
            return
        kernel = _kernel()
        if kernel is not None and message.get("type") == "event":
            kernel.session.send(
                kernel.iopub_socket,
                "debug_event",
                message,
                parent=kernel.get_parent("control"),
            )

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """From the control thread's loop: send one DAP request, await its response."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting[message.get("seq", 0)] = (loop, future)
        self._token.run_sync_soon(self._outbox.send_nowait, message)
        return await asyncio.wait_for(future, REQUEST_TIMEOUT)


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], why: str) -> None:
    if not future.done():
        future.set_exception(RuntimeError(why))


class _Proxy:
    """Which actor the kernel's ``debug_request``s go to (None: the kernel's own debugger)."""

    def __init__(self) -> None:
        self.target: str | None = None
        self.sessions: dict[Any, ActorDebugSession] = {}
        self.arrived = trio.lowlevel.ParkingLot()
        self._original: Any = None

    def session(self) -> ActorDebugSession | None:
        return next((s for s in self.sessions.values() if s.name == self.target and not s.ended.is_set()), None)

    async def handle(self, uid: Any, send: Any, receive: Any) -> None:
        """The root's DAP handler: an actor's bridge connected."""
        session = ActorDebugSession(uid, send, trio.lowlevel.current_trio_token())
        self.sessions[uid] = session
        self.arrived.unpark_all()
        try:
            await session.serve(receive)
        finally:
            if self.sessions.get(uid) is session:
                del self.sessions[uid]

    def hook(self, kernel: Any) -> None:
        if self._original is None:
            self._original = kernel.do_debug_request
            kernel.do_debug_request = self.do_debug_request

    def unhook(self, kernel: Any) -> None:
        if self._original is not None:
            kernel.do_debug_request = self._original
            self._original = None

    async def do_debug_request(self, message: dict[str, Any]) -> dict[str, Any]:
        session = self.session()
        if session is None:
            return await self._original(message)
        try:
            return await session.request(message)
        except (TimeoutError, RuntimeError) as exc:
            return {
                "type": "response",
                "request_seq": message.get("seq"),
                "success": False,
                "command": message.get("command"),
                "message": f"actor {session.name}: {exc or 'no answer'}",
            }


proxy = _Proxy()


def install() -> None:
    """Take actors' DAP sessions at this kernel's root actor (the extension's load)."""
    _dap.set_dap_handler(proxy.handle)


@command(
    "debugger",
    "debugger NAME|off",
    "send JupyterLab's debugger (the debug panel) to actor NAME; `off` gives it back to the kernel",
    needs_name=True,
)
async def _debugger_command(session: Any, args: list[str]) -> None:
    kernel = _kernel()
    if kernel is None:
        raise UsageError("the visual debugger needs a Jupyter kernel")
    if args == ["off"]:
        proxy.target = None
        proxy.unhook(kernel)
        print("[notebook_actors] the debugger panel debugs the kernel again")
        return
    name = args[0]
    handle = session.actors.handles.get(name)
    if handle is None or not handle.uid:
        raise UsageError(f"no actor {name!r} in this notebook (`%actor ls` lists them)")
    uid = tuple(handle.uid)
    if uid not in proxy.sessions:
        import notebook_actors as na

        async with na.find_actor(name) as portal:
            if portal is None:
                raise UsageError(f"actor {name!r} is not reachable (has it exited?)")
            await portal.run_from_ns("notebook_actors.debug._dap", "serve_dap")
        with trio.fail_after(REQUEST_TIMEOUT):
            while uid not in proxy.sessions:
                await proxy.arrived.park()
    proxy.target = name
    proxy.hook(kernel)
    print(f"[notebook_actors] the debugger panel now debugs actor {name} (`%actor debugger off` to stop)")
