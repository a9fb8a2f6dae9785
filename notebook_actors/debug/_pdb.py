"""pdb++ bound to a routed session (this module imports pdbpp: it loads only when a
debugger actually opens).

Stepping keeps the session: after ``n``/``s``/``r``/``until`` the task runs on with
pdb's trace function set, the session stays open and the lock stays held, until the
user continues or quits at a later stop. A breakpoint reached while that session is
open (``while True: await breakpoint()`` and ``n``) stops in the same session.
"""

from __future__ import annotations

import bdb
import code
import contextlib
import os
import signal
import sys
import textwrap
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pdbpp
import trio

from .._call import SERVING
from .._exceptions import PACKAGE_DIR
from ._lock import sigint_guard
from ._session import LocalSession, SessionIO, _stepping

_TRIO_DIR = os.path.dirname(os.path.abspath(trio.__file__))

#: pdb++'s own prompt (tools drive tractor's debugger on it); who is in the REPL is on
#: the line above: ``Attaching pdb to actor: ('name', 'uuid')``.
PROMPT = "(Pdb++) "

#: The standard library's folder: its frames stop a step only when user code called them.
_STDLIB_DIR = os.path.dirname(os.path.abspath(os.__file__))

#: Stepping (``s``) never stops inside the runtime or trio (nor in the standard library
#: when the runtime called it: see ``ActorPdb.stop_here``).
SKIP_MODULES = [
    "trio",
    "trio.*",
    "outcome",
    "sniffio",
    "sniffio.*",
    "notebook_actors",
    "notebook_actors.*",
    "contextlib",
]

#: Commands that move execution: always commands, even when the frame has a variable
#: of that name (pdb++ would print the variable: our examples call their nursery `n`).
_FLOW_COMMANDS = frozenset(
    {"n", "next", "s", "step", "c", "cont", "continue", "r", "return", "q", "quit", "exit", "unt", "until"}
)


class ActorPdb(pdbpp.Pdb):
    """pdb++ bound to a routed session: the runtime's own frames are hidden and
    ``interact`` reads and writes through the session, not the real stdio."""

    _term_size = (80, 24)

    #: How the last prompt was left: "continue", "step" (n/s/r/until) or "quit".
    resume = "continue"
    stepping = False
    #: Post-mortem: start at the innermost visible frame (the crash), not at ours.
    select_innermost = False
    io: SessionIO

    @classmethod
    def for_session(cls, io: SessionIO, info: dict[str, Any], prompt: str) -> ActorPdb:
        """A pdb++ reading and writing through ``io``, styled as the root's front end
        asks (``info``: colour and terminal size)."""
        # pdb++'s metaclass takes the global-pdb options, so they go through the call
        pdb = cls(stdin=io, stdout=io, skip=SKIP_MODULES, nosigint=True, use_global_pdb=False, set_global_pdb=False)
        pdb.io = io
        pdb.prompt = prompt
        pdb.sticky = False  # sticky mode clears and pads a whole screen: opt in with `sticky`
        color = bool(info.get("color"))
        pdb.config.highlight = pdb.config.use_pygments = color
        pdb._term_size = (int(info.get("width", 80)), int(info.get("height", 24)))
        return pdb

    # -- presentation -------------------------------------------------------------------
    def _is_hidden(self, frame: Any) -> bool:
        filename = os.path.abspath(frame.f_code.co_filename)
        if filename.startswith((PACKAGE_DIR, _TRIO_DIR)) or _wraps_our_generator(frame):
            return True
        return bool(super()._is_hidden(frame))

    def compute_stack(self, fullstack: Any, idx: Any = None) -> Any:
        return super().compute_stack(fullstack, None if self.select_innermost else idx)

    def stop_here(self, frame: Any) -> bool:
        """pdb's rule, and no stop in the standard library when the runtime called it
        (``s`` at ``await breakpoint()`` stopped in importlib and posixpath, called by
        the breakpoint's own code, instead of at the next breakpoint)."""
        return super().stop_here(frame) and not _called_by_the_runtime(self, frame)

    def get_terminal_size(self) -> tuple[int, int]:
        return self._term_size

    def parseline(self, line: str) -> Any:
        if line.strip() in _FLOW_COMMANDS:
            cmd = line.strip()
            return cmd, "", cmd
        return super().parseline(line)

    def do_interact(self, arg: str) -> None:
        ns = {**self.curframe.f_globals, **self.curframe_locals}
        saved = sys.stdin, sys.stdout, sys.stderr
        sys.stdin = sys.stdout = sys.stderr = self.stdin
        try:
            code.interact("*interactive* (Ctrl-D returns to pdb)", local=ns)
        except SystemExit:
            pass
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved

    # -- stepping: the session stays open while the task runs to the next stop ----------
    def interaction(self, frame: Any, tb: Any) -> Any:
        self.resume = "continue"
        with _interruptible(self.io.session):
            try:
                return super().interaction(frame, tb)
            finally:
                if self.stepping:
                    self._after_traced_stop()

    def _after_traced_stop(self) -> None:
        if self.resume == "step":
            return
        self.stop_stepping()
        if self.resume == "quit":
            self.quitting = False  # no BdbQuit in the task: cancel it instead
            quit_task()

    def start_stepping(self, frame: Any) -> None:
        """Trace the paused task's frames so pdb stops again at the next line; the
        session ends when the user continues or quits at a later stop."""
        self.stepping = True
        _stepping[threading.get_ident()] = self
        f = frame
        while f is not None:
            f.f_trace = self.trace_dispatch
            if f is self.botframe:
                break
            f = f.f_back
        sys.settrace(self.trace_dispatch)

    def stop_stepping(self) -> None:
        """End the stepping session: no more tracing; the lock passes on."""
        self.stepping = False
        _stepping.pop(threading.get_ident(), None)
        sys.settrace(None)
        self.io.close_session()

    def stop_at(self, frame: Any) -> bool:
        """A breakpoint reached while this session steps: stop there, in this session.
        Returns True while the session still steps (the caller must not checkpoint: a
        suspended coroutine would show up as a return event)."""
        frame.f_trace = self.trace_dispatch
        sys.settrace(None)  # not pdb's own code: `s` stopped inside pdb++'s interaction
        try:
            self.interaction(frame, None)
        finally:
            if self.stepping:
                sys.settrace(self.trace_dispatch)
        return self.stepping

    def _flow(self, how: str, command: Any, arg: str) -> Any:
        self.resume = how
        return command(self, arg)

    def do_next(self, arg: str) -> Any:
        return self._flow("step", pdbpp.Pdb.do_next, arg)

    def do_step(self, arg: str) -> Any:
        return self._flow("step", pdbpp.Pdb.do_step, arg)

    def do_return(self, arg: str) -> Any:
        return self._flow("step", pdbpp.Pdb.do_return, arg)

    def do_until(self, arg: str) -> Any:
        return self._flow("step", pdbpp.Pdb.do_until, arg)

    def do_quit(self, arg: str) -> Any:
        return self._flow("quit", pdbpp.Pdb.do_quit, arg)

    def do_EOF(self, arg: str) -> Any:
        return self._flow("quit", pdbpp.Pdb.do_EOF, arg)

    do_n, do_s, do_r, do_unt = do_next, do_step, do_return, do_until
    do_q = do_exit = do_quit


