"""The multi-process debugger: pdb++ in any actor, one routed REPL for the whole tree.

How a session is routed:

- The debugged actor never reads a terminal. It dials a *dedicated* authenticated
  connection to its parent and opens the ``_repl_relay`` context on it. Every parent
  that is not the root relays the request over its own parent channel (a grandchild
  needs no address but its parent's), so the session always reaches the root.
- The root holds the tree-wide FIFO lock: one REPL at a time. Queued requests are shown
  ("REPL held by X; waiting: Y, Z"). When the lock is granted the root calls
  ``ctx.started()``; from then on the debugged actor sends pdb's output (``out``/``ask``
  messages) and the root answers each ``ask`` with one input line from its front end.
- pdb runs synchronously in the debugged actor's trio thread (full pdb semantics, the
  actor is paused), so after the grant the actor speaks the wire protocol on the
  dedicated connection with blocking socket calls; its trio loop is not needed. The
  connection closing (the actor died) ends the session and releases the lock.
- The root shows sessions through a :class:`ReplFrontEnd`: the terminal by default; a
  notebook installs its own with :func:`set_front_end`.

pdb++ is imported only when a debugger actually opens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import trio

from ._context import context

log = logging.getLogger("notebook_actors.debug")

__all__ = [
    "ReplFrontEnd",
    "TerminalFrontEnd",
    "breakpoint",
    "get_front_end",
    "post_mortem",
    "post_mortem_for",
    "set_front_end",
]

_CID = 0  # the one call on a dedicated REPL connection (the dialer's first even id)


def _fmt(uid: Any) -> str:
    """``name[1a2b3c4d]``: short enough for a status line, unique enough to tell apart."""
    return f"{uid[0]}[{str(uid[1])[:8]}]"


# -- the root's front end ------------------------------------------------------------


class ReplFrontEnd:
    """Where the root shows REPL sessions. The terminal by default; a notebook kernel
    installs its own with :func:`set_front_end`.

    Every method runs in the root's trio thread. ``readline`` must return one line
    ending in ``"\\n"``, or ``""`` at end of input (pdb then quits the session).
    ``readline_blocking`` serves sessions of the root actor itself, whose pdb blocks the
    trio loop: a front end that cannot block (a kernel) should refuse them by raising.
    """

    #: Colours only when the root's terminal shows them; routed actors follow this.
    color = False
    width = 80
    height = 24
    #: While a REPL is open the root replaces the SIGINT handler (Ctrl-C must not tear
    #: the tree down). A front end whose host owns signals (a kernel) sets False.
    handles_sigint = True

    async def admit(self, uid: Any, kind: str, route: list[Any]) -> None:
        """Called at the root before a session queues for the lock; may wait (a notebook
        parks a session until a cell can show it) or raise (the request fails).
        ``route``: the requester's uid, then each actor that relayed it, up to the
        root's direct child."""

    def session_started(self, uid: Any, kind: str) -> None:
        """Actor ``uid`` got the lock: its session (``kind``: "breakpoint" or "post-mortem")
        is shown from now on."""

    def session_ended(self, uid: Any) -> None:
        """The session of ``uid`` is over (the lock passes on next)."""

    def write(self, text: str) -> None:
        """Show REPL output; it may end mid-line (a prompt waits for its answer)."""
        raise NotImplementedError

    async def readline(self) -> str:
        """The user's next line for a routed session (see the class docs)."""
        raise NotImplementedError

    def readline_blocking(self) -> str:
        """The next line for a session of the root actor itself; may raise to refuse."""
        raise NotImplementedError

    def notice(self, text: str) -> None:
        """A status line (who holds the REPL, who waits)."""
        self.write(f"\n[notebook_actors] {text}\n")

    def interrupted(self) -> None:
        """Ctrl-C arrived while a routed REPL is open."""
        self.notice("Ctrl-C: the REPL stays open (`c` continues, `q` quits the session)")


