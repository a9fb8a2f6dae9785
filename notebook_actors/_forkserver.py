"""The ``"forkserver"`` spawn backend (the default): a warm template per spawning
actor, whose forks are born children of that actor.

A fresh ``python -m notebook_actors._child`` spends most of its start importing
trio, msgspec and the runtime. A template pays that once: it imports everything an
actor needs, then waits (plain blocking code, no trio run, one thread) for spawn
requests on a private Unix socket and answers each with a fork.

The tree stays real. Each actor that spawns owns its own template, a child process of
its own, and the template forks with ``clone(CLONE_PARENT)``: the new actor's parent
is the template's parent, the spawning actor, from its first instruction. So the
spawning actor reaps it (a pidfd, then ``waitpid``) exactly as it reaps a subprocess
child, ``kill -9`` of any actor is seen by its real parent, the process tree is the
actor tree, and an actor watching its parent (``_child._die_with_parent``) watches
the right process. Why this and not a template shared by the tree (whose forks would
be its children) or adoption by a subreaper: ``docs/design.md``.

Lifetime: the root's (or any subprocess actor's) first spawn starts its template
(or call :func:`ensure_started` earlier, so that even the first spawn is warm; the
kernel extension does at ``%load_ext``). Spawn requests sent before the template has
finished importing wait in its listening socket's backlog. The template exits when
the actor that owns it ends (started outside any runtime: call :func:`stop`), or
when its owner dies.

A forked actor is born with its template (:func:`_fork_born_template`): right after
the clone, before its parent watch thread and ``trio.run`` start, it forks a copy of
itself, still an idle copy of the warm template, which serves its spawns. So
root -> a -> b is warm at every level, and each template is still the child of the
actor that owns it. It costs a process, ~2.3 MB of unique pages and ~4 ms of every
spawn that asks for one, so it is off unless asked for: a spawner gives one to its
first ``$NOTEBOOK_ACTORS_FORKSERVER_NESTED`` live children (default 0 in a program,
which is more often a flat fan-out; the kernel extension sets 16, for ``%%actor
a/b``; see :func:`want_born_templates`). The others start theirs cold on a first
spawn. The actor stops and reaps it at its very end,
after its trio run; the template of an actor killed with SIGKILL exits by itself
(its stdin closes, its parent watch fires). Figures and the alternatives:
``docs/design.md``.

A forked actor gets its spawner's environment, ``sys.path`` and working directory
with the request, as a subprocess would at that moment, and the command line
(``ps``) of a subprocess actor. Its parent's other child, the template, shows as
``python -m notebook_actors._forkserver``.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Any

from ._process import ChildProcess

_LISTEN_FD_VAR = "NOTEBOOK_ACTORS_FORKSERVER_FD"
#: How many of an actor's live forked children get a template at birth (default
#: :data:`BORN_LIMIT`; ``0``: none). See :func:`_born_wanted`.
NESTED_VAR = "NOTEBOOK_ACTORS_FORKSERVER_NESTED"
#: The default of ``$NOTEBOOK_ACTORS_FORKSERVER_NESTED``: none. A born template costs
#: ~2.5 MB (PSS), a process and ~4 ms of its actor's spawn (a flat fan-out of ten
#: takes ~30 % longer), which only pays where actors spawn actors (docs/design.md).
BORN_LIMIT = 0
#: What :func:`want_born_templates` sets by default (the kernel extension's choice).
BORN_LIMIT_WANTED = 16
#: What ``ps`` shows for a template (its real command line) ...
TEMPLATE_MODULE = "notebook_actors._forkserver"


def _actor_title(parent: int) -> str:
    """What ``ps`` shows for an actor the template forked: the command line of a
    subprocess actor (see ``_spawn``)."""
    from ._process import BOOT_SCRIPT

    return f"{sys.executable} -S {BOOT_SCRIPT} {parent}"


#: Seconds the owner waits for the template to exit after asking it to stop.
STOP_GRACE = 5.0
_HEADER = 4
#: Largest spawn request the template reads (a boot spec and an environment are a
#: few KiB): a bigger announced size is refused instead of allocated.
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


# --- forking a sibling -----------------------------------------------------------------

_CLONE_PARENT = 0x00008000
_SYS_CLONE = {"x86_64": 56, "aarch64": 220}


def _fork_as_sibling() -> int:
    """``os.fork()``, except that the child's parent is our parent, not us.

    Python has no ``os.clone``, so this is the raw ``clone`` syscall with only
    ``CLONE_PARENT`` and ``SIGCHLD`` (no new stack: the child continues here, on a
    copy of ours, as after ``fork``), wrapped in the interpreter's own before/after
    fork hooks, as ``os.fork`` does. The template is single-threaded and holds no locks
    when it calls this, so glibc's fork bookkeeping (which a raw syscall skips) has
    nothing to repair.

    Returns:
        0 in the child, the child's pid in the template.

    Raises:
        OSError: the kernel refused (e.g. a seccomp policy).
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    # x86_64 and aarch64 both take (flags, stack, parent_tid, child_tid, tls)
    pid = libc.syscall(
        ctypes.c_long(_SYS_CLONE[os.uname().machine]),
        ctypes.c_ulong(_CLONE_PARENT | signal.SIGCHLD),
        None,
        None,
        None,
        ctypes.c_ulong(0),
    )
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    api.PyOS_AfterFork_Parent()
    pid = int(pid)
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return pid


