"""A pool of daemon actors serving the same modules: ``open_actor_cluster``."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

__all__ = ["open_actor_cluster"]


def _cluster_names(count: int | None, names: Iterable[str] | None) -> list[str]:
    if names is None:
        count = (os.cpu_count() or 1) if count is None else count
        if count < 1:
            raise ValueError(f"open_actor_cluster(count={count}) needs at least one actor")
        return [f"worker_{i}" for i in range(count)]
    names = list(names)
    if count is not None and count != len(names):
        raise ValueError(
            f"open_actor_cluster got count={count} but {len(names)} names: pass one of them, or as many names as count"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"open_actor_cluster names must be unique (they key the result): {names}")
    if not names:
        raise ValueError("open_actor_cluster(names=[]) needs at least one name")
    return names


@asynccontextmanager
async def open_actor_cluster(
    modules: str | Iterable[str],
    count: int | None = None,
    names: Iterable[str] | None = None,
    start_method: str | None = None,
    hard_kill: bool = False,
    **root_kwargs: Any,
) -> AsyncIterator[dict[str, Any]]:
    """Start a pool of daemon actors that serve ``modules``; yield ``{name: Portal}``.

    One actor per CPU core by default (``count``), named ``worker_0``, ``worker_1``...
    unless ``names`` are given. The actors start concurrently; calls through a portal
    wait until its actor is up. Leaving the block cancels every actor (``hard_kill``:
    SIGKILL at once, no graceful shutdown) and waits until all have exited.

    Works inside a running actor (the cluster joins its tree) or outside any runtime
    (a root actor is started for it, with ``root_kwargs`` such as ``registry_addrs``).

    Raises:
        ValueError: ``count`` and ``names`` disagree, or a name repeats.
    """
    from .._supervise import open_nursery

    modules = [modules] if isinstance(modules, str) else list(modules)
    cluster_names = _cluster_names(count, names)
    portals: dict[str, Any] = {}
    async with open_nursery(start_method=start_method, **root_kwargs) as nursery:
        try:
            for name in cluster_names:
                portals[name] = await nursery.start_actor(name, enable_modules=modules)
            yield portals
        finally:
            await nursery.cancel(hard_kill=hard_kill)