class TerminalFrontEnd(ReplFrontEnd):
    """Shows sessions on the root process' stdout and reads its stdin."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._buf = b""
        self._prompt = ""
        self._reading = False
        out = sys.stdout
        tty = bool(getattr(out, "isatty", lambda: False)())
        self.color = tty and os.environ.get("TERM", "dumb") != "dumb" and "NO_COLOR" not in os.environ
        try:
            self.width, self.height = os.get_terminal_size(out.fileno()) if tty else (80, 24)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> None:
        if text:
            last = text.rsplit("\n", 1)[-1]
            self._prompt = last if last.strip() else self._prompt
            sys.stdout.write(text)
            sys.stdout.flush()

    def notice(self, text: str) -> None:
        # re-show the prompt only if a session is waiting for input right now
        sys.stdout.write(f"\n[notebook_actors] {text}\n{self._prompt if self._reading else ''}")
        sys.stdout.flush()

    def _take_line(self) -> str | None:
        if b"\n" in self._buf:
            line, _, self._buf = self._buf.partition(b"\n")
            return line.decode(errors="replace") + "\n"
        return None

    async def readline(self) -> str:
        self._reading = True
        try:
            return await self._readline()
        finally:
            self._reading = False

    async def _readline(self) -> str:
        while (line := self._take_line()) is None:
            try:
                await trio.lowlevel.wait_readable(self._fd)
                data = os.read(self._fd, 4096)
            except (OSError, ValueError):  # not pollable (a regular file): read in a thread
                data = await trio.to_thread.run_sync(os.read, self._fd, 4096)
            if not data:
                return self._eof()
            self._buf += data
        return line

    def readline_blocking(self) -> str:
        while (line := self._take_line()) is None:
            data = os.read(self._fd, 4096)
            if not data:
                return self._eof()
            self._buf += data
        return line

    def _eof(self) -> str:
        rest, self._buf = self._buf, b""
        return rest.decode(errors="replace")


_front_end: ReplFrontEnd | None = None


def set_front_end(front_end: ReplFrontEnd | None) -> ReplFrontEnd | None:
    """Show the tree's REPL sessions through ``front_end`` (None: the terminal again).

    Returns the previous one, so a caller can put it back.
    """
    global _front_end
    old, _front_end = _front_end, front_end
    return old


def get_front_end() -> ReplFrontEnd:
    global _front_end
    if _front_end is None:
        _front_end = TerminalFrontEnd()
    return _front_end


# -- the tree-wide lock (lives in the root) -------------------------------------------


class _TreeLock:
    """FIFO: one REPL at a time across the tree. ``release`` is sync so a session that
    ends inside pdb (no trio available) can still hand the lock on."""

    def __init__(self) -> None:
        self.holder: Any = None
        self._queue: deque[tuple[Any, trio.Event]] = deque()

    def waiting(self) -> list[Any]:
        """The uids queued for the REPL, first in line first."""
        return [uid for uid, _ in self._queue]

    def try_acquire(self, uid: Any) -> bool:
        if self.holder is None and not self._queue:
            self.holder = uid
            return True
        return False

    async def acquire(self, uid: Any) -> None:
        if self.try_acquire(uid):
            await trio.lowlevel.checkpoint()
            return
        entry = (uid, trio.Event())
        self._queue.append(entry)
        waiting = ", ".join(_fmt(u) for u in self.waiting())
        get_front_end().notice(f"REPL held by {_fmt(self.holder)}; waiting: {waiting}")
        try:
            await entry[1].wait()
        except BaseException:
            if entry in self._queue:
                self._queue.remove(entry)
            elif self.holder == uid:  # granted just as we were cancelled: pass it on
                self.release(uid)
            raise

    def release(self, uid: Any) -> None:
        if self.holder != uid:
            return
        self.holder = None
        if self._queue:
            self.holder, event = self._queue.popleft()
            event.set()


_lock = _TreeLock()

#: Sessions (held or queued) that pass through each direct child: its supervisor must
#: not kill a child whose descendant is in a REPL.
_sessions_via: dict[Any, int] = {}
_sessions_changed = trio.lowlevel.ParkingLot()


async def wait_while_repl_via(uid: Any) -> None:
    """Wait until no REPL session (held or queued) passes through child ``uid``."""
    while _sessions_via.get(tuple(uid)):
        await _sessions_changed.park()


@contextlib.contextmanager
def _session_via(uid: Any) -> Iterator[None]:
    uid = tuple(uid)
    _sessions_via[uid] = _sessions_via.get(uid, 0) + 1
    try:
        yield
    finally:
        _sessions_via[uid] -= 1
        if not _sessions_via[uid]:
            del _sessions_via[uid]
        _sessions_changed.unpark_all()


@contextlib.contextmanager
def _sigint_guard(front_end: ReplFrontEnd, handler: Any) -> Iterator[None]:
    """Replace SIGINT's handler while a REPL is open (main thread only)."""
    if not front_end.handles_sigint or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


