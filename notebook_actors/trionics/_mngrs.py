"""Async context manager helpers: share one resource across tasks, enter many at once.

Both helpers enter each context manager in a task of its own, because trio requires a
context manager's cancel scopes and nurseries to be exited by the very task that
entered them: a resource shared by several tasks, or entered concurrently, must live
in a task that outlives each of its users.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Iterable
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from contextlib import asynccontextmanager
from typing import Any

import trio

__all__ = ["gather_contexts", "maybe_open_context"]


class _Holder:
    """One context manager, entered and exited by a task of its own."""

    def __init__(self, acm: AsyncContextManager[Any]) -> None:
        self.acm = acm
        self.value: Any = None
        self.enter_error: BaseException | None = None
        self.exit_error: BaseException | None = None
        self.entered = trio.Event()  # set once entered, or failed to
        self.release = trio.Event()  # set to make the holder exit the manager
        self.exited = trio.Event()
        self._scope = trio.CancelScope()
        self._in = False

    async def hold(self) -> None:
        try:
            with self._scope:
                async with self.acm as value:
                    self.value, self._in = value, True
                    self.entered.set()
                    await self.release.wait()
        except Exception as exc:  # reported to the users; never crashes the host nursery
            if self._in:
                self.exit_error = exc
            else:
                self.enter_error = exc
        finally:
            self.entered.set()
            self.exited.set()

    async def close(self) -> None:
        """Make the holder exit the manager (cancel it if still entering); wait for it."""
        self.release.set()
        if not self._in:
            self._scope.cancel()
        with trio.CancelScope(shield=True):
            await self.exited.wait()


# -- maybe_open_context ----------------------------------------------------------------------


class _Shared:
    """A cached resource and how many tasks use it."""

    def __init__(self, holder: _Holder) -> None:
        self.holder = holder
        self.users = 0


class _Cache:
    """Per trio run (so per actor): the service nursery and the shared resources."""

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None
        self.nursery_ready = trio.Event()
        self.entries: dict[Hashable, _Shared] = {}


_cache: trio.lowlevel.RunVar[_Cache] = trio.lowlevel.RunVar("notebook_actors.trionics.cache")


async def _service_nursery() -> tuple[_Cache, trio.Nursery]:
    """This run's cache, and a nursery that outlives every task using a shared resource."""
    try:
        cache = _cache.get()
    except LookupError:
        cache = _Cache()
        _cache.set(cache)

        async def serve() -> None:
            async with trio.open_nursery() as nursery:
                cache.nursery = nursery
                cache.nursery_ready.set()
                await trio.sleep_forever()

        trio.lowlevel.spawn_system_task(serve, name="notebook_actors.trionics shared resources")
    await cache.nursery_ready.wait()
    assert cache.nursery is not None
    return cache, cache.nursery


def _cache_key(
    acm_fn: Callable[..., Any], kwargs: dict[str, Any], key: Hashable | Callable[..., Hashable] | None
) -> Hashable:
    if callable(key):
        key = key(**kwargs)
    if key is not None:
        return (acm_fn, key)
    try:
        frozen = frozenset(kwargs.items())
        hash(frozen)
    except TypeError:
        raise TypeError(
            f"maybe_open_context({getattr(acm_fn, '__qualname__', acm_fn)}, kwargs=...) got unhashable "
            "kwargs, so it cannot tell which calls share one instance: pass key=<something hashable>, "
            "e.g. maybe_open_context(open_feed, kwargs={'symbols': [...]}, key='feed')"
        ) from None
    return (acm_fn, frozen)


