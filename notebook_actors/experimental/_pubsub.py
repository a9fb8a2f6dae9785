"""``@msgpub``: one publisher task per actor, fanned out to subscribers by topic.

A publisher is an async generator function taking ``get_topics`` and yielding dicts
``{topic: value}``. Each subscriber calls it with ``portal.open_stream_from(pub_fn,
topics=[...])`` and receives, per published dict, the part with its topics. However
many subscribers there are, one generator runs per task name: the first subscriber's
call drives it, the others wait their turn (if the driver leaves, the next waiting
subscriber starts a fresh generator), and ``get_topics()`` tells the generator which
topics somebody wants right now.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import trio

from .._context import stream

__all__ = ["msgpub"]

_DEFAULT_TASK = "default"


class _Publisher:
    """One publisher task's subscribers (per actor, per task name) and its driver lock."""

    def __init__(self) -> None:
        self.subscribers: dict[Any, set[str]] = {}  # ctx -> its topics
        self.lock = trio.Lock()
        self.completed = 0  # generators that ran to their end

    def topics(self) -> tuple[str, ...]:
        wanted: set[str] = set()
        for topics in self.subscribers.values():
            wanted |= topics
        return tuple(sorted(wanted))

    async def drive(self, pub_fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        """Run the generator, sending each subscriber its topics' part, until nobody
        wants any topic."""
        agen = pub_fn(get_topics=self.topics, **kwargs)
        try:
            async for published in agen:
                if not isinstance(published, dict):
                    raise TypeError(
                        f"a @msgpub function yields dicts of {{topic: value}}; {pub_fn.__qualname__} "
                        f"yielded {type(published).__name__}"
                    )
                for ctx, topics in list(self.subscribers.items()):
                    part = {topic: value for topic, value in published.items() if topic in topics}
                    if part:
                        try:
                            await ctx.send_yield(part)
                        except trio.BrokenResourceError:
                            self.subscribers.pop(ctx, None)  # that subscriber left
                if not self.subscribers:
                    return
        finally:
            with trio.CancelScope(shield=True):
                await agen.aclose()


# per trio run, so per actor: {(publisher function, task name): _Publisher}
_publishers: trio.lowlevel.RunVar[dict[tuple[Any, str], _Publisher]] = trio.lowlevel.RunVar(
    "notebook_actors.experimental.publishers"
)


def _publisher(pub_fn: Callable[..., Any], task_name: str) -> _Publisher:
    try:
        table = _publishers.get()
    except LookupError:
        table = {}
        _publishers.set(table)
    return table.setdefault((pub_fn, task_name), _Publisher())


def msgpub(
    wrapped: Callable[..., Any] | None = None,
    *,
    tasks: Iterable[str] = (),
    send_on_connect: Any = None,
) -> Any:
    """Turn an async generator function into a topic publisher (tractor's ``msgpub``).

    Use as ``@msgpub`` or ``@msgpub(tasks=['one', 'two'])``. The function must be an
    ``async def`` generator with a ``get_topics`` parameter and yield
    ``{topic: value}`` dicts. Subscribers call it remotely with
    ``portal.open_stream_from(pub_fn, topics=[...], task_name=...)`` (``task_name``
    is required when ``tasks`` names several publisher tasks, and must be one of
    them); other keyword arguments go to the generator.

    Args:
        tasks: names of separate publisher tasks (each runs its own generator).
        send_on_connect: a value sent to each subscriber first, when it connects.

    Raises:
        TypeError: the function is no async generator function, or has no
            ``get_topics`` parameter.
    """

    def decorate(pub_fn: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(pub_fn):
            raise TypeError(f"{pub_fn.__qualname__} must be an async generator function to be a @msgpub")
        if "get_topics" not in inspect.signature(pub_fn).parameters:
            raise TypeError(
                f"@msgpub function {pub_fn.__qualname__} must define a `get_topics` parameter: "
                f"`async def {pub_fn.__name__}(get_topics, ...)`"
            )
        task_names = set(tasks)

        @functools.wraps(pub_fn)
        async def subscribe(ctx: Any, topics: Iterable[str], task_name: str | None = None, **kwargs: Any) -> None:
            if isinstance(topics, str):
                raise TypeError(f"topics must be a list of topic names, not the string {topics!r}")
            if task_names and task_name not in task_names:
                raise TypeError(
                    f"{pub_fn.__qualname__} publishes from several tasks: pass task_name= one of "
                    f"{sorted(task_names)} (got {task_name!r})"
                )
            publisher = _publisher(pub_fn, task_name or _DEFAULT_TASK)
            publisher.subscribers[ctx] = set(topics)
            completed = publisher.completed
            try:
                if send_on_connect is not None:
                    await ctx.send_yield(send_on_connect)
                # the lock holder drives the generator for everyone while the others wait
                # here, served; if it leaves, the next in line starts a fresh generator
                async with publisher.lock:
                    if publisher.completed != completed:
                        return  # the generator that served us ended: so does our stream
                    await publisher.drive(pub_fn, kwargs)
                    publisher.completed += 1
            finally:
                publisher.subscribers.pop(ctx, None)

        del subscribe.__wrapped__  # inspect.signature must show the call's own parameters
        return stream(subscribe)

    return decorate(wrapped) if wrapped is not None else decorate