# -- the relay endpoint (every actor serves it; the root ends the chain) ---------------


@context
async def _repl_relay(ctx: Any, requester: list[str], kind: str, via: list[Any] = ()) -> None:  # type: ignore[assignment]
    """A descendant asks for the REPL: grant it at the root, relay it elsewhere.
    ``via``: the actors that relayed the request so far (nearest the requester first)."""
    from ._state import current_actor

    actor = current_actor()
    with _session_via(ctx.chan.uid):
        if actor.parent_addr is None or actor.parent_chan is None:
            route = [tuple(requester), *(tuple(uid) for uid in via)]
            await _serve_at_root(ctx, tuple(requester), kind, route)
        else:
            await _relay_up(actor, ctx, requester, kind, [*via, list(actor.uid)])


async def _serve_at_root(ctx: Any, requester: Any, kind: str, route: list[Any] | None = None) -> None:
    await get_front_end().admit(requester, kind, route or [requester])
    await _lock.acquire(requester)
    front_end = get_front_end()
    try:
        await ctx.started({"color": front_end.color, "width": front_end.width, "height": front_end.height})
        front_end.session_started(requester, kind)
        with _sigint_guard(front_end, lambda *_: front_end.interrupted()):
            async with ctx.open_stream() as stream:
                async for what, text in stream:
                    front_end.write(text)
                    if what == "ask":
                        await stream.send(await front_end.readline())
    finally:
        front_end.session_ended(requester)
        _lock.release(requester)


async def _relay_up(actor: Any, ctx: Any, requester: list[str], kind: str, via: list[Any]) -> None:
    from ._portal import Portal

    parent = Portal(actor.parent_chan, actor)
    async with parent.open_context(_repl_relay, requester=requester, kind=kind, via=via) as (up, info):
        await ctx.started(info)
        async with ctx.open_stream() as down_s, up.open_stream() as up_s:
            async with trio.open_nursery() as n:

                async def answers() -> None:
                    async for line in up_s:
                        await down_s.send(line)

                n.start_soon(answers)
                async for msg in down_s:
                    await up_s.send(msg)
                n.cancel_scope.cancel()


# -- the debugged actor's end of a session --------------------------------------------


