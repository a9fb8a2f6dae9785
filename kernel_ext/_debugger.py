"""The notebook front end of the tree's routed pdb++ REPL.

The debugger itself is the core's (:mod:`notebook_actors.debug`): a stopped actor's
pdb++ is relayed hop by hop to the root, which holds the tree-wide FIFO lock and shows
the session through a ``ReplFrontEnd``. In a kernel the root is the kernel, and this
module is that front end: it shows a session in the cell that runs the actor (output
as the cell's stdout, prompts as ``input_request`` messages on the kernel's stdin
channel, like IPython's ``%debug``).

Which cell shows a session (the "view"):

- a running ``%%actor NAME`` cell shows sessions of NAME and of every actor below it;
- a running plain cell shows sessions of actors that the notebook's ``%%actor`` cells
  did not spawn (e.g. ``n.run_in_actor(fn, debug_mode=True)`` in a plain cell);
- nobody else: the session is *parked* before it queues for the lock (so it blocks
  nobody) until ``%actor debug NAME`` opens it in a new cell.

Three traps handled here. ``Kernel._input_request`` is synchronous (it would freeze
trio), so prompts are sent and awaited on the stdin socket from trio. Output must
carry the cell's parent header, which ipykernel reads from contextvars: each view keeps
a copy of its cell's context and writes inside it. A frontend without stdin
(nbclient, ``allow_stdin=False``) cannot answer: the view shows where the actor
stopped and continues, so nothing hangs.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import trio

from notebook_actors import debug

from . import _guest
from ._stdin import RequestRouting

log = logging.getLogger("notebook_actors.kernel.debugger")

#: Seconds between re-checks of the stdin socket while waiting for an answer: zmq's
#: fd signals edges, so a missed one must not hang the prompt.
_STDIN_RECHECK = 0.5


_fmt = debug.fmt_uid  # one way to show a uid in every debugger message


def _kernel() -> Any:
    from IPython import get_ipython

    shell = get_ipython()
    return getattr(shell, "kernel", None)


class CellView(RequestRouting):
    """A running cell that can show REPL sessions.

    Made inside the cell's trio task: it copies the cell's contextvars (ipykernel's
    parent header lives there), from which the stdin routing of its execute request is
    read when a session first needs it.
    """

    def __init__(self, label: str, covers: Callable[[list[Any]], int | None]) -> None:
        self.label = label
        #: ``covers(route)``: None, or a rank (lower = closer to the requester).
        self.covers = covers
        self.context = self.routing_context = contextvars.copy_context()
        self.cell_run = _guest.current_cell()
        self.interrupted = False
        self.closed = False
        self.prompt = ""
        self.answers = 0  # answers given in the current session (the no-stdin script)
        self.sessions_done = 0
        self._changed = trio.lowlevel.ParkingLot()
        self._reading: trio.CancelScope | None = None

    def print(self, text: str, stream: str = "stdout") -> None:
        out = getattr(sys, stream)
        self.context.run(out.write, text)

    def flush(self) -> None:
        for out in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                self.context.run(out.flush)

    def interrupt(self) -> None:
        """The cell was interrupted: end its session now and quit later ones."""
        self.interrupted = True
        if self._reading is not None:
            self._reading.cancel()

    async def wait_sessions(self, count: int) -> None:
        """Wait until ``count`` sessions ended in this view (or it was interrupted)."""
        while self.sessions_done < count and not self.interrupted:
            await self._changed.park()

    def _session_done(self) -> None:
        self.sessions_done += 1
        self._changed.unpark_all()


class Parked:
    """A session waiting (before the lock) for a cell to show it."""

    def __init__(self, uid: Any, kind: str, route: list[Any]) -> None:
        self.uid = uid
        self.kind = kind
        self.route = route
        self.view: CellView | None = None
        self.event = trio.Event()
        self.dropped: str | None = None
        self.scope = trio.CancelScope()

    @property
    def name(self) -> str:
        return str(self.uid[0])


class NotebookFrontEnd(debug.ReplFrontEnd):
    """Shows the tree's REPL sessions in notebook cells (see the module doc)."""

    color = False  # pdb++'s escape codes do not belong in an input prompt
    width = 100
    handles_sigint = False  # SIGINT belongs to ipykernel (it interrupts the cell)

    def __init__(self) -> None:
        self.views: list[CellView] = []
        self.parked: list[Parked] = []
        self._admitted: dict[Any, deque[tuple[CellView, list[Any]]]] = {}
        self._view: CellView | None = None  # the one showing the session open now
        self._uid: Any = None
        self.parked_changed = trio.lowlevel.ParkingLot()

    # -- which cell shows a session -----------------------------------------------------
    def _view_for(self, route: list[Any]) -> CellView | None:
        best: tuple[int, int, CellView] | None = None
        for order, view in enumerate(self.views):
            if view.closed:
                continue
            rank = view.covers(route)
            if rank is not None and (best is None or (rank, -order) < best[:2]):
                best = (rank, -order, view)
        return best[2] if best else None

    async def admit(self, uid: Any, kind: str, route: list[Any]) -> None:
        view = self._view_for(route)
        if view is None:
            view = await self._park(Parked(uid, kind, route))
        self._admitted.setdefault(uid, deque()).append((view, route))
        self._publish()

    async def _park(self, parked: Parked) -> CellView:
        self.parked.append(parked)
        self.parked_changed.unpark_all()
        self._publish()
        log.warning(
            "%s of actor %s parked: open it with `%%actor debug %s`", parked.kind, _fmt(parked.uid), parked.name
        )
        try:
            with parked.scope:
                await parked.event.wait()
        finally:
            if parked in self.parked:
                self.parked.remove(parked)
            self._publish()
        if parked.view is None:
            raise RuntimeError(
                f"the parked debugger session of actor {_fmt(parked.uid)} was dropped: {parked.dropped or 'cancelled'}"
            )
        return parked.view

    def attach(self, parked: Parked, view: CellView) -> None:
        parked.view = view
        parked.event.set()

    def drop_parked(self, uids: set[Any], why: str) -> None:
        """End parked sessions that passed through any of ``uids`` (they are being killed)."""
        for parked in list(self.parked):
            if uids & set(parked.route):
                parked.dropped = why
                parked.scope.cancel()

    # -- the session ------------------------------------------------------------------
    def session_started(self, uid: Any, kind: str) -> None:
        view, route = self._admitted_view(uid)
        if view is None or view.closed:  # its cell ended while it queued: another may show it
            view = self._view_for(route) or view
        self._view, self._uid = view, uid
        if view is not None:
            view.answers = 0
            view.prompt = ""
            waiting = self._waiting_text()
            view.print(f"\n[notebook_actors] debugging actor {_fmt(uid)} ({kind}){waiting}\n")
        self._publish()

    def _admitted_view(self, uid: Any) -> tuple[CellView | None, list[Any]]:
        """The view chosen when ``uid``'s session was admitted (FIFO per actor)."""
        queue = self._admitted.get(uid)
        entry = queue.popleft() if queue else (None, [uid])
        if queue is not None and not queue:
            del self._admitted[uid]
        return entry

    def session_ended(self, uid: Any) -> None:
        view = self._view
        self._view, self._uid = None, None
        if view is not None:
            if view.prompt:
                view.print(view.prompt + "\n")
                view.prompt = ""
            view.print(f"[notebook_actors] debugger session of actor {_fmt(uid)} ended\n")
            view.flush()
            view._session_done()
        self._publish()

    def write(self, text: str) -> None:
        view = self._view
        if view is None:
            log.info("debugger output with no cell to show it: %s", text)
            return
        head, sep, tail = (view.prompt + text).rpartition("\n")
        view.prompt = tail
        if head or sep:
            view.print(head + sep)

    def notice(self, text: str) -> None:
        shown: set[int] = set()
        for view in [self._view, *(v for q in self._admitted.values() for v, _ in q)]:
            if view is not None and id(view) not in shown and not view.closed:
                shown.add(id(view))
                view.print(f"[notebook_actors] {text}\n", "stderr")
        self._publish()

    def interrupted(self) -> None:  # SIGINT is the kernel's: never called here
        pass

    async def readline(self) -> str:
        view = self._view
        if view is None:
            return "c\n"
        prompt, view.prompt = view.prompt, ""
        if self._uid is not None:  # an input box shows only its prompt: name the actor there
            prompt = f"[{self._uid[0]}] {prompt}"
        if view.interrupted:
            view.print(f"{prompt}q  # the cell was interrupted\n")
            return "q\n"
        if view.closed:  # its cell ended: nobody can answer there any more
            view.print(f"{prompt}continue  # the cell has ended\n")
            return "c\n"
        if not view.allow_stdin:
            return self._scripted(view, prompt)
        view.flush()
        with trio.CancelScope() as scope:
            view._reading = scope
            try:
                line = await _ask_stdin(view, prompt)
            finally:
                view._reading = None
        if scope.cancelled_caught or view.interrupted:
            view.print(f"\n{prompt}q  # the cell was interrupted\n")
            return "q\n"
        view.answers += 1
        return line

    def _scripted(self, view: CellView, prompt: str) -> str:
        """No stdin (nbclient): show where the actor stopped, then continue."""
        view.answers += 1
        if view.answers == 1:
            view.print(
                "[notebook_actors] this frontend cannot answer prompts (allow_stdin=False): showing where the "
                "actor stopped, then continuing. Run the cell in JupyterLab/Notebook to debug interactively.\n"
                f"{prompt}where\n"
            )
            return "where\n"
        view.print(f"{prompt}continue\n")
        return "c\n"

    def readline_blocking(self) -> str:
        raise RuntimeError(
            "a debugger in the kernel's own root actor cannot prompt: its pdb would block the event loop "
            "that serves the notebook. Use IPython's breakpoint()/%debug for kernel code, or run the code "
            "in an `%%actor` cell (its breakpoints open here)"
        )

    def _waiting_text(self) -> str:
        waiting = debug.lock.waiting()
        parked = [p.uid for p in self.parked]
        text = ""
        if waiting:
            text += "; waiting: " + ", ".join(_fmt(u) for u in waiting)
        if parked:
            text += "; parked: " + ", ".join(_fmt(u) for u in parked)
        return text

    def _publish(self) -> None:
        """The tree widget's debugger line: who is parked (the lock publishes the rest)."""
        try:
            from notebook_actors import ext

            ext.set_debug_parked([p.uid for p in self.parked])
        except Exception:  # the widget's view must never break a session
            log.debug("could not publish the debugger state", exc_info=True)


