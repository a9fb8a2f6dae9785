"""notebook_actors: structured-concurrency, multi-process actors on trio.

The public API mirrors tractor's, so ``import notebook_actors as tractor`` runs
tractor scripts. Everything here is importable from the top level; ``msg``,
``to_asyncio``, ``trionics``, ``log``, ``experimental`` and ``testing`` are public
submodules.

In IPython/Jupyter, ``%load_ext notebook_actors`` runs the runtime inside the kernel
and adds the ``%%actor`` cell magic.

Inside, imports point one way, bottom to top: transports and messages → the channel
→ one call's state (``_call``, ``_context``), the caller's side (``_portal``) and the
callee's (``_dispatch``) → the actor runtime (``_runtime``) → the root's start-up and
spawning (``_root``, ``_child``, ``_forkserver``, ``_spawn``) →
supervision (``_supervise``) → add-ons (``debug``, ``_tree``, ``to_asyncio``,
``trionics``), which plug into the runtime through ``_hooks``. This module, the top,
wires them together. ``make lint`` checks the order (docs/design.md, "Layers").
"""

from __future__ import annotations

import typing as _typing

from . import _hooks
from . import experimental as experimental
from . import log as log
from . import msg as msg
from ._context import Context as Context
from ._context import MsgStream as MsgStream
from ._context import context as context
from ._context import current_ipc_ctx as current_ipc_ctx
from ._context import stream as stream
from ._discovery import find_actor as find_actor
from ._discovery import find_actors as find_actors
from ._discovery import get_arbiter as get_arbiter
from ._discovery import get_registry as get_registry
from ._discovery import query_actor as query_actor
from ._discovery import wait_for_actor as wait_for_actor
from ._exceptions import ActorCrashed as ActorCrashed
from ._exceptions import AsyncioCancelled as AsyncioCancelled
from ._exceptions import ContextCancelled as ContextCancelled
from ._exceptions import ModuleNotExposed as ModuleNotExposed
from ._exceptions import MsgTypeError as MsgTypeError
from ._exceptions import MultiError as MultiError
from ._exceptions import NoResult as NoResult
from ._exceptions import NoRuntime as NoRuntime
from ._exceptions import RemoteActorError as RemoteActorError
from ._exceptions import StreamOverrun as StreamOverrun
from ._exceptions import TransportClosed as TransportClosed
from ._launch import Launcher as Launcher
from ._launch import LaunchError as LaunchError
from ._launch import SlurmLauncher as SlurmLauncher
from ._launch import SSHLauncher as SSHLauncher
from ._portal import Portal as Portal
from ._root import open_root_actor as open_root_actor
from ._root import run as run
from ._root import run_daemon as run_daemon
from ._runtime import Actor as Actor
from ._spawn import try_set_start_method as try_set_start_method
from ._state import current_actor as current_actor
from ._state import is_root_process as is_root_process
from ._supervise import ActorNursery as ActorNursery
from ._supervise import open_nursery as open_nursery
from ._tree import TreeWatch as TreeWatch
from ._tree import open_tree_watch as open_tree_watch
from .trionics import open_actor_cluster as open_actor_cluster

if _typing.TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any


def _wire_the_debugger() -> None:
    """Plug the debugger into the runtime's hooks without importing it: ``import
    notebook_actors`` stays light; the debugger loads as an actor first runs. (The
    tree, imported above, registers itself.)"""

    def actor_running(actor: Actor) -> Callable[[], None]:
        from .debug import actor_running as hook

        return hook(actor)

    async def post_mortem_for(exc: BaseException) -> None:
        from .debug import post_mortem_for as hook

        await hook(exc)

    async def wait_while_repl_via(uid: tuple[str, str]) -> None:
        from .debug import wait_while_repl_via as hook

        await hook(uid)

    _hooks.on_actor_running(actor_running)
    _hooks.on_crash_in_debug_mode(post_mortem_for)
    # never stop a child whose subtree is in the REPL
    _hooks.before_stopping_child(wait_while_repl_via)
    # every actor serves the REPL relay, stack dumps and the visual debugger's bridge
    _hooks.serve_runtime_module("notebook_actors.debug._relay")
    _hooks.serve_runtime_module("notebook_actors.debug._stacks")
    _hooks.serve_runtime_module("notebook_actors.debug._dap")


_wire_the_debugger()

__version__ = "0.1.0"


async def breakpoint() -> None:
    """Enter pdb++ in the calling actor; the REPL is routed to the root's terminal."""
    from .debug import breakpoint as _bp

    await _bp()


pause = breakpoint


def pause_from_sync() -> None:
    """Enter pdb++ from synchronous code in an actor (its trio thread or a worker
    thread); the REPL is routed to the root like ``await breakpoint()``."""
    from .debug import pause_from_sync as _pause

    _pause()


async def dump_stacks(name_or_path: str, *, everything: bool = False) -> str:
    """The stacks (every trio task's and every thread's) of an actor of this tree, as
    text; works while it is stuck in sync code. ``name_or_path``: a name, a key
    (``name.uuid``) or a path of names (``pool/worker``). The runtime's, trio's and
    Python's own frames are left out (one line says how many) unless ``everything``.
    See ``docs/debugging.md``."""
    from .debug import dump_stacks as _dump

    return await _dump(name_or_path, everything=everything)


def post_mortem(*args: Any, **kwargs: Any) -> Any:
    """Open a post-mortem pdb++ session on the current exception (routed to the root)."""
    from .debug import post_mortem as _pm

    return _pm(*args, **kwargs)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext notebook_actors``: run the runtime inside this kernel."""
    from .kernel_ext import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext notebook_actors``: detach the magics and stop the actor tree."""
    from .kernel_ext import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "Actor",
    "ActorCrashed",
    "ActorNursery",
    "AsyncioCancelled",
    "Context",
    "ContextCancelled",
    "LaunchError",
    "Launcher",
    "ModuleNotExposed",
    "MsgStream",
    "MsgTypeError",
    "MultiError",
    "NoResult",
    "NoRuntime",
    "Portal",
    "RemoteActorError",
    "SSHLauncher",
    "SlurmLauncher",
    "StreamOverrun",
    "TransportClosed",
    "TreeWatch",
    "breakpoint",
    "context",
    "current_actor",
    "current_ipc_ctx",
    "dump_stacks",
    "experimental",
    "find_actor",
    "find_actors",
    "get_arbiter",
    "get_registry",
    "is_root_process",
    "log",
    "msg",
    "open_actor_cluster",
    "open_nursery",
    "open_root_actor",
    "open_tree_watch",
    "pause",
    "pause_from_sync",
    "post_mortem",
    "query_actor",
    "run",
    "run_daemon",
    "stream",
    "try_set_start_method",
    "wait_for_actor",
]