class _Wire:
    """The dedicated REPL connection, spoken with plain socket calls: async (trio) while
    waiting for the lock, blocking once pdb owns the thread."""

    def __init__(self, sock: socket.socket, rest: bytes, peer: Any) -> None:
        from ._codec import FrameDecoder
        from .msg import msg_decoder

        self.sock = sock
        self.peer = peer
        self._decoder = FrameDecoder(msg_decoder, peer=f"actor {peer}")
        self._inbox: deque[Any] = deque(self._decoder.feed(rest) if rest else ())
        self.credit = 0
        self.eof = False

    def send(self, msg: Any) -> None:
        from ._codec import encode_frame

        self._blocking()
        self.sock.sendall(encode_frame(msg))

    def _blocking(self) -> None:
        if self.sock.gettimeout() == 0.0:  # left non-blocking by arecv (keep any timeout)
            self.sock.setblocking(True)

    def _feed(self, data: bytes) -> None:
        if not data:
            self.eof = True
        else:
            self._inbox.extend(self._decoder.feed(data))

    def recv(self) -> Any:
        """The next message (blocking); None once the connection closed."""
        while not self._inbox and not self.eof:
            self._blocking()
            try:
                self._feed(self.sock.recv(65536))
            except OSError:
                self.eof = True
        return self._inbox.popleft() if self._inbox else None

    async def arecv(self) -> Any:
        while not self._inbox and not self.eof:
            self.sock.setblocking(False)
            try:
                self._feed(self.sock.recv(65536))
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.sock)
            except OSError:
                self.eof = True
        return self._inbox.popleft() if self._inbox else None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class _RoutedSession:
    """A granted REPL session in a non-root actor."""

    def __init__(self, wire: _Wire, info: dict[str, Any]) -> None:
        self.wire = wire
        self.info = info
        self.closed = False

    def send_text(self, what: str, text: str) -> None:
        import msgspec

        from .msg import Yield, encoder

        if self.closed or self.wire.eof:
            return
        while self.wire.credit <= 0 and self._absorb(self.wire.recv()) is not _ENDED:
            pass
        try:
            self.wire.send(Yield(_CID, msgspec.Raw(encoder.encode([what, text]))))
        except OSError:
            self.wire.eof = True
        self.wire.credit -= 1

    def readline(self) -> str:
        while True:
            got = self._absorb(self.wire.recv())
            if got is _ENDED:
                return ""
            if isinstance(got, str):
                return got

    def _absorb(self, msg: Any) -> Any:
        """Account for ``msg``; return an input line, _ENDED, or None."""
        from .msg import Credit, Yield, any_decoder

        if msg is None:
            return _ENDED
        if type(msg) is Credit:
            self.wire.credit += msg.n
            return None
        if type(msg) is Yield:
            return any_decoder.decode(msg.pld)
        if type(msg).__name__ in ("Return", "Error", "Stop"):
            self.wire.eof = True  # the root ended the session (e.g. it is shutting down)
            return _ENDED
        return None

    def close(self) -> None:
        from .msg import Stop

        if self.closed:
            return
        self.closed = True
        if not self.wire.eof:
            with contextlib.suppress(OSError):
                self.wire.send(Stop(_CID))
                self.wire.sock.shutdown(socket.SHUT_WR)
                self.wire.sock.settimeout(5)  # a hung root must not pause us forever
                while self.wire.recv() is not None:  # until the root answers (Return) or closes
                    if self.wire.eof:
                        break
        self.wire.close()


_ENDED = object()


class _LocalSession:
    """A REPL session of the root actor itself, straight on the front end."""

    def __init__(self, front_end: ReplFrontEnd, uid: Any) -> None:
        self.front_end = front_end
        self.uid = uid
        self.info = {"color": front_end.color, "width": front_end.width, "height": front_end.height}
        self.closed = False

    def send_text(self, what: str, text: str) -> None:
        self.front_end.write(text)

    def readline(self) -> str:
        return self.front_end.readline_blocking()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.front_end.session_ended(self.uid)
            _lock.release(self.uid)