async def _ask_stdin(view: CellView, prompt: str) -> str:
    """Send ``input_request`` for ``view``'s cell and wait (in trio) for the answer."""
    import zmq

    kernel = _kernel()
    sock = kernel.stdin_socket
    while True:  # purge stale replies (an earlier, abandoned prompt)
        try:
            sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            break
    kernel.session.send(sock, "input_request", {"prompt": prompt, "password": False}, view.parent, ident=view.ident)
    fd = sock.getsockopt(zmq.FD)
    while True:
        while sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
            _idents, reply = kernel.session.recv(sock, mode=zmq.NOBLOCK)
            if reply is None:
                continue
            value = str(reply.get("content", {}).get("value", ""))
            return "" if value == "\x04" else value + "\n"  # Ctrl-D: end of input
        with trio.move_on_after(_STDIN_RECHECK):
            await trio.lowlevel.wait_readable(fd)


# -- install / attach ------------------------------------------------------------------
_front_end: NotebookFrontEnd | None = None


def install() -> NotebookFrontEnd:
    """Show the tree's REPL sessions in this notebook (``%load_ext`` calls it)."""
    global _front_end
    if _front_end is None:
        _front_end = NotebookFrontEnd()
    if debug.installed_front_end() is not _front_end:
        debug.set_front_end(_front_end)
    _register_widget_action()
    from . import _dap  # JupyterLab's debugger panel on an actor (`%actor debugger NAME`)

    _dap.install()
    return _front_end