def supported() -> bool:
    """Whether this machine can fork siblings (Linux on x86_64 or aarch64)."""
    return sys.platform.startswith("linux") and os.uname().machine in _SYS_CLONE and hasattr(os, "pidfd_open")


# --- the template process ------------------------------------------------------------


def _preload() -> None:
    """Import what every actor needs, so forked children start warm.

    Only that: every page the template holds counts in each forked actor's RSS.
    ``NOTEBOOK_ACTORS_FORKSERVER_PRELOAD=mod1,mod2`` adds modules (e.g. ``cloudpickle``
    for notebooks, which ship cell-defined functions by value).
    """
    import msgspec  # noqa: F401
    import setproctitle  # noqa: F401
    import trio  # noqa: F401

    # (``python -m notebook_actors._forkserver`` imported the package, and with it the
    # supervisor, before this module ran)
    from notebook_actors import _child, _portal, _runtime  # noqa: F401
    from notebook_actors._transport import _tcp, _uds  # noqa: F401

    for name in filter(None, os.environ.get("NOTEBOOK_ACTORS_FORKSERVER_PRELOAD", "").split(",")):
        try:
            __import__(name)
        except Exception as exc:  # a preload is an optimisation, never fatal
            print(f"notebook_actors fork server: cannot preload {name!r}: {exc}", file=sys.stderr)


def _serve(listener: socket.socket) -> None:
    """Answer spawn requests until the owner closes our stdin (or dies)."""
    import select

    while True:
        readable, _, _ = select.select([0, listener.fileno()], [], [])
        if 0 in readable and not os.read(0, 4096):
            return
        if listener.fileno() in readable:
            _answer(listener)


def _answer(listener: socket.socket) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(REQUEST_TIMEOUT)
        try:
            request = _recv_obj(conn)
            if not isinstance(request, dict):
                raise ValueError(f"expected a map, got {type(request).__name__}")
            if request.get("ping"):  # readiness probe: answered once preloaded
                conn.sendall(_pack("pong"))
                return
            boot = request["boot"]
        except Exception as exc:  # any bad request (even a RecursionError) spares the template
            print(f"notebook_actors fork server: bad spawn request: {type(exc).__name__}: {exc}", file=sys.stderr)
            return
        try:
            pid = _fork_as_sibling()
        except OSError as exc:
            _send_quietly(conn, {"error": f"cannot fork: {exc}"})
            return
        if pid == 0:
            _become_actor(listener, conn, request, boot)  # never returns
        # the spawner is gone if this fails; the actor then finds its parent gone too
        _send_quietly(conn, pid)


def _send_quietly(conn: socket.socket, obj: Any) -> None:
    try:
        conn.sendall(_pack(obj))
    except OSError:
        pass