class _SessionIO:
    """pdb's stdin and stdout: output is buffered and sent with the next input request."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, session: Any) -> None:
        self._session = session
        self._pending: list[str] = []
        self._size = 0

    def write(self, text: str) -> int:
        self._pending.append(text)
        self._size += len(text)
        if self._size > 16384:
            self._send("out")
        return len(text)

    def flush(self) -> None:
        pass  # sent with the next readline (one message per prompt) or on close

    def _send(self, what: str) -> None:
        text, self._pending, self._size = "".join(self._pending), [], 0
        if text or what == "ask":
            self._session.send_text(what, text)

    def readline(self, size: int = -1) -> str:
        self._send("ask")
        return self._session.readline()

    def close_session(self) -> None:
        self._send("out")
        self._session.close()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


async def _request_routed(kind: str) -> _RoutedSession:
    """Dial the parent, ask for the REPL, wait (cancellably) until the root grants it."""
    from ._channel import connect
    from ._context import unbox
    from ._state import current_actor
    from .msg import Credit, Error, Start, Started, any_decoder

    actor = current_actor()
    while True:
        try:
            chan = await connect(actor.parent_addr, actor.secret, actor.ident)
            break
        except trio.TooSlowError:  # the parent is paused in its own REPL: ask again
            log.info("actor %s: parent busy (in a REPL?), asking for the REPL again", actor.uid)
    sock = socket.socket(fileno=os.dup(chan._stream.socket.fileno()))
    rest = chan._rest
    await chan._stream.aclose()
    wire = _Wire(sock, rest, chan.uid)
    try:
        wire.send(Start(_CID, __name__, "_repl_relay", {"requester": list(actor.uid), "kind": kind}, "context"))
        wire.send(Credit(_CID, 1 << 30))  # one answer per prompt: never more than a few in flight
        while True:
            msg = await wire.arecv()
            if msg is None:
                raise RuntimeError(f"actor {actor.uid} lost its parent while waiting for the REPL")
            if type(msg) is Credit:
                wire.credit += msg.n
            elif type(msg) is Started:
                return _RoutedSession(wire, any_decoder.decode(msg.pld))
            elif type(msg) is Error:
                raise unbox(msg.err)
    except BaseException:
        wire.close()
        raise


async def _open_session(kind: str) -> Any:
    from ._state import current_actor

    actor = current_actor()
    if actor.parent_addr is None:
        await _lock.acquire(actor.uid)
        front_end = get_front_end()
        front_end.session_started(actor.uid, kind)
        return _LocalSession(front_end, actor.uid)
    return await _request_routed(kind)


def _open_session_blocking(kind: str) -> Any:
    """For the sync ``breakpoint()`` builtin: the trio loop of this thread cannot run,
    so a routed request is made from a helper thread with its own trio run."""
    from ._state import current_actor

    actor = current_actor()
    if actor.parent_addr is None:
        if not _lock.try_acquire(actor.uid):
            print(
                f"[notebook_actors] breakpoint() skipped in root actor {_fmt(actor.uid)}: the REPL is held by "
                f"{_fmt(_lock.holder)}; use `await notebook_actors.breakpoint()` to wait for it",
                file=sys.stderr,
            )
            return None
        front_end = get_front_end()
        front_end.session_started(actor.uid, kind)
        return _LocalSession(front_end, actor.uid)
    result: list[Any] = []

    def run() -> None:
        try:
            result.append(trio.run(_request_routed, kind))
        except BaseException as exc:  # reported in the caller's thread
            result.append(exc)

    helper = threading.Thread(target=run, name="notebook_actors-repl-request", daemon=True)
    helper.start()
    helper.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


# -- pdb++ ---------------------------------------------------------------------------

_pdb_class: Any = None


def _actor_pdb_class() -> Any:
    """Our pdb++ subclass, built on first use (pdbpp is imported only here)."""
    global _pdb_class
    if _pdb_class is not None:
        return _pdb_class
    import code

    import pdbpp

    package_dir = os.path.dirname(os.path.abspath(__file__))
    trio_dir = os.path.dirname(os.path.abspath(trio.__file__))

    class ActorPdb(pdbpp.Pdb):
        """pdb++ bound to a routed session: the runtime's own frames are hidden and
        ``interact`` reads and writes through the session, not the real stdio."""

        _term_size = (80, 24)
        _resume = "continue"

        #: post-mortem: start at the innermost visible frame (the crash), not at ours
        _select_innermost = False

        def _is_hidden(self, frame: Any) -> bool:
            filename = os.path.abspath(frame.f_code.co_filename)
            if filename.startswith((package_dir, trio_dir)) or _wraps_our_generator(frame):
                return True
            return super()._is_hidden(frame)

        def compute_stack(self, fullstack: Any, idx: Any = None) -> Any:
            return super().compute_stack(fullstack, None if self._select_innermost else idx)

        def get_terminal_size(self) -> tuple[int, int]:  # type: ignore[override]
            return self._term_size

        def do_interact(self, arg: str) -> None:
            ns = {**self.curframe.f_globals, **self.curframe_locals}
            saved = sys.stdin, sys.stdout, sys.stderr
            sys.stdin = sys.stdout = sys.stderr = self.stdin  # type: ignore[assignment]
            try:
                code.interact("*interactive* (Ctrl-D returns to pdb)", local=ns)
            except SystemExit:
                pass
            finally:
                sys.stdin, sys.stdout, sys.stderr = saved

        # -- stepping: the session stays open while the task runs to the next stop --
        _stepping = False
        _io: Any = None

        def interaction(self, frame: Any, tb: Any) -> Any:
            self._resume = "continue"
            with _kbd_interrupt_at_prompt(self._io._session):
                try:
                    return super().interaction(frame, tb)
                finally:
                    if self._stepping:
                        self._after_traced_stop()

        def _after_traced_stop(self) -> None:
            if self._resume == "step":
                return
            self._stepping = False
            sys.settrace(None)
            self._io.close_session()
            if self._resume == "quit":
                self.quitting = False  # no BdbQuit in the task: cancel it instead
                _quit_task()

        def do_next(self, arg: str) -> Any:
            self._resume = "step"
            return super().do_next(arg)

        def do_step(self, arg: str) -> Any:
            self._resume = "step"
            return super().do_step(arg)

        def do_return(self, arg: str) -> Any:
            self._resume = "step"
            return super().do_return(arg)

        def do_until(self, arg: str) -> Any:
            self._resume = "step"
            return super().do_until(arg)

        do_n, do_s, do_r, do_unt = do_next, do_step, do_return, do_until

        def do_quit(self, arg: str) -> Any:
            self._resume = "quit"
            return super().do_quit(arg)

        do_q = do_exit = do_quit

        def do_EOF(self, arg: str) -> Any:
            self._resume = "quit"
            return super().do_EOF(arg)

    _pdb_class = ActorPdb
    return ActorPdb


def _wraps_our_generator(frame: Any) -> bool:
    """A contextlib frame driving one of the runtime's own context managers."""
    if frame.f_code.co_filename != contextlib.__file__:
        return False
    gen = getattr(frame.f_locals.get("self"), "gen", None)
    code = getattr(gen, "ag_code", None) or getattr(gen, "gi_code", None)
    package_dir = os.path.dirname(os.path.abspath(__file__))
    return code is not None and os.path.abspath(code.co_filename).startswith(package_dir)


