"""Starting a tree: the root actor of this process (``open_root_actor``), and the
sync entry points ``run`` and ``run_daemon`` around it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from . import _hooks, _state, _transport
from ._runtime import Actor
from ._transport._rundir import default_registry_addr
from .msg import ActorConfig


def _default_registry_addrs(arbiter_addr: Any, registry_addrs: Any) -> list[str]:
    if registry_addrs:
        return [_transport.normalize_addr(a) for a in registry_addrs]
    if arbiter_addr:
        return [_transport.normalize_addr(arbiter_addr)]
    env = os.environ.get("NOTEBOOK_ACTORS_REGISTRY")
    return [_transport.normalize_addr(env) if env else default_registry_addr()]


@asynccontextmanager
async def open_root_actor(
    *,
    name: str = "root",
    arbiter_addr: Any = None,
    registry_addrs: Any = None,
    start_method: str | None = None,
    debug_mode: bool = False,
    loglevel: str | None = None,
    enable_modules: Any = None,
    infect_asyncio: bool = False,
    secret: Any = None,
    bind_addr: Any = None,
    also_known_as: Any = None,
) -> AsyncIterator[Actor]:
    """Start this process' actor runtime (the root of a new tree); yield the Actor.

    The root hosts the registry at the registry address (default: this user's private
    Unix socket, see docs/discovery.md) unless one already listens there, in which
    case it joins that one.

    Args:
        secret: the tree's shared secret (bytes or a key file); default: the per-user
            key file, so this user's programs can find and call each other.
        bind_addr: where to accept connections; default a private Unix socket.
        also_known_as: the forwarded addresses (``(host, port)`` pairs) dialers reach
            this actor through, e.g. a NAT gateway's port mapped to ``bind_addr``;
            the handshake refuses any other address it was not dialed at, as a relay
            (docs/security.md).

    Raises:
        RuntimeError: a runtime already runs in this process.
    """
    from ._asyncio_guest import is_guest_mode
    from ._channel import load_secret
    from ._process import check_start_method
    from .log import get_console_log

    if _state.current_actor_or_none() is not None:
        raise RuntimeError(
            "an actor runtime already runs in this process: use open_nursery() inside it "
            "instead of a second open_root_actor()"
        )
    if loglevel:
        get_console_log(loglevel)
    if start_method is not None:
        check_start_method(start_method)
    if infect_asyncio and not is_guest_mode():
        raise RuntimeError(
            "open_root_actor(infect_asyncio=True) needs trio running as a guest on asyncio: "
            "use notebook_actors.to_asyncio.run_as_asyncio_guest(main) instead of trio.run(main)"
        )
    config = ActorConfig(
        name=name,
        enable_modules=list(enable_modules or ()),
        loglevel=loglevel,
        debug_mode=debug_mode,
        registry_addrs=_default_registry_addrs(arbiter_addr, registry_addrs),
        bind_addr=_transport.normalize_addr(bind_addr) if bind_addr else None,
        infect_asyncio=infect_asyncio,
        start_method=start_method,
        also_known_as=[_transport.normalize_addr(a) for a in also_known_as or ()],
    )
    actor = Actor(config, secret=load_secret(secret))
    _state.set_actor(actor)
    unwrapped: BaseException | None = None
    try:
        async with trio.open_nursery() as n:
            await n.start(actor.run)
            # A remote cancel ends the user's block; the actor itself shuts down
            # gracefully (deregisters, flushes channels) in `actor.run`.
            body_scope = trio.CancelScope()
            actor.on_cancel(body_scope.cancel)
            try:
                with body_scope:
                    yield actor
            except Exception as exc:
                if debug_mode:  # the root's own post-mortem, while its runtime still runs
                    await _hooks.crashed_in_debug_mode(exc)
                raise
            finally:
                actor.cancel_soon()
    except BaseExceptionGroup as group:
        unwrapped = _unwrap(group)
    finally:
        _state.set_actor(None)
    if unwrapped is not None:
        # Raised outside the `except` block, so Python does not chain the group to it.
        raise unwrapped


def _unwrap(group: BaseExceptionGroup) -> BaseException:
    """The user's own error, not trio's one-member groups around it.

    Ctrl-C wins: trio raises KeyboardInterrupt in whichever task runs when SIGINT
    arrives (often an RPC task, deep in the actor's nurseries); the user gets it as a
    plain KeyboardInterrupt, as from any other trio program.
    """
    interrupts, _ = group.split(KeyboardInterrupt)
    if interrupts is not None:
        exc: BaseException = interrupts
        while isinstance(exc, BaseExceptionGroup):
            exc = exc.exceptions[0]
        return exc
    exc = group
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if exc is not group:
        exc.__context__ = None
    return exc


def run(async_fn: Callable[..., Any], *args: Any, **root_kwargs: Any) -> Any:
    """Run ``async_fn(*args)`` inside a new root actor; return its result (sync)."""

    async def main() -> Any:
        async with open_root_actor(**root_kwargs):
            return await async_fn(*args)

    return _run_trio(main, root_kwargs)


def run_daemon(enable_modules: Any, **root_kwargs: Any) -> None:
    """Run a root actor that serves RPC for ``enable_modules`` (and the registry) until
    cancelled; SIGINT ends it with KeyboardInterrupt."""

    async def main() -> None:
        async with open_root_actor(enable_modules=enable_modules, **root_kwargs):
            await trio.sleep_forever()

    _run_trio(main, root_kwargs)


def _run_trio(main: Callable[[], Any], root_kwargs: dict[str, Any]) -> Any:
    """``trio.run(main)``, or a guest run on a new asyncio loop for ``infect_asyncio``."""
    if root_kwargs.get("infect_asyncio"):
        from ._asyncio_guest import run_as_asyncio_guest

        return run_as_asyncio_guest(main)
    return trio.run(main)


__all__ = ["Actor", "open_root_actor", "run", "run_daemon"]
