"""asyncio interop: run trio as a guest on an asyncio loop ("infected asyncio").

Two directions live here:

- **trio on asyncio** (guest mode): :func:`run_as_asyncio_guest` runs a trio program on
  a fresh asyncio loop (what an ``infect_asyncio=True`` actor does);
  :func:`start_guest_run` and :func:`start_guest_actor` run trio, or the whole actor
  runtime, on an asyncio loop that *already runs* (a Jupyter kernel's, or your own
  ``asyncio.run(main())``).
- **asyncio from trio**: inside such a guest run, :func:`run_task` and
  :func:`open_channel_from` run asyncio code from trio tasks with errors and
  cancellation linked both ways.

Everything runs on one thread: trio's tasks step inside callbacks of the asyncio
loop, so a blocking call on either side freezes both.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import outcome
import trio

from ._asyncio_guest import (
    HOST_TASK_NAME,
    GuestRun,
    host_loop,
    is_guest_mode,
    run_as_asyncio_guest,
    start_guest_run,
    value_or_raise,
)
from ._exceptions import AsyncioCancelled

__all__ = [
    "HOST_TASK_NAME",
    "AsyncioCancelled",
    "GuestActor",
    "GuestRun",
    "LinkedTaskChannel",
    "host_loop",
    "is_guest_mode",
    "open_channel_from",
    "run_as_asyncio_guest",
    "run_task",
    "start_guest_actor",
    "start_guest_run",
]


class GuestActor:
    """The actor runtime running as a trio guest on an asyncio loop. Made by
    :func:`start_guest_actor`.

    From asyncio code: ``await ga.wait_started()`` for the :class:`Actor`,
    ``await ga.run(trio_fn, *args)`` to run trio code inside the runtime (e.g. open an
    actor nursery), ``await ga.aclose()`` to cancel the whole tree and wait until every
    child actor is gone. Also an async context manager doing the first and the last.
    """

    def __init__(self, root_kwargs: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.actor: Any = None
        self._root_kwargs = root_kwargs
        self._started: asyncio.Future[None] = loop.create_future()
        self._nursery: trio.Nursery | None = None
        self.guest: GuestRun = start_guest_run(self._trio_main, loop=loop, done_callback=self._on_done)

    def __repr__(self) -> str:
        return f"<GuestActor {self.actor.uid if self.actor else '(starting)'} {self.guest!r}>"

    async def _trio_main(self) -> None:
        from ._root import open_root_actor

        async with open_root_actor(**self._root_kwargs) as actor:
            async with trio.open_nursery() as nursery:
                self.actor, self._nursery = actor, nursery
                if not self._started.done():
                    self._started.set_result(None)
                await trio.sleep_forever()

    def _on_done(self, result: outcome.Outcome[Any]) -> None:
        if not self._started.done():
            if isinstance(result, outcome.Error):
                self._started.set_exception(result.error)
            else:
                self._started.set_exception(RuntimeError("the guest actor runtime stopped before it started"))
            self._started.exception()  # retrieved: wait_started() raises it, no asyncio log if nobody asks

    async def wait_started(self) -> Any:
        """Wait until the root actor is up; return it (raise why it failed to start)."""
        await asyncio.shield(self._started)
        return self.actor

    async def run(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run the trio function ``async_fn(*args)`` inside the runtime; return its result.

        Awaited from asyncio. The trio task starts in a copy of the caller's
        ``contextvars`` context (so, in a kernel, its output goes to the calling cell).
        Cancelling the awaiting asyncio task cancels the trio task and waits for it to
        unwind before ``CancelledError`` propagates; its error is raised here.

        Raises:
            RuntimeError: the runtime is shutting down or has stopped.
        """
        await self.wait_started()
        if self.guest.done() or self._nursery is None:
            raise RuntimeError("the guest actor runtime has stopped: start a new one with start_guest_actor()")
        return await _run_in_trio(self._nursery, self.guest, async_fn, args)

    def stop(self) -> None:
        """Start cancelling the tree (sync); ``await wait_closed()`` for the end."""
        self.guest.cancel()

    async def wait_closed(self) -> None:
        """Wait until the runtime, and every actor it spawned, has ended."""
        await asyncio.shield(self.guest.ended)

    async def aclose(self) -> None:
        """Cancel the whole actor tree and wait until every process of it is gone.

        Do this before the host loop closes; it is safe to call twice.
        """
        await self.guest.aclose()

    async def __aenter__(self) -> GuestActor:
        try:
            await self.wait_started()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()


