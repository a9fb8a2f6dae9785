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
import json
import logging
import math
import os
from typing import Any

import trio
from IPython.core.error import UsageError

from notebook_actors import ext

from ._commands import command

log = logging.getLogger("notebook_actors.kernel.dap")

#: Seconds the actor gets to answer one DAP request (a hang guard).
REQUEST_TIMEOUT = 30.0
#: Packages whose frames the panel's call stack leaves out (unless justMyCode is off):
#: the core and this kernel extension (``notebook_actors.kernel_ext``, its own folder).
RUNTIME_PACKAGES = ("notebook_actors", __name__.rpartition(".")[0])


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
        #: What JupyterLab's ``debugInfo`` restores a panel from.
        self.started = False
        self.breakpoints: dict[str, list[dict[str, Any]]] = {}
        self.stopped_threads: set[int] = set()
        #: configurationDone went to debugpy (once, after attach)
        self.configured = False
        #: sequence numbers of the proxy's own requests, apart from the client's
        self._own_seq = 1 << 40

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
        self._track(message)
        kernel = _kernel()
        if kernel is not None and message.get("type") == "event":
            kernel.session.send(
                kernel.iopub_socket,
                "debug_event",
                message,
                parent=kernel.get_parent("control"),
            )

    def _track(self, event: dict[str, Any]) -> None:
        body = event.get("body") or {}
        if event.get("event") == "stopped":
            self.stopped_threads.add(body.get("threadId"))
        elif event.get("event") == "continued":
            if body.get("allThreadsContinued", True):
                self.stopped_threads.clear()
            else:
                self.stopped_threads.discard(body.get("threadId"))

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """From the control thread's loop: answer ipykernel's own requests here, send
        the DAP ones to the actor's debugpy and await its response."""
        local = _LOCAL.get(message.get("command", ""))
        if local is not None:
            return local(self, message)
        if message.get("command") == "configurationDone" and self.configured:
            return _reply(message)  # sent already, after attach
        if message.get("command") == "attach":
            arguments = message.setdefault("arguments", {})
            # the runtime's own frames (running the cell, serving the RPC) are not the
            # user's code: not in the call stack, not stepped into (justMyCode)
            arguments.setdefault("rules", _runtime_rules())
        response = await self._forward(message)
        if message.get("command") == "initialize" and response.get("success"):
            self.started = True
        elif message.get("command") == "attach" and response.get("success") and not self.configured:
            # JupyterLab never sends configurationDone (ipykernel's debugger sends it
            # after attach), and debugpy sets no breakpoint before it: send it here.
            self._own_seq += 1
            done = await self._forward({"type": "request", "seq": self._own_seq, "command": "configurationDone"})
            self.configured = bool(done.get("success"))
        elif message.get("command") == "setBreakpoints" and response.get("success"):
            path = message["arguments"]["source"]["path"]
            self.breakpoints[path] = [{"line": b["line"]} for b in response["body"]["breakpoints"] if "line" in b]
        elif message.get("command") == "continue" and response.get("success"):
            self.stopped_threads.clear()
        return response

    async def _forward(self, message: dict[str, Any]) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._waiting[message.get("seq", 0)] = (loop, future)
        self._token.run_sync_soon(self._outbox.send_nowait, message)
        return await asyncio.wait_for(future, REQUEST_TIMEOUT)


# -- the requests ipykernel's debugger answers itself (JupyterLab sends them too) ------------
# JupyterLab names a cell's code by a hash of its text in the kernel's temporary folder
# (``debugInfo`` says how, ``dumpCell`` writes the file); an ``%%actor`` cell run while
# the panel debugs its actor is compiled under that name (:func:`cell_filename`), so
# breakpoints set in the notebook's cells are breakpoints in the actor.


def _reply(message: dict[str, Any], body: dict[str, Any] | None = None, success: bool = True) -> dict[str, Any]:
    reply = {"type": "response", "request_seq": message.get("seq"), "success": success}
    return {**reply, "command": message.get("command"), "body": body or {}}