#: Stepping (``s``) never stops inside the runtime or trio.
_SKIP_MODULES = [
    "trio",
    "trio.*",
    "outcome",
    "sniffio",
    "sniffio.*",
    "notebook_actors",
    "notebook_actors._*",
    "contextlib",
]


def _make_pdb(io: _SessionIO, info: dict[str, Any], name: str) -> Any:
    pdb = _actor_pdb_class()(
        stdin=io, stdout=io, skip=_SKIP_MODULES, nosigint=True, use_global_pdb=False, set_global_pdb=False
    )
    pdb._io = io
    pdb.prompt = f"(Pdb++ {name}) "
    pdb.sticky = False  # sticky mode clears and pads a whole screen: opt in with `sticky`
    color = bool(info.get("color"))
    pdb.config.highlight = pdb.config.use_pygments = color
    pdb._term_size = (int(info.get("width", 80)), int(info.get("height", 24)))
    return pdb


def _interact(session: Any, *, frame: Any = None, exc: BaseException | None = None) -> str:
    """Run one pdb++ interaction on ``session``; return ``"continue"`` or ``"quit"``.

    Closes the session (which releases the lock) whatever happens.
    """
    from ._state import current_actor

    actor = current_actor()
    io = _SessionIO(session)
    stepping = False
    try:
        pdb = _make_pdb(io, session.info, actor.name)
        where = f"actor {actor.name!r} {_fmt(actor.uid)} pid {os.getpid()}"
        if exc is None:
            io.write(f"\n[notebook_actors] breakpoint in {where}\n")
            pdb.reset()
            pdb.botframe = _task_root_frame(frame)
            pdb.interaction(frame, None)
            if pdb._resume == "step":  # n/s/r/until: trace the task, keep the session
                _start_stepping(pdb, frame)
                stepping = True
                return "continue"
        else:
            io.write(f"\n[notebook_actors] post-mortem in {where}:\n")
            io.write(_describe(exc))
            # the live frames too (botframe: the task's own), so the root's post-mortem
            # of a boxed error starts in the user's code that awaited the failed actor
            here = sys._getframe()
            pdb.reset()
            pdb.botframe = _task_root_frame(here)
            pdb._select_innermost = True
            pdb.interaction(here, exc.__traceback__)
        return "quit" if pdb._resume == "quit" else "continue"
    finally:
        if not stepping:
            sys.settrace(None)
            io.close_session()


