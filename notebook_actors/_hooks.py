"""The core's extension points: where add-ons (the debugger, the tree) plug in.

The actor runtime sits below its add-ons and never imports them. The tree registers
its functions here as it is imported (the package's ``__init__`` imports it); the
package's ``__init__`` registers the debugger's without importing it, so every actor
process has both before it runs. Each hook says when the runtime calls it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

#: ``fn(actor) -> undo``: called as an actor starts serving; ``undo()`` as it stops.
_on_actor_running: list[Callable[[Any], Callable[[], None]]] = []
#: ``await fn(exc)``: an RPC (or the root's own block) failed in debug mode.
_on_crash_in_debug_mode: list[Callable[[BaseException], Awaitable[None]]] = []
#: ``await fn(child_uid)``: the supervisor is about to stop a child (and may kill it).
_before_stopping_child: list[Callable[[Any], Awaitable[None]]] = []
#: ``fn(actor, child)``: the supervisor of ``actor`` has just reaped ``child``.
_on_child_exited: list[Callable[[Any, Any], None]] = []
#: Modules whose functions every actor serves, whatever its ``enable_modules``.
_runtime_modules: set[str] = set()
#: ``name -> fn(actor, **kwargs)``: methods other actors may call through namespace
#: ``'self'`` besides the ``Actor``'s own.
_self_rpc: dict[str, Callable[..., Any]] = {}


def on_actor_running(fn: Callable[[Any], Callable[[], None]]) -> None:
    """Call ``fn(actor)`` whenever an actor starts serving; it returns its undo."""
    _on_actor_running.append(fn)


def on_crash_in_debug_mode(fn: Callable[[BaseException], Awaitable[None]]) -> None:
    """Await ``fn(exc)`` when user code fails in an actor in debug mode (post-mortem)."""
    _on_crash_in_debug_mode.append(fn)


def before_stopping_child(fn: Callable[[Any], Awaitable[None]]) -> None:
    """Await ``fn(child_uid)`` before a supervisor stops a child: e.g. the debugger
    holds it while a REPL session runs through it."""
    _before_stopping_child.append(fn)


def on_child_exited(fn: Callable[[Any, Any], None]) -> None:
    """Call ``fn(actor, child)`` once ``actor``'s supervisor has reaped ``child``."""
    _on_child_exited.append(fn)


def serve_runtime_module(name: str) -> None:
    """Let every actor serve the functions of module ``name`` (the debugger's relay)."""
    _runtime_modules.add(name)


def add_self_rpc(name: str, fn: Callable[..., Any]) -> None:
    """Offer ``fn(actor, **kwargs)`` to other actors as ``run_from_ns('self', name)``."""
    _self_rpc[name] = fn


def actor_running(actor: Any) -> Callable[[], None]:
    """Run the ``on_actor_running`` hooks for ``actor``; one undo for all of them."""
    undos = [fn(actor) for fn in _on_actor_running]

    def undo() -> None:
        for each in reversed(undos):
            each()

    return undo


async def crashed_in_debug_mode(exc: BaseException) -> None:
    for fn in _on_crash_in_debug_mode:
        await fn(exc)


async def stopping_child(uid: Any) -> None:
    for fn in _before_stopping_child:
        await fn(uid)


def child_exited(actor: Any, child: Any) -> None:
    for fn in _on_child_exited:
        fn(actor, child)


def is_runtime_module(name: str) -> bool:
    return name in _runtime_modules


def self_rpc(name: str) -> Callable[..., Any] | None:
    return _self_rpc.get(name)


def self_rpc_names() -> list[str]:
    return sorted(_self_rpc)
