"""Stack dumps: every trio task's and every thread's stack of an actor, also while its
trio thread is stuck in synchronous code.

Each actor keeps a small daemon thread blocked on a pipe. ``SIGUSR1`` (sent by a user,
or by the root for :func:`dump_stacks`) only writes a byte to that pipe, so the dump
needs nothing from the actor's trio loop: the thread walks the trio task tree from the
root task and every thread's frames, then sends the text up the tree on a connection
of its own (the parents' loops relay it). At the root the text goes to whoever asked
(:func:`dump_stacks`), or else to the root's stderr.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import trio

from .._exceptions import PACKAGE_DIR

log = logging.getLogger("notebook_actors.debug")

#: Seconds :func:`dump_stacks` waits for an actor's dump (a hang guard: a dump needs no
#: answer from the actor's own loop, only its stack thread and its parents).
DUMP_TIMEOUT = 10.0


# -- formatting ---------------------------------------------------------------------


def _coroutine_frames(coro: Any) -> Iterator[Any]:
    """The frames of a suspended coroutine chain, outermost first."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "ag_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            return
        yield frame
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None) or getattr(coro, "gi_yieldfrom", None)


_TRIO_DIR = os.path.dirname(os.path.abspath(trio.__file__))
#: Frames that say nothing about the actor's own work: each run of them is one line.
_PLUMBING = (_TRIO_DIR, os.path.dirname(os.path.abspath(threading.__file__)) + os.sep + "threading.py", "<frozen ")
#: Modules whose frames are the runtime's, not the user's: a dump hides them unless all
#: frames are asked for (``everything=True``).
_RUNTIME_MODULES = (
    "notebook_actors",
    "trio",
    "outcome",
    "sniffio",
    "greenback",
    "threading",
    "runpy",
    "contextlib",
    "selectors",
    "concurrent",
    "queue",
)


#: The package's own directory: its scripts (the fork server runs as ``__main__``).


def _is_runtime(frame: Any) -> bool:
    module = frame.f_globals.get("__name__") or ""
    return (
        frame.f_code is _on_sigusr1.__code__
        or module.partition(".")[0] in _RUNTIME_MODULES
        or frame.f_code.co_filename.startswith(PACKAGE_DIR)
    )


class _Dump:
    """One stack dump being written: its lines, and what it left out."""

    def __init__(self, everything: bool) -> None:
        self.everything = everything
        self.lines: list[str] = []
        self.hidden_frames = 0
        self.hidden_tasks = 0
        self.hidden_threads = 0

    def user_frames(self, frames: list[Any]) -> list[Any]:
        """``frames`` minus the runtime's (all of them when everything is asked for)."""
        if self.everything:
            return frames
        kept = [f for f in frames if not _is_runtime(f)]
        self.hidden_frames += len(frames) - len(kept)
        return kept

    def note(self) -> str:
        """One line saying what was left out, or nothing."""
        if not (self.hidden_frames or self.hidden_tasks or self.hidden_threads):
            return ""
        parts = [f"{self.hidden_frames} frame{'s' * (self.hidden_frames != 1)}"]
        if self.hidden_tasks:
            parts.append(f"{self.hidden_tasks} task{'s' * (self.hidden_tasks != 1)}")
        if self.hidden_threads:
            parts.append(f"{self.hidden_threads} thread{'s' * (self.hidden_threads != 1)}")
        return f"({', '.join(parts)} of notebook_actors, trio and Python hidden: --all shows them)\n"


def _format_frames(frames: list[Any], indent: str) -> str:
    """Like a traceback, with each run of trio's (or threading's) frames on one line."""
    out: list[str] = []
    run: list[Any] = []

    def flush_run() -> None:
        if run:
            where = "trio" if run[0].f_code.co_filename.startswith(_TRIO_DIR) else "Python"
            out.append(f"{indent}  ... {len(run)} frame{'s' * (len(run) > 1)} in {where} ({run[0].f_code.co_name})\n")
            run.clear()

    for frame in frames:
        if frame.f_code is _on_sigusr1.__code__:
            continue  # the signal handler that woke us, not the actor's work
        if frame.f_code.co_filename.startswith(_PLUMBING):
            run.append(frame)
            continue
        flush_run()
        summary = traceback.StackSummary.extract([(frame, frame.f_lineno)], lookup_lines=True)
        out.extend(indent + line for line in "".join(summary.format()).splitlines(True))
    flush_run()
    return "".join(out)


