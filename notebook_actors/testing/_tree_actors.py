"""Actor functions that make a live tree to look at: a leaf streaming numbers to a relay.

Tests of the tree view (``tests/core/test_tree.py``) and of the tree widget
(``tests/widgets``) both need one. They run *inside* actors, so the actor that calls
``relay_from`` must have this module enabled: ``enable_modules=[TREE_ACTORS]``.
"""

from __future__ import annotations

import trio

import notebook_actors as na

#: the module name to pass in ``enable_modules``
TREE_ACTORS = __name__

__all__ = ["TREE_ACTORS", "pump", "relay_from"]


@na.context
async def pump(ctx: na.Context, n: int = 1_000_000, interval: float = 0.01) -> None:
    """Stream numbers to the caller, one per ``interval`` seconds, until cancelled."""
    await ctx.started()
    async with ctx.open_stream() as stream:
        for i in range(n):
            await stream.send(i)
            await trio.sleep(interval)


async def relay_from(name: str, interval: float = 0.01) -> None:
    """Spawn a child ``name`` and read its ``pump`` stream until cancelled: a nested
    tree with a stream on its lowest edge."""
    async with na.open_nursery() as n:
        leaf = await n.start_actor(name, enable_modules=[__name__])
        async with leaf.open_context(pump, interval=interval) as (ctx, _):
            async with ctx.open_stream() as stream:
                async for _ in stream:
                    pass
