"""Process-wide runtime state: the one actor this process runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import NoRuntime

if TYPE_CHECKING:
    from ._runtime import Actor

_actor: Actor | None = None


def current_actor() -> Actor:
    """The :class:`Actor` this process runs.

    Raises:
        NoRuntime: no actor runtime runs here; start one with ``open_root_actor()`` or
            ``open_nursery()``.
    """
    if _actor is None:
        raise NoRuntime(
            "no actor runtime is running in this process: start one with "
            "`async with notebook_actors.open_root_actor():` or `open_nursery()`"
        )
    return _actor


def current_actor_or_none() -> Actor | None:
    return _actor


def set_actor(actor: Actor | None) -> None:
    global _actor
    _actor = actor


def is_root_process() -> bool:
    """True in the program's first actor (the root of the tree)."""
    return _actor is not None and _actor.parent_addr is None