def uninstall() -> None:
    global _front_end
    if _front_end is not None and debug.installed_front_end() is _front_end:
        debug.set_front_end(None)
    _front_end = None


def front_end() -> NotebookFrontEnd | None:
    return _front_end


@contextlib.contextmanager
def showing(label: str, covers: Callable[[list[Any]], int | None]) -> Iterator[CellView | None]:
    """While the calling cell runs, show the sessions that ``covers`` accepts in it."""
    fe = _front_end
    if fe is None:
        yield None
        return
    view = CellView(label, covers)
    fe.views.append(view)
    if view.cell_run is not None:
        view.cell_run.observers.append(view.interrupt)
    try:
        yield view
    finally:
        view.closed = True
        fe.views.remove(view)
        if view.cell_run is not None:
            with contextlib.suppress(ValueError):
                view.cell_run.observers.remove(view.interrupt)


def covers_actor(uid: Any) -> Callable[[list[Any]], int | None]:
    """For an ``%%actor`` cell: sessions of actor ``uid`` and of its descendants."""
    uid = tuple(uid)

    def covers(route: list[Any]) -> int | None:
        return route.index(uid) if uid in route else None

    return covers


def covers_unnamed(is_notebook_actor: Callable[[Any], bool]) -> Callable[[list[Any]], int | None]:
    """For a plain cell: sessions of actors that no ``%%actor`` cell spawned."""

    def covers(route: list[Any]) -> int | None:
        return None if is_notebook_actor(route[-1]) else len(route) + 1000

    return covers