def _become_actor(listener: socket.socket, conn: socket.socket, request: dict[str, Any], boot: bytes) -> None:
    """In the forked child: drop the template's state, take the spawner's, run the actor
    (with a template of its own forked first, if the spawner asked for one)."""
    global _server
    code = 1
    born: ForkServer | None = None
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        listener.close()
        conn.close()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # an actor never reads the owner's stdin pipe
        os.close(devnull)
        os.setsid()
        if request.get("template"):
            # now, while this copy of a warm template is still single-threaded: the
            # parent watch below starts a thread, and trio.run more
            born = _fork_born_template()
        parent = request.get("parent")
        from ._boot import die_with_parent

        die_with_parent(parent if isinstance(parent, int) else None)
        import setproctitle

        setproctitle.setproctitle(_actor_title(os.getppid()))
        from . import _child

        env = request.get("env")
        if isinstance(env, dict):
            os.environ.clear()
            os.environ.update(env)
        if request.get("cwd"):
            try:
                os.chdir(request["cwd"])
            except OSError:
                pass
        _server = born
        _child.run_child(_child._decode_boot(boot))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            if born is not None:
                _stop_born_template(born)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# --- the born template: a forked actor's own, forked at its birth ----------------------


#: live children of this process that were forked with a template of their own
_born_live = 0


def born_limit() -> int:
    """``$NOTEBOOK_ACTORS_FORKSERVER_NESTED`` (default :data:`BORN_LIMIT`).

    Raises:
        ValueError: it is not a whole number >= 0.
    """
    raw = os.environ.get(NESTED_VAR, "").strip()
    if not raw:
        return BORN_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        limit = -1
    if limit < 0:
        raise ValueError(f"{NESTED_VAR} must be a whole number >= 0 (born templates per actor), got {raw!r}")
    return limit


def want_born_templates(limit: int = BORN_LIMIT_WANTED) -> None:
    """Give born templates to this process's first ``limit`` live forked children (and,
    through the environment they inherit, to theirs): for trees whose actors spawn,
    e.g. a notebook's ``%%actor a/b``. A ``$NOTEBOOK_ACTORS_FORKSERVER_NESTED`` the
    user set wins."""
    os.environ.setdefault(NESTED_VAR, str(limit))


def _born_wanted() -> bool:
    """Whether the next actor we fork gets a template at birth: while fewer than
    :func:`born_limit` of our live children have one. The others (the bulk of a big
    fan-out, which rarely spawns) start theirs on their first spawn, cold, as a
    subprocess would."""
    return _born_live < born_limit()