def _task_lines(task: Any, depth: int, dump: _Dump) -> None:
    """A task and its children; without everything, a task running none of the user's
    code is left out and its children take its place."""
    frames = dump.user_frames(list(_coroutine_frames(task.coro)))
    shown = dump.everything or bool(frames)
    if shown:
        indent = "  " * depth
        dump.lines.append(f"{indent}task {task.name!r}:\n")
        dump.lines.append(_format_frames(frames, indent + "  "))
    else:
        dump.hidden_tasks += 1
    for nursery in list(task.child_nurseries):
        for child in sorted(nursery.child_tasks, key=lambda t: t.name):
            _task_lines(child, depth + shown, dump)


def format_stacks(actor: Any, root_task: Any = None, *, everything: bool = False) -> str:
    """Every thread's stack and every trio task's stack of this process, as text.

    Safe to call from any thread: it only reads frames.

    Args:
        actor: the actor whose process this is (for the header line).
        root_task: the trio root task (the one recorded at install by default).
        everything: also the frames, tasks and threads of the runtime, trio and
            Python; without it they are left out, with one line saying how many.
    """
    dump = _Dump(everything)
    dump.lines.append(f"stacks of actor {actor.uid[0]!r} (pid {os.getpid()}, uid {actor.uid[1][:8]})\n")
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()
    dump.lines.append("threads:\n")
    frame: FrameType | None
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        frames = []
        while frame is not None:
            frames.append(frame)
            frame = frame.f_back
        frames = dump.user_frames(frames[::-1])
        if not frames and not everything:
            dump.hidden_threads += 1
            continue
        dump.lines.append(f"  thread {names.get(ident, ident)!r}:\n")
        dump.lines.append(_format_frames(frames, "    "))
    root_task = root_task or _installed.get("root_task")
    if root_task is not None:
        dump.lines.append("trio tasks:\n")
        start, counts = len(dump.lines), (dump.hidden_frames, dump.hidden_tasks)
        for _attempt in range(3):  # the task tree may change under us: take it again
            del dump.lines[start:]
            dump.hidden_frames, dump.hidden_tasks = counts
            try:
                _task_lines(root_task, 1, dump)
            except RuntimeError:
                continue
            break
    dump.lines.append(dump.note())
    return "".join(dump.lines)


# -- the stack thread (every actor) ----------------------------------------------------

_installed: dict[str, Any] = {}


#: Seconds an ending actor waits for its stack thread to finish (it is idle but for a dump).
JOIN_TIMEOUT = 2.0


def install(actor: Any) -> Callable[[], None]:
    """Start this actor's stack thread and route SIGUSR1 to it; return the undo.

    Called in the actor's trio thread as its runtime starts. The SIGUSR1 handler is
    installed only in the main thread and only where nobody else handles the signal
    (a child ignores it from its first line until then).
    """
    read_fd, write_fd = os.pipe()
    _installed.update(
        actor=actor,
        root_task=trio.lowlevel.current_root_task(),
        token=trio.lowlevel.current_trio_token(),
        wake=write_fd,
    )
    thread = threading.Thread(target=_serve, args=(actor, read_fd), name="notebook_actors-stacks", daemon=True)
    thread.start()
    old_handler: Any = None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGUSR1) in (
        signal.SIG_DFL,
        signal.SIG_IGN,
    ):
        old_handler = signal.signal(signal.SIGUSR1, _on_sigusr1)

    def undo() -> None:
        if old_handler is not None and signal.getsignal(signal.SIGUSR1) is _on_sigusr1:
            signal.signal(signal.SIGUSR1, old_handler)
        _installed.clear()
        os.close(write_fd)  # the thread sees the end of the pipe and exits
        # ... and closes its end: wait for that, so that an actor that ended holds no
        # fd (bounded: a dump it is still sending has its own timeout)
        thread.join(JOIN_TIMEOUT)

    return undo