def _start_stepping(pdb: Any, frame: Any) -> None:
    """Trace the paused task's frames so pdb stops again at the next line; the session
    ends when the user continues or quits at a later stop."""
    pdb._stepping = True
    f = frame
    while f is not None:
        f.f_trace = pdb.trace_dispatch
        if f is pdb.botframe:
            break
        f = f.f_back
    sys.settrace(pdb.trace_dispatch)


def _describe(exc: BaseException) -> str:
    """The error line(s) above a post-mortem; a group lists its members' first lines."""
    text = "".join(traceback.format_exception_only(type(exc), exc))
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            first = traceback.format_exception_only(type(sub), sub)[0].splitlines()[0]
            text += f"  - {first}\n"
    return text


@contextlib.contextmanager
def _kbd_interrupt_at_prompt(session: Any) -> Iterator[None]:
    """The root's own blocking REPL gets Ctrl-C as KeyboardInterrupt, which pdb handles
    at its prompt (trio's handler would cancel the whole tree)."""
    if not isinstance(session, _LocalSession):
        yield
        return
    with _sigint_guard(session.front_end, signal.default_int_handler):
        yield


def _task_root_frame(frame: Any) -> Any:
    """The outermost frame of the current trio task, so ``where``/``up`` stop there."""
    try:
        coro = trio.lowlevel.current_task().coro
    except RuntimeError:
        return None
    root_code = getattr(coro, "cr_code", None)
    f = frame
    while f is not None:
        if f.f_code is root_code:
            return f
        f = f.f_back
    return None


def _current_rpc_context() -> Any:
    """The runtime Context of the RPC call the current task belongs to, if any."""
    from ._runtime import Actor

    try:
        task = trio.lowlevel.current_task()
    except RuntimeError:
        return None
    run_rpc = Actor._run_rpc.__code__
    while task is not None:
        frame = getattr(task.coro, "cr_frame", None)
        if frame is not None and frame.f_code is run_rpc:
            return frame.f_locals.get("ctx")
        nursery = task.parent_nursery
        task = nursery.parent_task if nursery is not None else None
    return None


def _quit_task() -> None:
    """``q`` at a breakpoint: cancel the RPC call this task serves (the caller gets
    ContextCancelled naming this actor); outside any call, raise BdbQuit."""
    import bdb

    from ._state import current_actor

    ctx = _current_rpc_context()
    if ctx is None or ctx._scope is None:
        raise bdb.BdbQuit(f"quit from the debugger in actor {current_actor().uid}")
    ctx._canceller = current_actor().uid
    ctx._scope.cancel()


# -- public entry points -------------------------------------------------------------


def _caller_frame(depth: int) -> Any:
    """The first frame outside this package, ``depth`` frames up or more."""
    package_dir = os.path.dirname(os.path.abspath(__file__))
    frame = sys._getframe(depth)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package_dir):
        frame = frame.f_back
    return frame


async def breakpoint() -> None:
    """Pause the calling task in pdb++; the REPL shows on the root actor's terminal.

    Waits (cancellably) while another actor holds the tree's REPL. ``c`` resumes the
    task; ``q`` cancels the RPC call the task serves (its caller gets ContextCancelled)
    or, outside any call, raises ``bdb.BdbQuit``. While the REPL is open this actor is
    paused as a whole (its pdb owns the thread), and Ctrl-C at the root does not
    cancel the tree.
    """
    frame = _caller_frame(1)
    session = await _open_session("breakpoint")
    if _interact(session, frame=frame) == "quit":
        _quit_task()
        await trio.lowlevel.checkpoint()


pause = breakpoint


async def post_mortem(exc: BaseException | None = None) -> None:
    """Open pdb++ at the frame where ``exc`` (default: the exception being handled) was
    raised, routed to the root's REPL like a breakpoint.

    Raises:
        ValueError: no exception given and none is being handled.
    """
    exc = exc if exc is not None else sys.exc_info()[1]
    if exc is None:
        raise ValueError("post_mortem() needs an exception: call it in an `except` block or pass one")
    with trio.CancelScope(shield=True):
        session = await _open_session("post-mortem")
    _interact(session, exc=exc)


