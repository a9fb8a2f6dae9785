"""The ``"forkserver"`` spawn backend: a warm template process that forks actors.

A fresh ``python -m notebook_actors._child`` spends most of its start importing
trio, msgspec and the runtime. The template pays that once: it imports everything
an actor needs, then waits (plain blocking code, no trio run, one thread) for spawn
requests on a private Unix socket and answers each with ``fork()``. The forked child
starts its trio run from an already-imported interpreter and connects back to the
actor that asked for it, exactly as a subprocess child does.

Who owns the template: the first actor in a process that spawns with
``start_method="forkserver"`` starts it (or call :func:`ensure_started` early, so
that even the first spawn is fast); it stops when that actor's runtime ends (started
outside a runtime: call :func:`stop`). Descendants find it through the
``NOTEBOOK_ACTORS_FORKSERVER`` environment variable and reuse it.

Traps:
- The template snapshots the environment and ``sys.path`` of the moment it started;
  a child gets its spawner's ``sys.path`` and working directory from the request, but
  environment variables set later in the spawner do not reach it.
- Forked actors are children of the template, not of the actor that spawned them,
  and ``ps`` shows them with the template's command line.
  Their exit status travels back over the request's connection; zombie safety holds:
  a forked actor exits when its parent's channel closes, and dies with the template,
  which dies with its owner (both watch their parent: ``_child._die_with_parent``).
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from ._spawn import ChildProcess

ENV_VAR = "NOTEBOOK_ACTORS_FORKSERVER"
_LISTEN_FD_VAR = "NOTEBOOK_ACTORS_FORKSERVER_FD"
#: Seconds the owner waits for the template to exit after asking it to stop.
STOP_GRACE = 5.0
_HEADER = 4
#: Largest spawn request the template reads (a boot spec is a few KiB): a bigger
#: announced size is refused instead of allocated.
MAX_REQUEST = 1 << 20
#: Seconds the template waits for a connected spawner to send its request: the
#: template serves one request at a time, a stalled peer must not freeze it.
REQUEST_TIMEOUT = 10.0


# --- framing (tiny, blocking on the template side) ---------------------------------


def _pack(obj: Any) -> bytes:
    import msgspec

    body = msgspec.msgpack.encode(obj)
    return len(body).to_bytes(_HEADER, "big") + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _recv_obj(sock: socket.socket) -> Any:
    import msgspec

    size = int.from_bytes(_recv_exact(sock, _HEADER), "big")
    if size > MAX_REQUEST:
        raise ValueError(f"request of {size} bytes exceeds the limit of {MAX_REQUEST}")
    return msgspec.msgpack.decode(_recv_exact(sock, size))


# --- the template process ------------------------------------------------------------


def _preload() -> None:
    """Import what every actor needs, so forked children start warm.

    Only that: every page the template holds counts in each forked actor's RSS.
    ``NOTEBOOK_ACTORS_FORKSERVER_PRELOAD=mod1,mod2`` adds modules (e.g. ``cloudpickle``
    for notebooks, which ship cell-defined functions by value).
    """
    import msgspec  # noqa: F401
    import trio  # noqa: F401

    import notebook_actors  # noqa: F401
    from notebook_actors import _child, _portal, _runtime, _supervise  # noqa: F401
    from notebook_actors._transport import _tcp, _uds  # noqa: F401

    for name in filter(None, os.environ.get("NOTEBOOK_ACTORS_FORKSERVER_PRELOAD", "").split(",")):
        try:
            __import__(name)
        except Exception as exc:  # a preload is an optimisation, never fatal
            print(f"notebook_actors fork server: cannot preload {name!r}: {exc}", file=sys.stderr)


class _Template:
    """The template's loop: accept requests, fork, report exit statuses."""

    def __init__(self, listener: socket.socket) -> None:
        import selectors

        self.listener = listener
        self.sel = selectors.DefaultSelector()
        self.conns: dict[int, socket.socket] = {}  # pid -> the request's connection
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd does the work
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        self.sel.register(0, selectors.EVENT_READ, "owner")  # stdin EOF: the owner is done
        self.sel.register(self.wake_r, selectors.EVENT_READ, "sigchld")

    def run(self) -> None:
        while not (self.stopping and not self.conns):
            for key, _ in self.sel.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "owner":
                    if not os.read(0, 4096):
                        self._stop_accepting()
                elif key.data == "sigchld":
                    try:
                        while os.read(self.wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
            self._reap()

    def _stop_accepting(self) -> None:
        self.stopping = True
        self.sel.unregister(0)
        self.sel.unregister(self.listener)
        self.listener.close()

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(REQUEST_TIMEOUT)
        try:
            request = _recv_obj(conn)
            if not isinstance(request, dict):
                raise ValueError(f"expected a map, got {type(request).__name__}")
            if request.get("ping"):  # readiness probe: answered once preloaded
                conn.sendall(_pack("pong"))
                conn.close()
                return
            conn.settimeout(None)
            pid = os.fork()
        except Exception as exc:  # any bad request (even a RecursionError) spares the template
            print(f"notebook_actors fork server: bad spawn request: {type(exc).__name__}: {exc}", file=sys.stderr)
            conn.close()
            return
        if pid == 0:
            self._become_actor(conn, request)  # never returns
        self.conns[pid] = conn
        try:
            conn.sendall(_pack(pid))
        except OSError:
            pass  # the spawner is gone; the child will find its parent gone too

    def _reap(self) -> None:
        while self.conns:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.conns.pop(pid, None)
            if conn is not None:
                try:
                    conn.sendall(_pack(os.waitstatus_to_exitcode(status)))
                except OSError:
                    pass
                conn.close()

    def _become_actor(self, conn: socket.socket, request: dict[str, Any]) -> None:
        """In the forked child: drop the template's state, then run the actor."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self.sel.close()
            for fd in (self.wake_r, self.wake_w):
                os.close(fd)
            self.listener.close()
            for other in self.conns.values():
                other.close()
            conn.close()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)  # an actor never reads the owner's stdin pipe
            os.close(devnull)
            os.setsid()
            from . import _child

            _child._die_with_parent()
            if request.get("cwd"):
                try:
                    os.chdir(request["cwd"])
                except OSError:
                    pass
            _child.run_child(_child._decode_boot(request["boot"]))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)


def _trim_heap() -> None:
    """Hand freed heap pages back to the OS before forking: each forked actor maps
    (and counts in its RSS) every resident page of the template."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):
            pass


def template_main() -> None:
    """Entry point of the template process (``python -m notebook_actors._forkserver``)."""
    from . import _child

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only its owner stops it
    _child._die_with_parent()
    listener = socket.socket(fileno=int(os.environ.pop(_LISTEN_FD_VAR)))
    os.environ[ENV_VAR] = listener.getsockname()
    _preload()
    import gc

    gc.collect()
    gc.freeze()  # the preloaded objects never move: forked actors share those pages
    _trim_heap()
    _Template(listener).run()


# --- the owner's side (trio) -----------------------------------------------------------


class ForkServer:
    """A running template, owned (started, stopped) by this process or inherited."""

    def __init__(self, path: str, proc: Any = None) -> None:
        self.path = path
        self.proc = proc  # trio.Process when we own it

    @property
    def owned(self) -> bool:
        return self.proc is not None

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.returncode is None
        return os.path.exists(self.path)

    async def wait_ready(self) -> None:
        """Return once the template has preloaded and answers requests."""
        import trio

        stream = await trio.open_unix_socket(self.path)
        async with stream:
            await stream.send_all(_pack({"ping": True}))
            reader = ForkedChild(stream)
            if await reader._read() != "pong":
                raise RuntimeError(f"the fork server at {self.path} gave a wrong answer to a ping")

    async def aclose(self) -> None:
        """Ask the template to stop (it exits once its last actor has), then wait."""
        import trio

        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with trio.CancelScope(shield=True):
            if proc.stdin is not None:
                await proc.stdin.aclose()
            with trio.move_on_after(STOP_GRACE):
                await proc.wait()
                return
            proc.kill()
            await proc.wait()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


_server: ForkServer | None = None


async def ensure_started(*, wait_ready: bool = False) -> ForkServer:
    """Start this process' fork server (or find the inherited one) and return it.

    Call it early (e.g. right after the root actor starts) so that the first
    ``start_method="forkserver"`` spawn does not pay for the template's imports.
    Spawns sent before the template is ready simply queue; ``wait_ready=True`` waits
    until it has finished importing (about as long as one subprocess spawn).
    """
    global _server
    if _server is None or not _server.alive():
        inherited = os.environ.get(ENV_VAR)  # a template inherited from an ancestor
        if inherited and os.path.exists(inherited) and (_server is None or _server.path != inherited):  # noqa: ASYNC240
            _server = ForkServer(inherited)
        else:
            _server = await _start_template()
    if wait_ready:
        await _server.wait_ready()
    return _server


async def _start_template() -> ForkServer:
    import subprocess
    import uuid

    import trio

    from ._transport._uds import runtime_dir

    path = str(runtime_dir() / f"forkserver-{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(socket.SOMAXCONN)
        # The template inherits the bound socket, so spawn requests can queue in its
        # backlog before it finished importing: no readiness handshake needed.
        env = dict(os.environ, **{_LISTEN_FD_VAR: str(listener.fileno())})
        env.pop(ENV_VAR, None)
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "notebook_actors._forkserver"],
            stdin=subprocess.PIPE,
            pass_fds=[listener.fileno()],
            env=env,
            start_new_session=True,
        )
    finally:
        listener.close()
    server = ForkServer(path, proc)
    from ._state import current_actor_or_none

    actor = current_actor_or_none()
    if actor is not None and actor._transport_n is not None:
        # The actor's transport nursery is cancelled last in its shutdown, after its
        # children are reaped: the template goes with it.
        actor._transport_n.start_soon(_stop_with_actor, server)
    return server