def _on_sigusr1(signum: int, frame: Any) -> None:
    """Only wake the stack thread: a signal handler must not take locks."""
    wake = _installed.get("wake")
    if wake is not None:
        try:
            os.write(wake, b"\0")
        except OSError:
            pass


def _serve(actor: Any, read_fd: int) -> None:
    try:
        while os.read(read_fd, 1):
            try:
                _deliver(actor, {"user": format_stacks(actor), "all": format_stacks(actor, everything=True)})
            except Exception:  # one failed dump must not end the thread
                log.warning("could not dump the stacks of actor %s", actor.uid, exc_info=True)
    finally:
        os.close(read_fd)


def _deliver(actor: Any, texts: dict[str, str]) -> None:
    """Hand a dump (``{"user": trimmed, "all": everything}``) to the root: here if this
    is the root, else up the tree."""
    if actor.parent_addr is None:
        trio.from_thread.run_sync(_arrived, tuple(actor.uid), texts, trio_token=_installed["token"])
    else:
        trio.run(_send_up, actor, texts)


async def _send_up(actor: Any, texts: dict[str, str]) -> None:
    """From the stack thread: one call to the parent on a connection of our own."""
    from .._channel import connect
    from ..msg import Return, Start

    with trio.fail_after(DUMP_TIMEOUT):
        chan = await connect(actor.parent_addr, actor.secret, actor.ident)
        try:
            async with trio.open_nursery() as n:
                n.start_soon(chan.run_writer)
                cid = chan.next_cid()
                kwargs = {"uid": list(actor.uid), "texts": texts}
                chan.send_nowait(Start(cid, __name__, "_stack_report", kwargs, "call"))
                while not any(type(m) is Return or getattr(m, "cid", None) == cid for m in await chan.receive_batch()):
                    pass
                n.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await chan.aclose()


async def _stack_report(uid: list[str], texts: dict[str, str]) -> None:
    """RPC (every actor serves it): a descendant's dump on its way to the root."""
    from .._portal import Portal
    from .._state import current_actor

    actor = current_actor()
    if actor.parent_addr is None or actor.parent_chan is None:
        _arrived((uid[0], uid[1]), texts)
    else:
        await Portal(actor.parent_chan, actor).run(_stack_report, uid=uid, texts=texts)


# -- at the root ---------------------------------------------------------------------

#: Requests waiting for the dump of each actor (uid -> the slots to fill).
_waiting: dict[tuple[str, str], list[Callable[[dict[str, str]], None]]] = {}


def _arrived(uid: tuple[str, str], texts: dict[str, str]) -> None:
    """A dump reached the root: to whoever asked for it, else to the root's stderr."""
    takers = _waiting.pop(uid, None)
    if takers:
        for take in takers:
            take(texts)
        return
    sys.stderr.write(f"\n[notebook_actors] SIGUSR1: {texts['user']}")
    sys.stderr.flush()


async def dump_stacks(name_or_path: str, *, everything: bool = False) -> str:
    """The stacks of an actor of this tree: every trio task's and every thread's.

    Works while that actor is stuck in synchronous code (its trio loop is not needed:
    see the module doc). Callable in any actor of the tree; the request goes through
    the root.

    Args:
        name_or_path: the actor's name (``"worker"``), its key (``"worker.<uuid>"``),
            or a path of names from the root (``"pool/worker"``).
        everything: also the frames, tasks and threads of notebook_actors, trio and
            Python; by default they are left out, with one line saying how many.

    Returns:
        The stacks as text: a header line naming the actor and its pid, then each
        thread running the user's code, then the trio task tree.

    Raises:
        LookupError: no live actor (or more than one) answers to ``name_or_path``.
        RuntimeError: the actor runs on another host, or did not answer in time.
    """
    from .._portal import Portal
    from .._state import current_actor

    actor = current_actor()
    if actor.parent_addr is not None and actor.parent_chan is not None:
        text: str = await Portal(actor.parent_chan, actor).run(
            _dump_at_root, name_or_path=name_or_path, everything=everything
        )
        return text
    return await _dump_at_root(name_or_path, everything)