def start_guest_actor(*, loop: asyncio.AbstractEventLoop | None = None, **root_kwargs: Any) -> GuestActor:
    """Run the actor runtime (a root actor) as a trio guest on a running asyncio loop.

    Returns at once (it may be called from sync code on the loop's thread);
    ``await ga.wait_started()`` or ``async with start_guest_actor() as ga:`` waits
    until the root actor is up. The actor counts as asyncio-infected, so
    :func:`run_task` works in its trio tasks.

    The trap: stop it with ``await ga.aclose()`` *before* the host loop closes, or
    its children outlive their tree until the parent-death signal reaps them.

    Args:
        loop: the host loop; default the running one.
        root_kwargs: passed to :func:`notebook_actors.open_root_actor`.
    """
    root_kwargs.setdefault("infect_asyncio", True)
    return GuestActor(root_kwargs, loop or asyncio.get_running_loop())


async def _run_in_trio(
    nursery: trio.Nursery, guest: GuestRun, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]
) -> Any:
    """Run ``async_fn(*args)`` as a task of ``nursery``; await it from asyncio."""
    finished: asyncio.Future[outcome.Outcome[Any]] = guest.loop.create_future()
    scope = trio.CancelScope()

    async def trio_task() -> None:
        result: outcome.Outcome[Any] = outcome.Error(_shut_down_error())
        try:
            with scope:
                try:
                    result = outcome.Value(await async_fn(*args))
                except Exception as exc:  # goes to the asyncio caller; Cancelled/KI propagate
                    result = outcome.Error(exc)
        finally:
            if scope.cancelled_caught:
                result = outcome.Error(asyncio.CancelledError())
            if not finished.done():
                finished.set_result(result)

    def start() -> None:  # in trio (a run_sync_soon callback must not raise)
        try:
            nursery.start_soon(trio_task)
        except RuntimeError:  # the nursery closed: the runtime is shutting down
            if not finished.done():
                finished.set_result(outcome.Error(_shut_down_error()))

    ctx = contextvars.copy_context()
    if not guest.call_soon(ctx.run, start):
        raise _shut_down_error()
    try:
        await _until_done(finished, guest)
    except asyncio.CancelledError:
        guest.call_soon(scope.cancel)
        while True:  # wait for the trio task to unwind, however often we are cancelled
            try:
                await _until_done(finished, guest)
                break
            except asyncio.CancelledError:
                continue
        raise
    return value_or_raise(finished.result() if finished.done() else outcome.Error(_shut_down_error()))


async def _until_done(finished: asyncio.Future[Any], guest: GuestRun) -> None:
    """Wait until ``finished`` resolves or the whole guest run ends (without cancelling
    either future when the waiting task is cancelled)."""
    await asyncio.wait([finished, guest.ended], return_when=asyncio.FIRST_COMPLETED)


def _shut_down_error() -> RuntimeError:
    return RuntimeError("the guest actor runtime shut down while this call ran in it")


# -- asyncio from trio --------------------------------------------------------------------


def _start_asyncio_task(async_fn: Callable[..., Coroutine[Any, Any, Any]], kwargs: dict[str, Any]) -> asyncio.Task[Any]:
    loop = host_loop()
    coro = async_fn(**kwargs)
    if not asyncio.iscoroutine(coro):
        name = getattr(async_fn, "__qualname__", repr(async_fn))
        raise TypeError(
            f"{name}(**kwargs) returned {type(coro).__name__}, not a coroutine: pass an `async def` function"
        )
    return loop.create_task(coro, name=f"notebook_actors.to_asyncio:{getattr(async_fn, '__qualname__', 'task')}")


def _when_done(task: asyncio.Task[Any], callback: Callable[[], Any]) -> None:
    """Call ``callback()`` in trio (as a sync callback) once the asyncio ``task`` finishes."""
    token = trio.lowlevel.current_trio_token()

    def wake(_: asyncio.Task[Any]) -> None:
        try:
            token.run_sync_soon(callback)
        except trio.RunFinishedError:
            pass

    task.add_done_callback(wake)