@asynccontextmanager
async def maybe_open_context(
    acm_func: Callable[..., AsyncContextManager[Any]] | None = None,
    kwargs: dict[str, Any] | None = None,
    key: Hashable | Callable[..., Hashable] | None = None,
    *,
    acm_fn: Callable[..., AsyncContextManager[Any]] | None = None,
) -> AsyncIterator[tuple[bool, Any]]:
    """Share one ``acm_fn(**kwargs)`` among the tasks of this actor; yield
    ``(cache_hit, value)``.

    The first task to ask enters the manager; later tasks asking with the same key get
    the same value and ``cache_hit=True``. The manager is exited when its last user
    leaves (that user waits for the exit, and gets its error); the next ask enters a
    fresh one.

    The trap: the manager runs in a service task of this actor, not in the caller's
    task, so it must not rely on the caller's cancel scopes; and the caches are per
    actor (per trio run), never shared across processes.

    Args:
        acm_func: a function returning an async context manager (an
            ``@asynccontextmanager`` function); tractor's keyword name.
        kwargs: its keyword arguments; without ``key`` they (with ``acm_func``) make
            the cache key, so they must be hashable.
        key: what identifies the shared instance (besides ``acm_func``), or a function
            computing it from ``**kwargs``.
        acm_fn: another name for ``acm_func`` (this package's earlier keyword).

    Raises:
        TypeError: ``kwargs`` are unhashable and no ``key`` was given; no (or two)
            managers given.
        Exception: whatever entering the manager raised (every waiting user gets it).
    """
    if (acm_func is None) == (acm_fn is None):
        raise TypeError(
            "maybe_open_context needs one context manager function: "
            "maybe_open_context(acm_func=open_feed, kwargs={...}, key=...)"
        )
    acm_fn = acm_func if acm_func is not None else acm_fn
    assert acm_fn is not None
    kwargs = dict(kwargs or {})
    ckey = _cache_key(acm_fn, kwargs, key)
    cache, nursery = await _service_nursery()
    shared = cache.entries.get(ckey)
    cache_hit = shared is not None
    if shared is None:
        shared = cache.entries[ckey] = _Shared(_Holder(acm_fn(**kwargs)))
        nursery.start_soon(shared.holder.hold)
    shared.users += 1
    holder = shared.holder
    try:
        await holder.entered.wait()
        if holder.enter_error is not None:
            raise holder.enter_error
        if not holder._in:
            raise RuntimeError(f"{getattr(acm_fn, '__qualname__', acm_fn)} was cancelled while it was being entered")
        yield cache_hit, holder.value
    finally:
        shared.users -= 1
        if shared.users == 0:
            if cache.entries.get(ckey) is shared:
                del cache.entries[ckey]
            await holder.close()
            if holder.exit_error is not None:
                raise holder.exit_error  # the last user sees the teardown fail


# -- gather_contexts ---------------------------------------------------------------------------


@asynccontextmanager
async def gather_contexts(managers: Iterable[AsyncContextManager[Any]]) -> AsyncIterator[tuple[Any, ...]]:
    """Enter several async context managers concurrently; yield their values in order.

    They are exited concurrently when the block ends. If any fails to enter, the others
    are exited and the error is raised (several errors: an ``ExceptionGroup``).

    Example::

        async with gather_contexts([portal.open_context(f) for portal in portals]) as pairs:
            ...
    """
    holders = [_Holder(acm) for acm in managers]
    body_exc: BaseException | None = None
    async with trio.open_nursery() as nursery:
        for holder in holders:
            nursery.start_soon(holder.hold)
        try:
            await _wait_entered(holders)
            if not any(h.enter_error for h in holders):
                try:
                    yield tuple(holder.value for holder in holders)
                except BaseException as exc:  # raised below, not wrapped in the nursery's group
                    body_exc = exc
        except BaseException as exc:  # cancelled while entering
            body_exc = exc
        finally:
            with trio.CancelScope(shield=True):
                for holder in holders:
                    await holder.close()
    exit_errors = [h.exit_error for h in holders if h.exit_error is not None]
    if body_exc is not None:
        for err in exit_errors:
            body_exc.add_note(f"gather_contexts: exiting a context also failed with {err!r}")
        raise body_exc
    _raise_errors([h.enter_error for h in holders if h.enter_error is not None], "entering the contexts failed")
    _raise_errors(exit_errors, "exiting the contexts failed")


async def _wait_entered(holders: list[_Holder]) -> None:
    """Wait until every holder has entered, or one failed to (no point waiting longer)."""

    async def wait_one(holder: _Holder, scope: trio.CancelScope) -> None:
        await holder.entered.wait()
        if holder.enter_error is not None:
            scope.cancel()

    async with trio.open_nursery() as nursery:
        for holder in holders:
            nursery.start_soon(wait_one, holder, nursery.cancel_scope)


def _raise_errors(errors: list[BaseException], message: str) -> None:
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise BaseExceptionGroup(message, errors)
