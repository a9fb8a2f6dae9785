"""The debugged actor's end of a REPL session.

pdb runs synchronously in the thread that stopped (the actor's trio thread, or a worker
thread), so it cannot use that thread's trio loop. A routed session therefore runs its
connection in a small helper thread with its own trio loop: an ordinary authenticated
:class:`~notebook_actors._channel.Channel` to the parent (the one codec, framing and
credit of every channel), on which it opens the ``_repl_relay`` context. pdb talks to
the helper through two queues, so any thread can be debugged.
"""

from __future__ import annotations

import _thread
import logging
import math
import queue
import threading
from collections.abc import Callable
from typing import Any

import msgspec
import trio

from ._frontend import ReplFrontEnd, fmt_uid, get_front_end
from ._lock import lock
from ._relay import INTERRUPT, _repl_relay

log = logging.getLogger("notebook_actors.debug")

#: Seconds the helper waits for the root to acknowledge the end of a session.
CLOSE_TIMEOUT = 5.0

_CLOSE = object()  # put on the outbox by close()

#: The pdb whose session stays open in each thread while the user steps.
_stepping: dict[int, Any] = {}


def stepping_pdb() -> Any:
    """The pdb stepping in this thread (its session is open), or None."""
    return _stepping.get(threading.get_ident())


_KBD_NOTICE = "\n[notebook_actors] Ctrl-C: the REPL stays open (`c` continues, `q` quits the session)\n"