def _debug_info(session: ActorDebugSession, message: dict[str, Any]) -> dict[str, Any]:
    from ipykernel.compiler import get_tmp_directory, get_tmp_hash_seed

    return _reply(
        message,
        {
            "isStarted": session.started,
            "hashMethod": "Murmur2",
            "hashSeed": get_tmp_hash_seed(),
            "tmpFilePrefix": get_tmp_directory() + os.sep,
            "tmpFileSuffix": ".py",
            "breakpoints": [{"source": path, "breakpoints": bps} for path, bps in session.breakpoints.items()],
            "stoppedThreads": sorted(session.stopped_threads),
            "richRendering": False,
            "exceptionPaths": ["Python Exceptions"],
            "copyToGlobals": False,
        },
    )


def _dump_cell(session: ActorDebugSession, message: dict[str, Any]) -> dict[str, Any]:
    from ipykernel.compiler import get_file_name

    code = message["arguments"]["code"]
    path = get_file_name(code)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(code)
    return _reply(message, {"sourcePath": path})


def _no_variables(session: ActorDebugSession, message: dict[str, Any]) -> dict[str, Any]:
    # the kernel's globals are not the actor's: the panel shows variables when stopped
    return _reply(message, {"variables": []})


def _no_rich_view(session: ActorDebugSession, message: dict[str, Any]) -> dict[str, Any]:
    return _reply(message, {"data": {}, "metadata": {}})


def _source(session: ActorDebugSession, message: dict[str, Any]) -> dict[str, Any]:
    path = (message.get("arguments", {}).get("source") or {}).get("path", "")
    try:
        with open(path, encoding="utf-8") as f:
            return _reply(message, {"content": f.read()})
    except OSError:
        return _reply(message, {"content": ""}, success=False)


_LOCAL = {
    "debugInfo": _debug_info,
    "dumpCell": _dump_cell,
    "inspectVariables": _no_variables,
    "richInspectVariables": _no_rich_view,
    "source": _source,
}


def cell_filename(names: list[str]) -> str | None:
    """The file name JupyterLab knows this cell by, if the panel debugs one of ``names``
    (the cell then runs under it); else None (cells keep their usual name)."""
    if proxy.target not in names or proxy.session() is None:
        return None
    from ipykernel.compiler import get_file_name

    kernel = _kernel()
    code = ((kernel.get_parent("shell") or {}).get("content") or {}).get("code") if kernel else None
    return get_file_name(code) if code else None


def _runtime_rules() -> list[dict[str, Any]]:
    """debugpy's rules leaving the runtime's packages out, by module and by folder (a
    process started as ``python -m notebook_actors...`` runs ``__main__`` from there)."""
    import importlib

    rules: list[dict[str, Any]] = [{"module": "notebook_actors", "include": False}]
    for name in RUNTIME_PACKAGES:
        rules.append({"path": os.path.dirname(importlib.import_module(name).__file__ or ""), "include": False})
    return rules


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
            response = await session.request(message)
            if log.isEnabledFor(logging.DEBUG):  # the request log (tests/browser/test_debugger_panel.py)
                log.debug(
                    "debug_request %s %s -> actor %s: %s %s",
                    message.get("command"),
                    json.dumps(message.get("arguments", {}))[:300],
                    session.name,
                    "ok" if response.get("success") else "FAILED",
                    json.dumps(response.get("body", response.get("message")))[:300],
                )
            return response
        except (TimeoutError, RuntimeError) as exc:
            log.debug("debug_request %s -> actor %s: %r", message.get("command"), session.name, exc)
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
    ext.set_dap_handler(proxy.handle)


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
            await portal.run_from_ns(ext.DAP_NAMESPACE, "serve_dap")
        with trio.fail_after(REQUEST_TIMEOUT):
            while uid not in proxy.sessions:
                await proxy.arrived.park()
    proxy.target = name
    proxy.hook(kernel)
    print(f"[notebook_actors] the debugger panel now debugs actor {name} (`%actor debugger off` to stop)")
