"""``collapse_eg``: unwrap an exception group that holds a single error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["collapse_eg"]


def _single(group: BaseExceptionGroup) -> BaseException | None:
    """The one leaf error of ``group`` (through nested groups), or None if there are more."""
    while len(group.exceptions) == 1:
        inner = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None


@asynccontextmanager
async def collapse_eg() -> AsyncIterator[None]:
    """Raise the lone error of an exception group leaving the block, instead of the group.

    trio nurseries always raise a group (``strict_exception_groups``), so one failing
    task arrives as ``ExceptionGroup([err])``; inside ``collapse_eg()`` it arrives as
    ``err`` and a plain ``except ValueError:`` catches it. A group of several errors
    goes on as it is. Typical use::

        async with collapse_eg(), trio.open_nursery() as tn:
            ...
    """
    try:
        yield
    except BaseExceptionGroup as group:
        single = _single(group)
        if single is None:
            raise
        raise single from group.__cause__