class RoutedSession:
    """A REPL session of a non-root actor, granted by the root.

    Open it with :meth:`open` (from the actor's trio loop, cancellable) or
    :meth:`open_blocking` (from any thread, or from sync code in the trio thread).
    """

    def __init__(self, actor: Any, kind: str) -> None:
        self._actor = actor
        self.kind = kind
        self.uid = actor.uid
        self.info: dict[str, Any] = {}
        self.closed = False
        #: True while pdb waits for an input line (Ctrl-C then only shows a notice).
        self.at_prompt = False
        #: The thread pdb runs in: Ctrl-C interrupts it while it evaluates (main only).
        self.pdb_thread: threading.Thread | None = None
        self._prompt = ""
        self._lines: queue.Queue[str] = queue.Queue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._outbox: Any = None
        self._scope: trio.CancelScope | None = None
        self._on_granted: Callable[[BaseException | None], None] = lambda err: None
        self._granted = False
        self._thread = threading.Thread(target=self._run, name=f"notebook_actors-repl-{kind}", daemon=True)

    # -- opening ------------------------------------------------------------------------
    async def open(self) -> RoutedSession:
        """Ask for the REPL and wait, cancellably, until the root grants it."""
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        result: list[BaseException | None] = []

        def granted(err: BaseException | None) -> None:
            result.append(err)
            token.run_sync_soon(done.set)

        self._on_granted = granted
        self._thread.start()
        try:
            await done.wait()
        except BaseException:
            self.abort()
            raise
        if result[0] is not None:
            raise result[0]
        return self

    def open_blocking(self) -> RoutedSession:
        """Ask for the REPL and block this thread until the root grants it."""
        done = threading.Event()
        result: list[BaseException | None] = []

        def granted(err: BaseException | None) -> None:
            result.append(err)
            done.set()

        self._on_granted = granted
        self._thread.start()
        done.wait()
        if result[0] is not None:
            raise result[0]
        return self

    def abort(self) -> None:
        """Give up the request (or the session) from any thread."""
        self.closed = True
        if self._token is not None and self._scope is not None:
            try:
                self._token.run_sync_soon(self._scope.cancel)
            except trio.RunFinishedError:
                pass

    # -- pdb's side ---------------------------------------------------------------------
    def send_text(self, what: str, text: str) -> None:
        """Send pdb's output (``what="ask"``: it ends in a prompt)."""
        if self.closed or self._token is None:
            return
        if what == "ask":
            self._prompt = text.rsplit("\n", 1)[-1]
            self.at_prompt = True
        try:
            self._token.run_sync_soon(self._outbox.send_nowait, [what, text])
        except (trio.RunFinishedError, trio.ClosedResourceError):
            self.closed = True

    def readline(self) -> str:
        """The next input line; ``""`` once the session ended."""
        line = self._lines.get()
        self.at_prompt = False
        return line

    def close(self) -> None:
        """End the session (the root releases the lock) and wait for the helper."""
        if self.closed:
            self._thread.join(CLOSE_TIMEOUT)
            return
        self.closed = True
        try:
            if self._token is not None:
                self._token.run_sync_soon(self._outbox.send_nowait, _CLOSE)
        except (trio.RunFinishedError, trio.ClosedResourceError):
            pass
        self._thread.join(CLOSE_TIMEOUT + 1)

    # -- the helper thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to whoever waits for the grant
            self._finish(exc)
        else:
            self._finish(RuntimeError(f"actor {fmt_uid(self.uid)}: the REPL request ended before it was granted"))

    def _finish(self, err: BaseException) -> None:
        if not self._granted:
            self._granted = True
            self._on_granted(err)
        self._lines.put("")  # pdb, if it still reads, sees the end of input

    def _grant(self, info: dict[str, Any]) -> None:
        self.info = info
        self._granted = True
        self._on_granted(None)

    async def _main(self) -> None:
        from .._channel import connect
        from ..msg import Credit, Start

        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as self._scope:
            if self.closed:  # aborted before this loop ran
                return
            chan = await self._connect(connect)
            try:
                async with trio.open_nursery() as n:
                    n.start_soon(chan.run_writer)
                    cid = chan.next_cid()
                    kwargs = {"requester": list(self.uid), "kind": self.kind}
                    chan.send_nowait(Start(cid, _repl_relay.__module__, "_repl_relay", kwargs, "context"))
                    chan.send_nowait(Credit(cid, 1 << 30))  # one answer per prompt: never many in flight
                    self._outbox, outbox = trio.open_memory_channel[Any](math.inf)
                    credit = _Credit()
                    n.start_soon(self._send_out, chan, cid, outbox, credit, n.cancel_scope)
                    await self._receive(chan, credit)
                    n.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True):
                    await chan.aclose()

    async def _connect(self, connect: Any) -> Any:
        actor = self._actor
        while True:
            try:
                return await connect(actor.parent_addr, actor.secret, actor.ident)
            except trio.TooSlowError:  # the parent is paused in its own REPL: ask again
                log.info("actor %s: parent busy (in a REPL?), asking for the REPL again", actor.uid)

    async def _receive(self, chan: Any, credit: _Credit) -> None:
        from .._exceptions import TransportClosed, unbox
        from ..msg import Credit, Error, Started, Yield, any_decoder

        while True:
            try:
                batch = await chan.receive_batch()
            except TransportClosed:
                return
            for msg in batch:
                kind = type(msg)
                if kind is Credit:
                    credit.add(msg.n)
                elif kind is Started:
                    self._grant(any_decoder.decode(msg.pld))
                elif kind is Yield:
                    self._answer(any_decoder.decode(msg.pld))
                elif kind is Error and not self._granted:
                    raise unbox(msg.err)
                else:  # Return/Error/Stop: the root ended the session (e.g. it shuts down)
                    return

    def _answer(self, value: Any) -> None:
        if value == INTERRUPT:
            self._interrupt()
        elif isinstance(value, str):
            self._lines.put(value)

    def _interrupt(self) -> None:
        """Ctrl-C at the root: interrupt what pdb evaluates; at the prompt, say so."""
        if self.at_prompt or self.pdb_thread is not threading.main_thread():
            self._outbox.send_nowait(["out", _KBD_NOTICE + (self._prompt if self.at_prompt else "")])
        else:
            _thread.interrupt_main()  # KeyboardInterrupt in the evaluated expression

    async def _send_out(self, chan: Any, cid: int, outbox: Any, credit: _Credit, scope: trio.CancelScope) -> None:
        from ..msg import Stop, Yield, encoder

        async for item in outbox:
            if item is _CLOSE:
                chan.send_nowait(Stop(cid))
                with trio.move_on_after(CLOSE_TIMEOUT):  # until the root answers (Return) or closes
                    await trio.sleep_forever()
                scope.cancel()
                return
            await credit.take()
            chan.send_nowait(Yield(cid, msgspec.Raw(encoder.encode(item))))


