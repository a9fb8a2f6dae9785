"""The public entry points: ``await breakpoint()``, ``pause_from_sync()``, post-mortems,
and the builtin ``breakpoint()`` in debug mode."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import trio

from .._exceptions import PACKAGE_DIR
from ._frontend import fmt_uid
from ._session import open_session, open_session_blocking, remember_loop, stepping_pdb

log = logging.getLogger("notebook_actors.debug")


def _caller_frame(depth: int) -> Any:
    """The first frame outside this package, ``depth`` frames up or more."""
    frame: FrameType | None = sys._getframe(depth + 1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(PACKAGE_DIR):
        frame = frame.f_back
    return frame


def _continue_stepping(frame: Any) -> str | None:
    """A breakpoint reached while this thread's session steps stops in that session
    (asking the root for the lock this actor holds would wait forever). Returns None
    when no session steps here, else "stepping" or "ended" (after the stop)."""
    pdb = stepping_pdb()
    if pdb is None:
        return None
    return "stepping" if pdb.stop_at(frame) else "ended"


async def breakpoint() -> None:
    """Pause the calling task in pdb++; the REPL shows on the root actor's terminal.

    Waits (cancellably) while another actor holds the tree's REPL. ``c`` resumes the
    task; ``q`` cancels the RPC call the task serves (its caller gets ContextCancelled)
    or, outside any call, raises ``bdb.BdbQuit``. While the REPL is open this actor is
    paused as a whole (its pdb owns the thread), and Ctrl-C at the root does not
    cancel the tree: it interrupts what the REPL evaluates.
    """
    frame = _caller_frame(1)
    stepping = _continue_stepping(frame)
    if stepping == "ended":
        await trio.lowlevel.checkpoint()  # `q` there cancelled the task
    if stepping is not None:
        return
    session = await open_session("breakpoint")
    from ._pdb import interact, quit_task

    if interact(session, frame=frame) == "quit":
        quit_task()
        await trio.lowlevel.checkpoint()


pause = breakpoint


def _in_trio_thread() -> bool:
    try:
        trio.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def pause_from_sync() -> None:
    """Pause synchronous code in pdb++, routed to the root's REPL like ``breakpoint()``.

    Works in a plain ``def`` running in an actor's trio thread (the whole actor pauses,
    also while it waits for the tree's REPL) and in a worker thread of the actor
    (``trio.to_thread.run_sync``, or any thread in debug mode: only that thread
    pauses, the actor keeps serving). ``q`` cancels the RPC call when called in the
    trio thread; in a worker thread it raises ``bdb.BdbQuit`` there.

    In the root actor's own trio thread the REPL cannot be waited for (the wait needs
    that thread): if another actor holds it, a line says so and the code runs on.

    Raises:
        RuntimeError: called outside an actor.
    """
    from .._state import current_actor_or_none

    actor = current_actor_or_none()
    if actor is None:
        raise RuntimeError("pause_from_sync() needs a running actor (it routes the REPL through the tree)")
    _pause_sync(actor, _caller_frame(1))


def _pause_sync(actor: Any, frame: Any) -> None:
    if _continue_stepping(frame) is not None:
        return
    in_trio = _in_trio_thread()
    session = open_session_blocking("breakpoint", actor, in_trio)
    if session is None:
        from ._lock import lock

        print(
            f"[notebook_actors] breakpoint skipped in root actor {fmt_uid(actor.uid)}: the REPL is held by "
            f"{fmt_uid(lock.holder)}; use `await notebook_actors.breakpoint()` to wait for it",
            file=sys.stderr,
        )
        return
    from ._pdb import interact, quit_task

    if interact(session, frame=frame) == "quit":
        quit_task()


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
        session = await open_session("post-mortem")
    from ._pdb import interact

    interact(session, exc=exc)


def _wants_post_mortem(exc: BaseException) -> bool:
    import bdb

    from .._exceptions import ContextCancelled, RemoteActorError

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
    routed REPL through the same path as :func:`pause_from_sync`."""
    from .._state import current_actor_or_none

    actor = current_actor_or_none()
    if actor is None:
        sys.__breakpointhook__(*args, **kwargs)  # noqa: T100 - outside an actor, Python's own hook
        return
    _pause_sync(actor, _caller_frame(1))


def enable_debug_mode() -> Callable[[], None]:
    """Route the builtin ``breakpoint()`` to the tree's REPL; return the undo.

    Called in the actor's trio thread as its runtime starts.
    """
    remember_loop()
    if os.environ.get("PYTHONBREAKPOINT") == "0":
        return lambda: None
    old = sys.breakpointhook
    sys.breakpointhook = _breakpointhook

    def restore() -> None:
        if sys.breakpointhook is _breakpointhook:
            sys.breakpointhook = old

    return restore