async def _stop_with_actor(server: ForkServer) -> None:
    import trio

    try:
        await trio.sleep_forever()
    finally:
        global _server
        if _server is server:
            _server = None
        await server.aclose()


async def stop() -> None:
    """Stop the fork server this process owns, if any.

    One started inside a runtime stops by itself when the actor that started it ends;
    call this for one started outside any runtime.
    """
    global _server
    server, _server = _server, None
    if server is not None:
        await server.aclose()


async def start_process(boot: Any) -> ForkedChild:
    """Fork an actor for ``boot`` from the template; the ``_spawn`` backend entry."""
    import trio

    from .msg import encoder

    global _server
    server = await ensure_started()
    try:
        stream = await trio.open_unix_socket(server.path)
    except OSError:
        if server.owned:
            raise
        _server = None  # an inherited template that is gone: start our own
        if os.environ.get(ENV_VAR) == server.path:
            del os.environ[ENV_VAR]
        server = await ensure_started()
        stream = await trio.open_unix_socket(server.path)
    child = ForkedChild(stream)
    try:
        await stream.send_all(_pack({"boot": encoder.encode(boot), "cwd": os.getcwd()}))
        child.pid = await child._read()
    except BaseException:
        with trio.CancelScope(shield=True):
            await stream.aclose()
        raise
    return child


class ForkedChild(ChildProcess):
    """An actor forked by the template: its exit status arrives over ``stream``."""

    def __init__(self, stream: Any) -> None:
        super().__init__(0)
        self._stream = stream
        self._buf = bytearray()
        self._returncode: int | None = None

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def _read(self) -> Any:
        import msgspec

        buf = self._buf
        while len(buf) < _HEADER or len(buf) < _HEADER + int.from_bytes(buf[:_HEADER], "big"):
            chunk = await self._stream.receive_some(4096)
            if not chunk:
                raise EOFError("the fork server closed the connection")
            buf += chunk
        end = _HEADER + int.from_bytes(buf[:_HEADER], "big")
        obj = msgspec.msgpack.decode(bytes(buf[_HEADER:end]))
        del buf[:end]
        return obj

    async def wait(self) -> int:
        if self._returncode is None:
            try:
                self._returncode = int(await self._read())
            except EOFError:
                # The template died (it takes its children with it): report a kill.
                self._returncode = -signal.SIGKILL
            import trio

            with trio.CancelScope(shield=True):
                await self._stream.aclose()
        return self._returncode


if __name__ == "__main__":
    template_main()
