"""Where the root shows REPL sessions: the front-end interface and the terminal one."""

from __future__ import annotations

import os
import sys
from typing import Any

import trio


def fmt_uid(uid: Any) -> str:
    """``name[1a2b3c4d]``: short enough for a status line, unique enough to tell apart."""
    return f"{uid[0]}[{str(uid[1])[:8]}]"


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
        """Ctrl-C arrived while a REPL of the root actor itself is open."""
        self.notice("Ctrl-C: the REPL stays open (`c` continues, `q` quits the session)")


class TerminalFrontEnd(ReplFrontEnd):
    """Shows sessions on the root process' stdout and reads its stdin."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._buf = b""
        self._prompt = ""
        #: A prompt is on screen and its answer not yet read (from the session's
        #: output until a line is taken: the relay starts reading a moment later).
        self._at_prompt = False
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
            self._at_prompt = not text.endswith("\n")
            sys.stdout.write(text)
            sys.stdout.flush()

    def session_ended(self, uid: Any) -> None:
        self._at_prompt = False  # an unanswered prompt of a session that is gone

    def notice(self, text: str) -> None:
        # re-show the prompt only if a session waits for its answer right now
        sys.stdout.write(f"\n[notebook_actors] {text}\n{self._prompt if self._at_prompt else ''}")
        sys.stdout.flush()

    def _take_line(self) -> str | None:
        if b"\n" in self._buf:
            line, _, self._buf = self._buf.partition(b"\n")
            self._at_prompt = False
            return line.decode(errors="replace") + "\n"
        return None

    async def readline(self) -> str:
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
        rest, self._buf, self._at_prompt = self._buf, b"", False
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
    """The front end that shows sessions (the terminal unless one was set)."""
    global _front_end
    if _front_end is None:
        _front_end = TerminalFrontEnd()
    return _front_end


def installed_front_end() -> ReplFrontEnd | None:
    """The front end set with :func:`set_front_end`, or None (no default is made)."""
    return _front_end
