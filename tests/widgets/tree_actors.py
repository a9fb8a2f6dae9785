"""Actor functions for the widget tests: importable by name in every actor (the tests
put this directory on the kernel's sys.path, which children inherit)."""

from __future__ import annotations

import trio

import notebook_actors as na
from notebook_actors.testing._tree_actors import TREE_ACTORS, relay_from


def boom() -> None:
    raise ValueError("widget test boom")


async def keep_tree(task_status=trio.TASK_STATUS_IGNORED) -> None:
    """A nursery with a daemon 'worker' and a 'relay' streaming from its child 'leaf',
    kept open until cancelled; crash reports of later children are swallowed."""
    try:
        async with na.open_nursery() as n:
            worker = await n.start_actor("worker", enable_modules=[__name__])
            relay = await n.start_actor("relay", enable_modules=[__name__, TREE_ACTORS])
            async with trio.open_nursery() as tn:
                tn.start_soon(lambda: relay.run(relay_from, name="leaf"))
                task_status.started(worker)
                await trio.sleep_forever()
    except (na.RemoteActorError, na.MultiError, BaseExceptionGroup):
        pass


async def crash_one() -> str:
    """Run ``boom`` in a fresh actor; return its error text."""
    try:
        async with na.open_nursery() as n:
            await n.run_in_actor(boom, name="crasher")
    except na.RemoteActorError as exc:
        return str(exc).splitlines()[0]
    return "no error"
