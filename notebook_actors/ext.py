"""The runtime's API for extensions built on it, beyond tractor's.

The notebook's kernel extension (``notebook_actors.kernel_ext``) and its tree widget
(``notebook_actors.widgets``) use the runtime through the top-level API and through
this module only, never through the core's private modules, so those can change
without breaking them (``make lint`` checks it). A third-party front end can use the
same names.

- The live process tree: :func:`open_tree_watch` (a feed of snapshots and deltas),
  :func:`set_activity` (what this actor is doing, shown in its row),
  :func:`activity_of` (what the caller asked another actor to do, shown while that
  actor cannot report), :func:`hide_calls` (plumbing left out of the rows),
  :func:`set_debug_parked`, :func:`key_of`, :func:`state_word`.
- Spawning: :func:`warm_up` starts what makes the first spawn fast (the fork
  server's template) without waiting for it.
- Local connections: :func:`runtime_dir` (the private per-user directory for
  sockets), :func:`dial_address` (what to connect to for an address an actor gave).
- The debugger's DAP route: :func:`set_dap_handler` (who answers an actor's debug
  adapter traffic in the root), :data:`DAP_NAMESPACE` (the namespace every actor
  serves ``serve_dap`` from).
"""

from __future__ import annotations

from ._spawn import warm_up
from ._state import current_actor_or_none
from ._transport import dial_address, runtime_dir
from ._tree import (
    DEFAULT_INTERVAL,
    activity_of,
    hide_calls,
    key_of,
    open_tree_watch,
    set_activity,
    set_debug_parked,
    state_word,
)
from .debug._dap import DapHandler, set_dap_handler

#: the namespace every actor serves ``serve_dap`` from (for ``portal.run_from_ns``)
DAP_NAMESPACE = "notebook_actors.debug._dap"

__all__ = [
    "DAP_NAMESPACE",
    "DEFAULT_INTERVAL",
    "DapHandler",
    "activity_of",
    "current_actor_or_none",
    "dial_address",
    "hide_calls",
    "key_of",
    "open_tree_watch",
    "runtime_dir",
    "set_activity",
    "set_dap_handler",
    "set_debug_parked",
    "state_word",
    "warm_up",
]