class _Credit:
    """The stream's send window (the root grants it as its consumer reads)."""

    def __init__(self) -> None:
        self.n = 0
        self._changed = trio.Event()

    def add(self, n: int) -> None:
        self.n += n
        self._changed.set()

    async def take(self) -> None:
        while self.n <= 0:
            self._changed = trio.Event()
            await self._changed.wait()
        self.n -= 1


class LocalSession:
    """A REPL session of the root actor itself, straight on the front end.

    ``token``: the root's trio token when pdb runs in another thread (front-end and lock
    calls then go to the trio thread); None when pdb runs in the trio thread.
    """

    def __init__(self, front_end: ReplFrontEnd, uid: Any, kind: str, token: Any = None) -> None:
        self.front_end = front_end
        self.uid = uid
        self.kind = kind
        self.info = {"color": front_end.color, "width": front_end.width, "height": front_end.height}
        self.closed = False
        self.at_prompt = False
        self.pdb_thread: threading.Thread | None = None
        self._token = token
        self._in_trio(front_end.session_started, uid, kind)

    def _in_trio(self, fn: Any, *args: Any) -> None:
        if self._token is None:
            fn(*args)
        else:
            trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def send_text(self, what: str, text: str) -> None:
        self.front_end.write(text)

    def readline(self) -> str:
        return self.front_end.readline_blocking()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._in_trio(self._end)

    def _end(self) -> None:
        self.front_end.session_ended(self.uid)
        lock.release(self.uid)


class SessionIO:
    """pdb's stdin and stdout: output is buffered and sent with the next input request."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, session: Any) -> None:
        self.session = session
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
            self.session.send_text(what, text)

    def readline(self, size: int = -1) -> str:
        self._send("ask")
        line: str = self.session.readline()
        return line

    def close_session(self) -> None:
        self._send("out")
        self.session.close()

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


async def open_session(kind: str) -> Any:
    """A granted session for the calling task (waits, cancellably, for the lock)."""
    from .._state import current_actor

    actor = current_actor()
    if actor.parent_addr is None:
        await lock.acquire(actor.uid)
        return LocalSession(get_front_end(), actor.uid, kind)
    return await RoutedSession(actor, kind).open()


#: The actor's trio token, for sessions opened in threads that trio did not start.
_loop_token: trio.lowlevel.TrioToken | None = None


def remember_loop() -> None:
    """Record the calling trio loop's token (the actor's), for sync breakpoints in threads."""
    global _loop_token
    _loop_token = trio.lowlevel.current_trio_token()


def open_session_blocking(kind: str, actor: Any, in_trio_thread: bool) -> Any:
    """A granted session for sync code (blocks the calling thread while it waits).

    In the root's own trio thread the lock cannot be waited for (waiting needs that
    loop): the session opens if the REPL is free, else None is returned.
    """
    if actor.parent_addr is not None:
        return RoutedSession(actor, kind).open_blocking()
    if in_trio_thread:
        if not lock.try_acquire(actor.uid):
            return None
        return LocalSession(get_front_end(), actor.uid, kind)
    token = _loop_token
    trio.from_thread.run(lock.acquire, actor.uid, trio_token=token)
    front_end = trio.from_thread.run_sync(get_front_end, trio_token=token)
    return LocalSession(front_end, actor.uid, kind, token or _thread_token())


def _thread_token() -> trio.lowlevel.TrioToken:
    """The token of the loop that started this worker thread (trio.to_thread)."""
    return trio.from_thread.run_sync(trio.lowlevel.current_trio_token)