async def _cancel_and_wait(task: asyncio.Task[Any], done: trio.Event) -> None:
    """Cancel the asyncio task and wait (shielded) until it has really finished."""
    task.cancel()
    with trio.CancelScope(shield=True):
        await done.wait()
    _task_outcome(task)  # mark its error retrieved: asyncio would log it as never retrieved


def _task_outcome(task: asyncio.Task[Any]) -> outcome.Outcome[Any]:
    """The finished task's result, or its error (asyncio's own cancellation becomes
    :class:`AsyncioCancelled`, chained to the ``CancelledError``)."""
    try:
        return outcome.Value(task.result())
    except asyncio.CancelledError as exc:
        err = AsyncioCancelled(
            f"asyncio task {task.get_name()!r} was cancelled on the asyncio side (not by trio)"
            f"{_in_actor()}; if that was intended, catch notebook_actors.AsyncioCancelled"
        )
        err.__cause__ = exc
        return outcome.Error(err)
    except BaseException as exc:
        return outcome.Error(exc)


def _in_actor() -> str:
    from ._state import current_actor_or_none

    actor = current_actor_or_none()
    return f" in actor {actor.uid}" if actor is not None else ""


async def run_task(async_fn: Callable[..., Coroutine[Any, Any, Any]], **kwargs: Any) -> Any:
    """Run the asyncio coroutine ``async_fn(**kwargs)`` from trio; return its result.

    Needs trio running as a guest on asyncio (an ``infect_asyncio=True`` actor, or
    :func:`run_as_asyncio_guest`/:func:`start_guest_actor`). Linked both ways:

    - an error in the asyncio task is raised here, with its asyncio traceback;
    - cancelling the trio side cancels the asyncio task and waits until it finished;
    - the asyncio task cancelled by asyncio itself raises :class:`AsyncioCancelled`.

    The trap: an asyncio task that swallows ``CancelledError`` and keeps running keeps
    the cancelled trio side waiting for it.

    Raises:
        RuntimeError: trio does not run as a guest on asyncio here.
        AsyncioCancelled: asyncio cancelled the task.
    """
    task = _start_asyncio_task(async_fn, kwargs)
    done = trio.Event()
    _when_done(task, done.set)
    try:
        await done.wait()
    except BaseException:
        await _cancel_and_wait(task, done)
        raise
    return value_or_raise(_task_outcome(task))


class LinkedTaskChannel(trio.abc.Channel[Any]):
    """A two-way channel between a trio task and the asyncio task it started. Made by
    :func:`open_channel_from`.

    ``await send(v)`` puts ``v`` on the asyncio side's ``from_trio`` queue;
    ``await receive()`` (or ``async for``) gets what it passed to
    ``to_trio.send_nowait()``. Once the asyncio task has returned, receiving ends
    (``trio.EndOfChannel``, or the end of ``async for``) after the values already
    sent; if it failed, receiving raises its error.
    """

    def __init__(
        self,
        task: asyncio.Task[Any],
        done: trio.Event,
        from_aio: trio.MemoryReceiveChannel[Any],
        to_aio: asyncio.Queue[Any],
    ) -> None:
        self._task = task
        self._done = done
        self._from_aio = from_aio
        self._to_aio = to_aio
        self._closed = False
        self._failure: BaseException | None = None
        self._broadcaster: Any = None

    def fail(self, error: BaseException) -> bool:
        """Record that the asyncio task failed with ``error``; False (nothing recorded)
        once the trio side has closed the channel."""
        if self._closed:
            return False
        self._failure = error
        return True

    @property
    def failure(self) -> BaseException | None:
        """The asyncio task's error, if it failed while the channel was open."""
        return self._failure

    def __repr__(self) -> str:
        return f"<LinkedTaskChannel to asyncio task {self._task.get_name()!r}>"

    @property
    def task(self) -> asyncio.Task[Any]:
        """The asyncio task on the other end."""
        return self._task

    async def send(self, value: Any) -> None:
        """Put ``value`` on the asyncio side's ``from_trio`` queue.

        Raises:
            trio.ClosedResourceError: this channel was closed.
            trio.BrokenResourceError: the asyncio task has already finished.
        """
        if self._closed:
            raise trio.ClosedResourceError("this LinkedTaskChannel was closed")
        if self._task.done():
            raise trio.BrokenResourceError(
                f"asyncio task {self._task.get_name()!r} has finished: nobody reads what trio sends"
            )
        await trio.lowlevel.checkpoint()
        self._to_aio.put_nowait(value)

    async def receive(self) -> Any:
        """The next value from the asyncio side.

        Raises:
            trio.EndOfChannel: the asyncio task returned and every value was received.
            AsyncioCancelled: asyncio cancelled the task.
            Exception: whatever the asyncio task raised.
        """
        if self._broadcaster is not None:
            return await self._broadcaster.receive()
        return await self._receive_direct()

    def subscribe(self, max_buffer_size: int = 1000) -> Any:
        """An async context manager → a broadcast receiver, so several trio tasks can
        each see every value from the asyncio side (from the moment they subscribed).

        Once there are subscribers, this channel's own ``receive`` is one of them too.
        A subscriber more than ``max_buffer_size`` values behind gets
        :class:`~notebook_actors.trionics.Lagged` and skips ahead.
        """
        if self._broadcaster is None:
            from ._broadcast import broadcast_receiver

            self._broadcaster = broadcast_receiver(
                self._receive_direct, max_buffer_size=max_buffer_size, what=repr(self)
            )
        return self._broadcaster.subscribe()

    async def _receive_direct(self) -> Any:
        try:
            return await self._from_aio.receive()
        except trio.EndOfChannel:
            pass
        await self._done.wait()
        result = _task_outcome(self._task)
        if isinstance(result, outcome.Error):
            raise result.error
        raise trio.EndOfChannel(f"asyncio task {self._task.get_name()!r} returned")

    async def wait_asyncio_complete(self) -> Any:
        """Wait until the asyncio task has finished; return its result or raise its error."""
        await self._done.wait()
        return value_or_raise(_task_outcome(self._task))

    async def aclose(self) -> None:
        """Close the channel and cancel the asyncio task (waiting until it finished)."""
        self._closed = True
        await self._from_aio.aclose()
        if not self._task.done():
            await _cancel_and_wait(self._task, self._done)
        else:
            await trio.lowlevel.checkpoint()


