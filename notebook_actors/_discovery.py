"""Finding actors by name through the registry.

The registry is an actor (by default the root of the first program on this host, at
``127.0.0.1:1616``) that maps names to addresses. Actors register on start and
deregister on exit; a parent removes a crashed child's entry.
"""
from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from . import _transport
from ._portal import LocalPortal, Portal
from ._state import current_actor


@asynccontextmanager
async def get_registry(host: str | None = None, port: int | None = None, *, addr: Any = None) -> AsyncIterator[Any]:
    """A portal to the registry: in-process when this actor hosts it.

    Raises:
        OSError: nothing listens at the registry address.
    """
    actor = current_actor()
    if host is not None and port is not None:
        target = _transport.normalize_addr((host, port))
    elif addr is not None:
        target = _transport.normalize_addr(addr)
    else:
        target = None
    if actor.is_arbiter and (target is None or target in actor.registry_addrs or target == actor.accept_addr):
        yield LocalPortal(actor)
        return
    chan = await actor.connect_to(target or actor.registry_addrs[0])
    yield Portal(chan, actor)


get_arbiter = get_registry


async def query_actor(name: str, **registry_kw: Any) -> str | None:
    """The address of a live actor called ``name``, or None."""
    async with get_registry(**registry_kw) as reg:
        return await reg.run_from_ns("self", "find_actor", name=name)


@asynccontextmanager
async def find_actor(name: str, **registry_kw: Any) -> AsyncIterator[Portal | None]:
    """A portal to a live actor called ``name`` (one of them, if several), or None."""
    addr = await query_actor(name, **registry_kw)
    if addr is None:
        yield None
        return
    actor = current_actor()
    yield Portal(await actor.connect_to(addr), actor)


@asynccontextmanager
async def find_actors(name: str, **registry_kw: Any) -> AsyncIterator[list[Portal]]:
    """Portals to every live actor called ``name`` (possibly none)."""
    actor = current_actor()
    async with get_registry(**registry_kw) as reg:
        found = await reg.run_from_ns("self", "find_actors", name=name)
    yield [Portal(await actor.connect_to(addr), actor) for _, addr in found]


@asynccontextmanager
async def wait_for_actor(name: str, **registry_kw: Any) -> AsyncIterator[Portal]:
    """A portal to the actor called ``name``, waiting until it registers."""
    actor = current_actor()
    async with get_registry(**registry_kw) as reg:
        addrs = await reg.run_from_ns("self", "wait_for_actor", name=name)
    yield Portal(await actor.connect_to(addrs[-1]), actor)


__all__ = ["find_actor", "find_actors", "get_arbiter", "get_registry", "query_actor", "wait_for_actor"]