def _fork_born_template() -> ForkServer | None:
    """Fork this new actor's own template, before ``trio.run`` (no thread yet).

    The child is a copy of the warm template that forked us, preloaded and frozen,
    sharing its pages: it only needs a socket and a stdin pipe of its own. It is our
    child process, in its own session; it exits when we close the pipe (at our end,
    :func:`_stop_born_template`) or when we die (its parent watch). ``None`` if the
    fork failed (then our first spawn starts a template the slow way, as before).
    """
    import uuid

    from ._transport._uds import runtime_dir

    path = str(runtime_dir() / f"forkserver-{os.getpid()}-{uuid.uuid4().hex[:8]}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    read_end = write_end = -1
    try:
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(socket.SOMAXCONN)
        read_end, write_end = os.pipe()
        owner = os.getpid()
        pid = os.fork()
    except OSError as exc:
        listener.close()
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
        _unlink(path)
        print(f"notebook_actors fork server: no template at birth ({exc})", file=sys.stderr)
        return None
    if pid == 0:
        code = 1
        try:
            os.close(write_end)
            os.dup2(read_end, 0)  # its stdin: closed by the owner to stop it
            os.close(read_end)
            os.setsid()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # only its owner stops it
            import setproctitle

            setproctitle.setproctitle(f"{sys.executable} -m {TEMPLATE_MODULE}")
            from ._boot import die_with_parent

            die_with_parent(owner)
            _serve(listener)
            code = 0
        except BaseException:
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    listener.close()
    os.close(read_end)
    return ForkServer(path, _BornProcess(pid, write_end))


class _PipeEnd:
    """The owner's end of a born template's stdin (``trio.Process.stdin``'s part)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    async def aclose(self) -> None:
        self.close()


class _BornProcess:
    """A born template as its owner sees it: what :class:`ForkServer` uses of a
    ``trio.Process``, through a pidfd (the owner's own child, reaped by the owner)."""

    def __init__(self, pid: int, stdin_fd: int) -> None:
        self.pid = pid
        self.stdin = _PipeEnd(stdin_fd)
        self._pidfd = os.pidfd_open(pid)
        self._returncode: int | None = None

    @property
    def returncode(self) -> int | None:
        if self._returncode is None and self._exited(0):
            self._reap()
        return self._returncode

    def _exited(self, timeout: float) -> bool:
        import select

        return bool(select.select([self._pidfd], [], [], timeout)[0])

    def _reap(self) -> None:
        if self._returncode is not None:
            return
        try:
            _, status = os.waitpid(self.pid, 0)
            self._returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            self._returncode = 0
        os.close(self._pidfd)

    async def wait(self) -> int:
        import trio

        if self._returncode is None:
            await trio.lowlevel.wait_readable(self._pidfd)
            self._reap()
        assert self._returncode is not None
        return self._returncode

    def kill(self) -> None:
        if self.returncode is None:
            os.kill(self.pid, signal.SIGKILL)

    def stop_now(self, grace: float) -> None:
        """Close its stdin and wait for it (``grace`` seconds, then SIGKILL), blocking:
        for the very end of the owner, after its trio run."""
        self.stdin.close()
        if self._returncode is None and not self._exited(grace):
            os.kill(self.pid, signal.SIGKILL)
        self._reap()


def _stop_born_template(server: ForkServer) -> None:
    """At the owner's very end (its trio run is over, its children reaped): stop and
    reap its born template, so that it never outlives it, not even as a zombie."""
    proc = server.proc
    server.proc = None
    if isinstance(proc, _BornProcess):
        proc.stop_now(STOP_GRACE)
    _unlink(server.path)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


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
    _preload()
    import gc

    gc.collect()
    gc.freeze()  # the preloaded objects never move: forked actors share those pages
    _trim_heap()
    _serve(listener)


# --- the owner's side (trio) -----------------------------------------------------------


class ForkServer:
    """This process's template: a child process started, and stopped, by it."""

    def __init__(self, path: str, proc: Any) -> None:
        self.path = path
        self.proc = proc  # trio.Process

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def wait_ready(self) -> None:
        """Return once the template has preloaded and answers requests."""
        import trio

        stream = await trio.open_unix_socket(self.path)
        async with stream:
            await stream.send_all(_pack({"ping": True}))
            if await _read_obj(stream) != "pong":
                raise RuntimeError(f"the fork server at {self.path} gave a wrong answer to a ping")

    async def fork(self, boot: bytes, *, template: bool = False) -> int:
        """Have the template fork an actor (our child) that boots from ``boot``; its pid.
        ``template``: the actor forks a template of its own at birth (a warm first spawn)."""
        import trio

        try:
            stream = await trio.open_unix_socket(self.path)
        except OSError as exc:
            raise RuntimeError(f"the fork server of this actor is gone ({exc})") from None
        request = _pack(
            {
                "boot": boot,
                "cwd": os.getcwd(),
                "env": dict(os.environ),
                "parent": os.getpid(),
                "template": template,
            }
        )
        # Shielded up to the return: once any of the request is out a child may come to
        # exist, and only its pid lets our caller reap it. A ready template answers
        # within milliseconds.
        with trio.CancelScope(shield=True), trio.fail_after(REQUEST_TIMEOUT + STOP_GRACE):
            async with stream:
                try:
                    await stream.send_all(request)
                    answer = await _read_obj(stream)
                except (EOFError, trio.BrokenResourceError):
                    raise RuntimeError(
                        f"the fork server died while forking an actor: {await self._how_it_ended()}"
                    ) from None
        if isinstance(answer, dict):
            raise OSError(f"the fork server could not start an actor: {answer.get('error')}")
        return int(answer)

    async def _how_it_ended(self) -> str:
        """The template's end, in words: its exit code or signal (waited for briefly)."""
        import trio

        proc = self.proc
        if proc is None:
            return "it was stopped"
        with trio.move_on_after(1.0):  # a process that dropped its requests exits at once
            await proc.wait()
        code = proc.returncode
        if code is None:
            return f"its process (pid {proc.pid}) still runs but closed the request"
        if code < 0:
            return f"its process (pid {proc.pid}) was killed by {signal.Signals(-code).name}"
        return f"its process (pid {proc.pid}) exited with code {code} (its error output, if any, is above)"

    async def aclose(self) -> None:
        """Ask the template to stop, then wait (killing it after :data:`STOP_GRACE`)."""
        import trio

        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        with trio.CancelScope(shield=True):
            if proc.stdin is not None:
                await proc.stdin.aclose()
            with trio.move_on_after(STOP_GRACE):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


async def _read_obj(stream: Any) -> Any:
    """One framed object from a trio stream (the owner's side of ``_recv_obj``)."""
    import msgspec

    buf = bytearray()
    while len(buf) < _HEADER or len(buf) < _HEADER + int.from_bytes(buf[:_HEADER], "big"):
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise EOFError("the fork server closed the connection")
        buf += chunk
    end = _HEADER + int.from_bytes(buf[:_HEADER], "big")
    return msgspec.msgpack.decode(bytes(buf[_HEADER:end]))


_server: ForkServer | None = None
#: (trio run, lock): concurrent first spawns start one template, not one each
_starting: tuple[Any, Any] | None = None


async def ensure_started(*, wait_ready: bool = False) -> ForkServer:
    """Start this actor's template (if it has none running) and return it.

    Call it early (e.g. right after the root actor starts) so that the first spawn
    does not pay for the template's imports. Spawns sent before the template is ready
    simply queue; ``wait_ready=True`` waits until it has finished importing (about as
    long as one subprocess spawn).
    """
    global _server
    async with _start_lock():
        if _server is None or not _server.alive():
            _server = await _start_template()
    if wait_ready:
        await _server.wait_ready()
    return _server


def _start_lock() -> Any:
    """This trio run's lock around starting the template. Without it, 30 spawns
    started at once before the first template ran each started one of their own
    (each importing the whole runtime: a spawn burst cost 30 times the CPU, and a
    root killed during it took its tree ~0.5 s to clear)."""
    global _starting
    import trio

    run = trio.lowlevel.current_root_task()
    if _starting is None or _starting[0] is not run:
        _starting = (run, trio.Lock())
    return _starting[1]


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
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", TEMPLATE_MODULE],
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
    if actor is not None and actor.running:
        # the template goes with the actor, at the very end of its shutdown (after its
        # children are reaped)
        try:
            actor.start_until_shutdown(_stop_with_actor, server)
        except RuntimeError:  # the actor is ending already: no template to keep
            await server.aclose()
            raise
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
    """Fork an actor for ``boot`` from this actor's template; the ``_spawn`` backend entry."""
    from .msg import encoder

    global _born_live
    server = await ensure_started()
    template = _born_wanted()
    _born_live += template  # reserved before the await: a burst of spawns counts right
    try:
        return ForkedChild(await server.fork(encoder.encode(boot), template=template), with_template=template)
    except BaseException:
        _born_live -= template
        raise


class ForkedChild(ChildProcess):
    """An actor forked by our template: our own child, reaped through a pidfd."""

    def __init__(self, pid: int, *, with_template: bool = False) -> None:
        import trio

        super().__init__(pid)
        self._with_template = with_template  # counted in _born_live until reaped
        # Nobody but us can reap our child, so its pid cannot be reused before we do.
        self._pidfd = os.pidfd_open(pid)
        self._returncode: int | None = None
        self._wait_lock = trio.Lock()  # one task waits on the pidfd, the others on it

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int:
        import trio

        async with self._wait_lock:
            if self._returncode is None:
                await trio.lowlevel.wait_readable(self._pidfd)
                self._reap()
        assert self._returncode is not None  # _reap waits for the exit the pidfd announced
        return self._returncode

    def _reap(self) -> None:
        try:
            _, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            code = 0  # someone else reaped it (like subprocess.Popen, report success)
        self._returncode = code
        os.close(self._pidfd)
        if self._with_template:
            global _born_live
            self._with_template = False
            _born_live -= 1


if __name__ == "__main__":
    # run as the package's module, not as ``__main__``: the actors forked from here
    # keep their template in ``notebook_actors._forkserver._server``, where the runtime
    # looks for it
    from notebook_actors._forkserver import template_main as _main

    _main()
