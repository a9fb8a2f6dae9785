"""The kernel's root actor: a trio guest run on ipykernel's asyncio loop.

The guest run itself is the core's :func:`notebook_actors.to_asyncio.start_guest_actor`;
this module adds what a kernel needs on top of it:

- a service nursery for long-lived trio tasks (held actors, ``--bg`` cells);
- :meth:`KernelRuntime.run_cell_task`: run a cell's trio work from asyncio, where an
  interrupt (the cell's asyncio task being cancelled) first goes to the cell's own
  interrupt handlers (a ``%%actor`` cell escalates: cancel, then SIGINT to the actor),
  and only cancels the trio task when nobody handles it.

Two traps, both handled here: ipykernel picks the output's target cell from
contextvars, so every trio task starts from a copy of the calling cell's context; and
a *blocking* cell (``time.sleep``) freezes trio along with the loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from notebook_actors import ext, to_asyncio

#: Seconds the kernel waits for the actor tree to exit when it shuts down.
SHUTDOWN_TIMEOUT = 10.0


class RuntimeNotRunning(RuntimeError):
    """Raised when a cell needs the actor runtime but it does not run in this kernel."""


class CellRun:
    """The trio side of one running cell: who handles an interrupt."""

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.interrupted = False
        self.handlers: list[Callable[[], None]] = []
        #: Told of every interrupt, whoever handles it (e.g. a debugger session shown here).
        self.observers: list[Callable[[], None]] = []

    def interrupt(self) -> None:
        self.interrupted = True
        for observer in list(self.observers):
            observer()
        if self.handlers:
            for handler in list(self.handlers):
                handler()
        else:
            self.scope.cancel()


_current_cell: contextvars.ContextVar[CellRun | None] = contextvars.ContextVar("notebook_actors_cell", default=None)


def current_cell() -> CellRun | None:
    """The running cell (inside trio tasks started for a cell), else None."""
    return _current_cell.get()


class running_cell:
    """A cell whose work stays in asyncio (a ``%%actor`` cell on its actor's cell
    line): inside the block, :func:`current_cell` is its :class:`CellRun`, whose
    handlers the caller calls on an interrupt (its scope guards nothing)."""

    def __enter__(self) -> CellRun:
        cell = CellRun(trio.CancelScope())
        self._token = _current_cell.set(cell)
        return cell

    def __exit__(self, *exc: object) -> None:
        _current_cell.reset(self._token)


class KernelRuntime:
    """The root actor of this kernel plus a service nursery. Made by :func:`start`."""

    def __init__(self, loop: asyncio.AbstractEventLoop, root_kwargs: dict[str, Any]) -> None:
        self.loop = loop
        # trio takes SIGINT only over Python's default handler; in a kernel SIGINT
        # belongs to ipykernel (it cancels the running cell), so hide the default
        # handler while trio starts.
        saved = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            self.guest = to_asyncio.start_guest_actor(loop=loop, **root_kwargs)
        finally:
            signal.signal(signal.SIGINT, saved)
        self._nursery: trio.Nursery | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery_ready: asyncio.Future[None] = loop.create_future()
        self._service = loop.create_task(self.guest.run(self._serve), name="notebook_actors:kernel-service")
        self._service.add_done_callback(self._service_ended)

    async def _serve(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            from ._actors import preload_cell_modules

            preload_cell_modules()  # before the template starts
            # the first `%%actor` cell then spawns warm, and so does `%%actor a/b` in `a`
            nursery.start_soon(functools.partial(ext.warm_up, nested=True))
            if not self._nursery_ready.done():
                self._nursery_ready.set_result(None)
            await trio.sleep_forever()

    def _service_ended(self, task: asyncio.Task) -> None:
        self._nursery = None
        exc = None if task.cancelled() else task.exception()  # retrieve it: no asyncio warning
        if not self._nursery_ready.done():
            self._nursery_ready.set_exception(
                RuntimeNotRunning(f"the actor runtime did not start in this kernel: {exc!r}")
            )
            self._nursery_ready.exception()

    @property
    def actor(self) -> Any:
        return self.guest.actor

    @property
    def running(self) -> bool:
        return self._nursery is not None and not self.guest.guest.done()

    async def wait_ready(self) -> None:
        await asyncio.shield(self._nursery_ready)

    def stop_soon(self) -> None:
        """Start cancelling the whole tree (sync)."""
        self.guest.stop()

    async def stop(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Cancel the whole tree; wait until every actor process is gone."""
        self.guest.stop()
        await asyncio.wait_for(self.guest.wait_closed(), timeout)

    def _check(self) -> trio.Nursery:
        if self._nursery is None or self.guest.guest.done():
            raise RuntimeNotRunning(
                "the notebook_actors runtime is not running in this kernel: run `%load_ext notebook_actors`"
            )
        return self._nursery

    # -- trio work for cells (called from asyncio, on the loop's thread) --------------
    async def run_cell_task(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run trio ``async_fn(*args)`` for the calling cell; return its result.

        If the cell is interrupted, the interrupt goes to the :class:`CellRun`'s
        handlers, else cancels the task; this waits for the task to end either way, and
        raises ``KeyboardInterrupt`` when it ended by cancellation.
        """
        __tracebackhide__ = True
        await self.wait_ready()
        nursery = self._check()
        token = self._token
        assert token is not None  # set with the nursery
        # the future the task's result goes to; awaited directly (a shield would cost
        # the cell a loop iteration), so an interrupt cancels it: then the next one
        finished = [self.loop.create_future()]
        scope = trio.CancelScope()
        cell = CellRun(scope)

        async def task() -> None:
            __tracebackhide__ = True
            _current_cell.set(cell)
            result: tuple[str, Any] = ("error", RuntimeNotRunning("the actor runtime shut down during this cell"))
            try:
                with scope:
                    try:
                        result = ("value", await async_fn(*args))
                    except Exception as exc:
                        result = ("error", exc)
                    except KeyboardInterrupt as exc:
                        result = ("error", exc)
            finally:
                if scope.cancelled_caught:
                    result = ("error", KeyboardInterrupt())
                if not finished[-1].done():
                    finished[-1].set_result(result)

        # started right here, from the loop's thread (trio's guest mode lets host code
        # schedule tasks; it wakes its I/O thread itself): the task runs at the run's
        # next tick, not one tick after the run_sync_soon task that would start it.
        # It starts in a copy of this cell's context (ipykernel routes output by it).
        try:
            nursery.start_soon(task)
        except RuntimeError:  # the nursery closed: the runtime is shutting down
            raise RuntimeNotRunning("the notebook_actors runtime is shutting down in this kernel") from None
        while True:
            try:
                kind, value = await finished[-1]
                break
            except asyncio.CancelledError:  # the kernel's interrupt
                if finished[-1].done() and not finished[-1].cancelled():  # it ended meanwhile
                    kind, value = finished[-1].result()
                    break
                finished.append(self.loop.create_future())
                try:
                    token.run_sync_soon(cell.interrupt)
                except trio.RunFinishedError:
                    raise KeyboardInterrupt from None
        if kind == "error":
            raise value
        return value

    def call_in_trio(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` in the trio run soon (from asyncio code on the loop).

        Raises:
            RuntimeError: the runtime is not running (or its trio run has ended).
        """
        if self._token is None:
            raise RuntimeNotRunning("the notebook_actors runtime is not running in this kernel")
        self._token.run_sync_soon(fn, *args)  # trio.RunFinishedError is a RuntimeError

    def start_soon(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start a long-lived trio task (from trio code) in the caller's context."""
        self._check().start_soon(async_fn, *args)

    async def start(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """``nursery.start`` on the service nursery (from trio code)."""
        return await self._check().start(async_fn, *args)


_runtime: KernelRuntime | None = None
_stopping: KernelRuntime | None = None


def current() -> KernelRuntime | None:
    """This kernel's runtime, or None when it is not running (or is stopping)."""
    if _runtime is None or _runtime.guest.guest.done() or _runtime is _stopping:
        return None
    return _runtime


def stopping() -> KernelRuntime | None:
    """A runtime asked to stop whose trio run has not ended yet."""
    if _stopping is None or _stopping.guest.guest.done():
        return None
    return _stopping


def start(loop: asyncio.AbstractEventLoop, **root_kwargs: Any) -> KernelRuntime:
    """Start the root actor on ``loop``; a running one is returned as is.

    Raises:
        RuntimeNotRunning: the previous runtime is still stopping (one thread hosts
            one trio run at a time).
    """
    global _runtime
    if current() is not None:
        return _runtime  # type: ignore[return-value]
    if stopping() is not None:
        raise RuntimeNotRunning("the previous notebook_actors runtime is still stopping: try again in a moment")
    root_kwargs.setdefault("name", "kernel")
    _runtime = KernelRuntime(loop, root_kwargs)
    return _runtime


def stop_soon() -> KernelRuntime | None:
    """Start stopping the current runtime; return it (await its ``stop()`` to wait)."""
    global _stopping
    rt = current()
    if rt is not None:
        _stopping = rt
        rt.stop_soon()
    return rt
