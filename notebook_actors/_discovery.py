"""Finding actors by name through the registry.

The registry is an actor (by default the root of this user's first program on this host, at
a private Unix socket of this user) that maps actor uids to addresses. Actors register on start and
deregister on exit; when an actor dies without deregistering (a crash, SIGKILL), its
entry goes when its last channel to the registry closes, and a parent that hosts the
registry removes a crashed child's entry as it reaps it.

A root is registered before ``open_root_actor()`` yields, and a child of the
registry's actor as it connects back; deeper children register concurrently with
their start-up, so code that needs an actor that may still be starting uses
:func:`wait_for_actor`, which waits for the registration.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from . import _transport
from ._portal import LocalPortal, Portal
from ._state import current_actor


def _registry_target(
    host: str | None, port: int | None, addr: Any, arbiter_sockaddr: Any, registry_addrs: Any
) -> str | None:
    """The registry address a caller asked for (any of tractor's spellings), or None
    for this actor's own registry."""
    if host is not None and port is not None:
        return _transport.normalize_addr((host, port))
    for given in (addr, arbiter_sockaddr):
        if given is not None:
            return _transport.normalize_addr(given)
    if registry_addrs:
        return _transport.normalize_addr(next(iter(registry_addrs)))
    return None


@asynccontextmanager
async def get_registry(
    host: str | None = None,
    port: int | None = None,
    *,
    addr: Any = None,
    arbiter_sockaddr: Any = None,
    registry_addrs: Any = None,
) -> AsyncIterator[Any]:
    """A portal to the registry: in-process when this actor hosts it.

    Args:
        host, port / addr: where the registry listens; default: this actor's registry
            (``registry_addrs`` of ``open_root_actor``, else this user's private registry socket).

    Raises:
        OSError: nothing listens at the registry address.
        HandshakeError: something listens there but does not know this tree's secret.
    """
    actor = current_actor()
    target = _registry_target(host, port, addr, arbiter_sockaddr, registry_addrs)
    own = {actor.addr, actor.tcp_addr}
    if actor.is_arbiter and (target is None or target in actor.config.registry_addrs or target in own):
        yield LocalPortal(actor)
        return
    chan = await actor.connect_to(target or actor.config.registry_addrs[0])
    yield Portal(chan, actor)


get_arbiter = get_registry


async def query_actor(name: str, **registry_kw: Any) -> Any:
    """The address of a live actor called ``name`` (the latest registered), or None:
    ``(host, port)`` for an actor on TCP, ``'uds:/path'`` for one on a Unix socket."""
    async with get_registry(**registry_kw) as reg:
        return await reg.run_from_ns("self", "find_actor", name=name)


async def _connect(addr: Any) -> Portal:
    """A portal to the actor at ``addr`` (an address in any form the registry gives)."""
    actor = current_actor()
    return Portal(await actor.connect_to(_transport.normalize_addr(addr)), actor)


@asynccontextmanager
async def find_actor(name: str, **registry_kw: Any) -> AsyncIterator[Portal | None]:
    """A portal to a live actor called ``name`` (one of them, if several), or None.

    Does not wait: an actor that is still starting may not be registered yet; use
    :func:`wait_for_actor` for that.
    """
    addr = await query_actor(name, **registry_kw)
    if addr is None:
        yield None
        return
    yield await _connect(addr)


@asynccontextmanager
async def find_actors(name: str, **registry_kw: Any) -> AsyncIterator[list[Portal]]:
    """Portals to every live actor called ``name`` (possibly none)."""
    async with get_registry(**registry_kw) as reg:
        found = await reg.run_from_ns("self", "find_actors", name=name)
    yield [await _connect(addr) for _, addr in found]


@asynccontextmanager
async def wait_for_actor(name: str, **registry_kw: Any) -> AsyncIterator[Portal]:
    """A portal to an actor called ``name``, waiting until one registers.

    The wait has no timeout of its own: wrap it in ``trio.fail_after`` or
    ``trio.move_on_after`` if the actor may never come.
    """
    async with get_registry(**registry_kw) as reg:
        addrs = await reg.run_from_ns("self", "wait_for_actor", name=name)
    yield await _connect(addrs[-1])


__all__ = ["find_actor", "find_actors", "get_arbiter", "get_registry", "query_actor", "wait_for_actor"]