def _wants_post_mortem(exc: BaseException) -> bool:
    import bdb

    from ._exceptions import ContextCancelled, RemoteActorError

    if getattr(exc, "_notebook_actors_pm", False):
        return False
    if isinstance(exc, BaseExceptionGroup):
        return any(_wants_post_mortem(e) for e in exc.exceptions)
    if isinstance(exc, (ContextCancelled, bdb.BdbQuit)) or not isinstance(exc, Exception):
        return False
    if isinstance(exc, RemoteActorError) and exc.type_name in ("BdbQuit", "ContextCancelled"):
        return False
    return True


async def post_mortem_for(exc: BaseException) -> None:
    """The runtime's crash hook (debug mode): a post-mortem REPL before ``exc``
    propagates. The wait for the lock is shielded: a crash queued behind another REPL
    still gets its turn while the tree is being cancelled."""
    if not _wants_post_mortem(exc):
        return
    with contextlib.suppress(AttributeError):
        exc._notebook_actors_pm = True  # type: ignore[attr-defined]
    try:
        await post_mortem(exc)
    except Exception as err:  # the debugger must never hide the original error
        log.warning("could not open a post-mortem REPL for %r: %s", exc, err, exc_info=True)


def _breakpointhook(*args: Any, **kwargs: Any) -> None:
    """``sys.breakpointhook`` in debug mode: the builtin ``breakpoint()`` opens the
    routed REPL (blocking this actor while it waits for the lock)."""
    from ._state import current_actor_or_none

    if current_actor_or_none() is None:
        return sys.__breakpointhook__(*args, **kwargs)  # noqa: T100 - outside an actor, Python's own hook
    frame = _caller_frame(1)
    session = _open_session_blocking("breakpoint")
    if session is not None and _interact(session, frame=frame) == "quit":
        _quit_task()


def enable_debug_mode() -> Callable[[], None]:
    """Route the builtin ``breakpoint()`` to the tree's REPL; return the undo."""
    if os.environ.get("PYTHONBREAKPOINT") == "0":
        return lambda: None
    old = sys.breakpointhook
    sys.breakpointhook = _breakpointhook

    def restore() -> None:
        if sys.breakpointhook is _breakpointhook:
            sys.breakpointhook = old

    return restore


# -- keeping pdbpp's `pdb` hijack out -------------------------------------------------

_HIJACK_PTH = "pdbpp_hijack_pdb.pth"


def disable_pdb_hijack(site_dirs: list[str] | None = None) -> list[str]:
    """Make pdbpp's ``.pth`` file opt-in (``PDBPP_HIJACK_PDB=1``) instead of opt-out.

    Installing pdbpp drops ``pdbpp_hijack_pdb.pth`` into site-packages; it makes
    ``import pdb`` return pdb++ for *every* program of the environment, which breaks
    IPython's ``%debug``. The runtime imports ``pdbpp`` by name and needs no hijack.
    ``make`` runs this after installing (``python -m notebook_actors._debug
    --disable-pdb-hijack``). Returns the files changed.
    """
    import site
    import sysconfig

    dirs = site_dirs or [*site.getsitepackages(), sysconfig.get_paths()["purelib"]]
    changed = []
    for directory in dict.fromkeys(dirs):
        path = os.path.join(directory, _HIJACK_PTH)
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            continue
        new = text.replace("os.environ.get('PDBPP_HIJACK_PDB', 1)", "os.environ.get('PDBPP_HIJACK_PDB', 0)")
        if new != text:
            with open(path, "w") as f:
                f.write(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    if sys.argv[1:] != ["--disable-pdb-hijack"]:
        sys.exit("usage: python -m notebook_actors._debug --disable-pdb-hijack")
    for changed_path in disable_pdb_hijack():
        print(f"pdbpp no longer replaces `pdb` by default (opt in with PDBPP_HIJACK_PDB=1): {changed_path}")