@asynccontextmanager
async def open_channel_from(
    async_fn: Callable[..., Coroutine[Any, Any, Any]], **kwargs: Any
) -> AsyncIterator[tuple[Any, LinkedTaskChannel]]:
    """Start the asyncio task ``async_fn(to_trio=..., from_trio=..., **kwargs)`` linked
    to a :class:`LinkedTaskChannel`; yield ``(first, chan)``.

    The asyncio function gets ``to_trio`` (call ``to_trio.send_nowait(v)``; its buffer is
    unbounded, as asyncio cannot wait on trio) and ``from_trio`` (an ``asyncio.Queue``:
    ``await from_trio.get()``). The first value it sends is ``first``: send one right
    away, as this waits for it.

    Either side ending or failing ends the other:

    - the block exits (normally, by error or cancelled) → the asyncio task is cancelled
      and waited for;
    - the asyncio task fails → the block is cancelled and its error raised from the
      ``async with``;
    - the asyncio task returns → receiving ends after the values it sent (the block
      itself goes on).

    Raises:
        RuntimeError: trio does not run as a guest on asyncio here, or the asyncio task
            returned before sending its first value.
    """
    to_trio, from_aio = trio.open_memory_channel[Any](math.inf)
    from_trio: asyncio.Queue[Any] = asyncio.Queue()
    kwargs.update(to_trio=to_trio, from_trio=from_trio)
    task = _start_asyncio_task(async_fn, kwargs)
    done = trio.Event()
    chan = LinkedTaskChannel(task, done, from_aio, from_trio)
    body_scope = trio.CancelScope()

    def asyncio_task_done() -> None:
        done.set()
        to_trio.close()  # the trio side's receiving ends after what was sent
        result = _task_outcome(task)
        if isinstance(result, outcome.Error) and chan.fail(result.error):
            body_scope.cancel()

    _when_done(task, asyncio_task_done)
    try:
        with body_scope:
            try:
                first = await chan.receive()
            except trio.EndOfChannel:
                raise RuntimeError(
                    f"asyncio task {task.get_name()!r} returned before sending its first value: "
                    "call `to_trio.send_nowait(first)` in it before anything else"
                ) from None
            yield first, chan
    finally:
        with trio.CancelScope(shield=True):
            await chan.aclose()
    if chan.failure is not None:
        raise chan.failure
