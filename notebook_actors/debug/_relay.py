"""The relay endpoint every actor serves: a descendant's REPL request climbs the tree
hop by hop; the root grants it under the tree-wide lock and shows the session.

On the session's stream the debugged actor sends ``[what, text]`` (``what``: "out" for
output, "ask" for output ending in a prompt); the root answers each "ask" with one
input line (a str), and sends :data:`INTERRUPT` when the user presses Ctrl-C.
"""

from __future__ import annotations

from typing import Any

import trio

from .._context import context
from ._frontend import get_front_end
from ._lock import lock, session_via, sigint_guard

#: Sent down a session's stream for Ctrl-C at the root (input lines are str).
INTERRUPT = {"interrupt": True}


@context
async def _repl_relay(ctx: Any, requester: list[str], kind: str, via: list[Any] = ()) -> None:  # type: ignore[assignment]
    """A descendant asks for the REPL: grant it at the root, relay it elsewhere.
    ``via``: the actors that relayed the request so far (nearest the requester first)."""
    from .._state import current_actor

    actor = current_actor()
    with session_via(ctx.chan.uid):
        if actor.parent_addr is None or actor.parent_chan is None:
            route = [tuple(requester), *(tuple(uid) for uid in via)]
            await _serve_at_root(ctx, tuple(requester), kind, route)
        else:
            await _relay_up(actor, ctx, requester, kind, [*via, list(actor.uid)])


async def _serve_at_root(ctx: Any, requester: Any, kind: str, route: list[Any]) -> None:
    await get_front_end().admit(requester, kind, route)
    await lock.acquire(requester)
    front_end = get_front_end()
    try:
        await ctx.started({"color": front_end.color, "width": front_end.width, "height": front_end.height})
        front_end.session_started(requester, kind)
        async with ctx.open_stream() as stream, trio.open_nursery() as n:
            token = trio.lowlevel.current_trio_token()

            def forward_interrupt(*_: Any) -> None:  # a signal handler: only schedule
                token.run_sync_soon(n.start_soon, stream.send, INTERRUPT)

            async def answer() -> None:
                await stream.send(await front_end.readline())

            # output keeps flowing while a prompt waits (e.g. the answer to Ctrl-C)
            with sigint_guard(front_end, forward_interrupt):
                async for what, text in stream:
                    front_end.write(text)
                    if what == "ask":
                        n.start_soon(answer)
            n.cancel_scope.cancel()
    finally:
        front_end.session_ended(requester)
        lock.release(requester)


async def _relay_up(actor: Any, ctx: Any, requester: list[str], kind: str, via: list[Any]) -> None:
    from .._portal import Portal

    parent = Portal(actor.parent_chan, actor)
    async with parent.open_context(_repl_relay, requester=requester, kind=kind, via=via) as (up, info):
        await ctx.started(info)
        async with ctx.open_stream() as down_s, up.open_stream() as up_s:
            async with trio.open_nursery() as n:

                async def answers() -> None:
                    async for line in up_s:
                        await down_s.send(line)

                n.start_soon(answers)
                async for msg in down_s:
                    await up_s.send(msg)
                n.cancel_scope.cancel()