async def _dump_at_root(name_or_path: str, everything: bool = False) -> str:
    """RPC (every actor serves it): :func:`dump_stacks`, carried up to the root."""
    from .._portal import Portal
    from .._state import current_actor
    from .._tree import key_of

    actor = current_actor()
    if actor.parent_addr is not None and actor.parent_chan is not None:
        text: str = await Portal(actor.parent_chan, actor).run(
            _dump_at_root, name_or_path=name_or_path, everything=everything
        )
        return text
    if name_or_path in (actor.name, key_of(actor.uid)):
        return format_stacks(actor, trio.lowlevel.current_root_task(), everything=everything)
    node = await _find(name_or_path)
    texts = await _request(node)
    return texts["all" if everything else "user"]


def _matches(nodes: dict[str, Any], root_key: str, name_or_path: str) -> list[dict[str, Any]]:
    live = {k: n for k, n in nodes.items() if n.get("state") not in ("exited", "crashed")}
    if name_or_path in live:
        return [live[name_or_path]]
    if "/" not in name_or_path:
        return [n for n in live.values() if n["name"] == name_or_path]
    parts = [p for p in name_or_path.split("/") if p]
    if parts and root_key in nodes and parts[0] == nodes[root_key]["name"]:
        parts = parts[1:]
    level = [root_key]
    for part in parts:
        level = [k for k, n in live.items() if n.get("parent") in level and n["name"] == part]
    return [live[k] for k in level if k in live and k != root_key]


async def _find(name_or_path: str) -> dict[str, Any]:
    """The one live node of this tree that answers to ``name_or_path`` (at the root)."""
    from .._tree import open_tree_watch

    found: list[dict[str, Any]] = []
    tree: dict[str, Any] = {"nodes": {}}
    with trio.move_on_after(DUMP_TIMEOUT / 2):  # deeper actors appear as their parents report
        async with open_tree_watch(interval=0.1) as watch:
            tree = watch.snapshot()
            while not (found := _matches(tree["nodes"], tree["root"], name_or_path)):
                await watch.__anext__()
                tree = watch.snapshot()
    if len(found) == 1:
        return found[0]
    if found:
        keys = ", ".join(sorted(n["key"] for n in found))
        raise LookupError(f"{len(found)} actors are called {name_or_path!r} ({keys}): give a key or a path")
    names = ", ".join(sorted({n["name"] for n in tree["nodes"].values()})) or "none"
    raise LookupError(f"no live actor {name_or_path!r} in this tree (actors: {names})")


async def _request(node: dict[str, Any]) -> dict[str, str]:
    """Signal a local actor's stack thread and wait for its dump to reach the root."""
    name, pid = node["name"], node.get("pid")
    if node.get("host"):
        raise RuntimeError(f"actor {name!r} runs on {node['host']}: stack dumps reach actors on this host only")
    if not pid or not node.get("addr"):  # connected back: its stack thread is up
        raise RuntimeError(f"actor {name!r} is still starting: ask again in a moment")
    uid = (node["uid"][0], node["uid"][1])
    got: list[dict[str, str]] = []
    arrived = trio.Event()

    def take(texts: dict[str, str]) -> None:
        got.append(texts)
        arrived.set()

    _waiting.setdefault(uid, []).append(take)
    try:
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            raise RuntimeError(f"actor {name!r} (pid {pid}) has exited") from None
        with trio.move_on_after(DUMP_TIMEOUT):
            await arrived.wait()
    finally:
        takers = _waiting.get(uid, [])
        if take in takers:
            takers.remove(take)
        if not takers:
            _waiting.pop(uid, None)
    if not got:
        raise RuntimeError(f"actor {name!r} (pid {pid}) sent no stacks within {DUMP_TIMEOUT:.0f} s")
    return got[0]