def _called_by_the_runtime(pdb: ActorPdb, frame: Any) -> bool:
    """Whether ``frame`` is standard-library code that the runtime (or trio) called,
    through standard-library frames only."""
    f = frame
    while f is not None and _in_stdlib(f):
        f = f.f_back
        if f is not None and pdb.is_skipped_module(f.f_globals.get("__name__", "")):
            return True
    return False


def _in_stdlib(frame: Any) -> bool:
    filename = frame.f_code.co_filename
    if filename.startswith("<frozen "):
        return True
    path = os.path.abspath(filename)
    return path.startswith(_STDLIB_DIR + os.sep) and "site-packages" not in path


def _wraps_our_generator(frame: Any) -> bool:
    """A contextlib frame driving one of the runtime's own context managers."""
    if frame.f_code.co_filename != contextlib.__file__:
        return False
    gen = getattr(frame.f_locals.get("self"), "gen", None)
    gen_code = getattr(gen, "ag_code", None) or getattr(gen, "gi_code", None)
    return gen_code is not None and os.path.abspath(gen_code.co_filename).startswith(PACKAGE_DIR)


def interact(session: Any, *, frame: Any = None, exc: BaseException | None = None) -> str:
    """Run one pdb++ interaction on ``session``; return ``"continue"`` or ``"quit"``.

    Closes the session (which releases the lock) unless the user steps on.
    """
    from .._state import current_actor

    actor = current_actor()
    io = SessionIO(session)
    session.pdb_thread = threading.current_thread()
    stepping = False
    try:
        pdb = ActorPdb.for_session(io, session.info, PROMPT)
        if exc is None:
            io.write(f"\nAttaching pdb to actor: {tuple(actor.uid)}\n")
            pdb.reset()
            pdb.botframe = task_root_frame(frame)
            pdb.interaction(frame, None)
            if pdb.resume == "step":  # n/s/r/until: trace the task, keep the session
                pdb.start_stepping(frame)
                stepping = True
                return "continue"
        else:
            io.write(f"\nAttaching to pdb in crashed actor: {tuple(actor.uid)}\n")
            io.write(describe(exc))
            # the live frames too (botframe: the task's own), so the root's post-mortem
            # of a boxed error starts in the user's code that awaited the failed actor
            here = sys._getframe()
            pdb.reset()
            pdb.botframe = task_root_frame(here)
            pdb.select_innermost = True
            pdb.interaction(here, exc.__traceback__)
        return "quit" if pdb.resume == "quit" else "continue"
    finally:
        if not stepping:
            sys.settrace(None)
            io.close_session()


def describe(exc: BaseException) -> str:
    """The error above a post-mortem: a boxed error with its remote traceback (ending
    in the original line); a group lists each of its members so."""
    text = "".join(traceback.format_exception_only(type(exc), exc))
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            text += textwrap.indent(describe(sub), "  ").replace("  ", "- ", 1)
    return text


@contextlib.contextmanager
def _interruptible(session: Any) -> Iterator[None]:
    """Ctrl-C at a prompt becomes KeyboardInterrupt, which pdb handles (it interrupts
    the expression being evaluated): trio's handler would cancel the whole tree. The
    root's own session gets the signal itself; a routed one gets it forwarded."""
    if isinstance(session, LocalSession):
        with sigint_guard(session.front_end, signal.default_int_handler):
            yield
    elif threading.current_thread() is threading.main_thread():
        old = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, old)
    else:
        yield


def task_root_frame(frame: Any) -> Any:
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


def quit_task() -> None:
    """``q`` at a breakpoint: cancel the RPC call this task serves (the caller gets
    ContextCancelled naming this actor); outside any call, raise BdbQuit."""
    from .._state import current_actor

    call = SERVING.get()
    if call is None or call.scope is None:
        raise bdb.BdbQuit(f"quit from the debugger in actor {current_actor().uid}")
    call.cancel_by(current_actor().uid)
