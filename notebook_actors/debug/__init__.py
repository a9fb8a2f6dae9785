"""The multi-process debugger: pdb++ in any actor, one routed REPL for the whole tree.

How a session is routed:

- The debugged actor never reads a terminal. A helper thread of it dials a *dedicated*
  authenticated connection to its parent and opens the ``_repl_relay`` context on it.
  Every parent that is not the root relays the request over its own parent channel (a
  grandchild needs no address but its parent's), so the session always reaches the root.
- The root holds the tree-wide FIFO lock: one REPL at a time. Queued requests are shown
  ("REPL held by X; waiting: Y, Z") and published to the tree (``ps`` shows them). When
  the lock is granted the root calls ``ctx.started()``; from then on the debugged actor
  sends pdb's output and the root answers each prompt with one input line from its
  front end.
- pdb runs synchronously in the thread that stopped (full pdb semantics: the actor's
  trio thread is paused), and talks to the helper thread through queues, so the
  helper's own trio loop carries the session. The connection closing (the actor died)
  ends the session and releases the lock.
- The root shows sessions through a :class:`ReplFrontEnd`: the terminal by default; a
  notebook installs its own with :func:`set_front_end`.

Modules: ``_frontend`` (front ends), ``_lock`` (the tree-wide lock), ``_relay`` (the
endpoint every actor serves), ``_session`` (the debugged actor's end), ``_pdb`` (our
pdb++ class; pdbpp is imported only when a debugger actually opens), ``_entry`` (the
entry points), ``_stacks`` (stack dumps).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._entry import breakpoint, enable_debug_mode, pause, pause_from_sync, post_mortem, post_mortem_for
from ._frontend import ReplFrontEnd, TerminalFrontEnd, fmt_uid, get_front_end, installed_front_end, set_front_end
from ._lock import TreeLock, lock, wait_while_repl_via
from ._stacks import dump_stacks, format_stacks


def actor_running(actor: Any) -> Callable[[], None]:
    """Called as an actor's runtime starts (in its trio thread): stack dumps on
    SIGUSR1 and :func:`dump_stacks`; in debug mode the builtin ``breakpoint()`` goes to
    the tree's REPL. Returns the undo."""
    from . import _stacks

    undos = [_stacks.install(actor)]
    if actor.debug_mode:
        undos.append(enable_debug_mode())

    def undo() -> None:
        for each in reversed(undos):
            each()

    return undo


__all__ = [
    "ReplFrontEnd",
    "TerminalFrontEnd",
    "TreeLock",
    "actor_running",
    "breakpoint",
    "dump_stacks",
    "enable_debug_mode",
    "fmt_uid",
    "format_stacks",
    "get_front_end",
    "installed_front_end",
    "lock",
    "pause",
    "pause_from_sync",
    "post_mortem",
    "post_mortem_for",
    "set_front_end",
    "wait_while_repl_via",
]