async def open_parked(name: str | None, find_uid: Callable[[str], Any]) -> str:
    """``%actor debug [NAME]``: show the parked session(s) of NAME in the calling cell.

    When NAME is a notebook actor with nothing parked yet, wait for its next stop.
    Returns a summary line; raises LookupError when nothing is parked for NAME.
    """
    fe = _front_end
    uid = find_uid(name) if name else None

    def matching() -> list[Parked]:
        parked = list(fe.parked) if fe is not None else []
        return [p for p in parked if p.name == name or (uid is not None and uid in p.route)] if name else parked

    parked = matching()
    if not parked and uid is not None and fe is not None:
        print(f"[notebook_actors] waiting for actor {name!r} to stop in its debugger (interrupt to give up)")
        while not (parked := matching()):
            await fe.parked_changed.park()
    if not parked:
        names = ", ".join(sorted({p.name for p in fe.parked})) if fe is not None else ""
        raise LookupError(
            f"no parked debugger session{' of ' + repr(name) if name else ''}"
            + (f"; parked: {names}" if names else ": no actor is waiting in its debugger")
        )
    chosen = parked[0]
    with showing(f"%actor debug {chosen.name}", lambda route: None) as view:
        assert view is not None and fe is not None
        done = view.sessions_done
        fe.attach(chosen, view)
        await view.wait_sessions(done + 1)
    left = [p.name for p in fe.parked]
    return f"still parked: {', '.join(left)} (`%actor debug NAME`)" if left else ""


def _register_widget_action() -> None:
    try:
        from notebook_actors.widgets import register_action
    except ImportError:
        return
    register_action("debug", _widget_debug)


async def _widget_debug(node: dict[str, Any]) -> str:
    fe = _front_end
    uid = tuple(node.get("uid") or ())
    if fe is not None and any(p.uid == uid for p in fe.parked):
        return f"actor {node['name']} is parked in its debugger: run `%actor debug {node['name']}` in a new cell"
    if fe is not None and fe._uid == uid:
        return f"actor {node['name']} is in a debugger session shown in a running cell"
    raise RuntimeError(f"actor {node['name']} is not waiting in its debugger")
