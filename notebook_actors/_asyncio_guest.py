"""trio as a guest on an asyncio loop: the host machinery itself.

Below the actor runtime (it knows nothing of actors), so the child process, the
spawner and the root can run a trio program on asyncio without importing the
``to_asyncio`` add-on; ``to_asyncio`` re-exports all of it. Importing this module
imports asyncio: the runtime imports it only where an asyncio run is asked for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import outcome
import trio

#: The name of the asyncio task that hosts :func:`run_as_asyncio_guest`'s trio run.
HOST_TASK_NAME = "notebook_actors:trio-guest-host"
#: Guest runs alive in this process (seen from outside trio).
_guest_runs = 0
#: Inside a trio run: the asyncio loop hosting it, or None for a plain ``trio.run``.
_host_loop: trio.lowlevel.RunVar[asyncio.AbstractEventLoop | None] = trio.lowlevel.RunVar(
    "notebook_actors.host_loop", default=None
)


def is_guest_mode() -> bool:
    """True while this process runs trio as a guest on an asyncio loop.

    Inside a trio run it answers for that run (a plain ``trio.run`` in a worker thread
    is not a guest); outside trio it says whether any guest run is alive.
    """
    try:
        return _host_loop.get() is not None
    except RuntimeError:  # not inside a trio run
        return _guest_runs > 0


def host_loop() -> asyncio.AbstractEventLoop:
    """The asyncio loop hosting the current trio run.

    Raises:
        RuntimeError: trio runs on its own here (``trio.run``), not as a guest.
    """
    try:
        loop = _host_loop.get()
    except RuntimeError:
        loop = None
    if loop is None:
        raise RuntimeError(
            "this needs trio running as a guest on asyncio, but it runs on its own here: "
            "spawn the actor with infect_asyncio=True (start_actor/run_in_actor/open_root_actor/run), "
            "or start trio with notebook_actors.to_asyncio.run_as_asyncio_guest(main) instead of trio.run(main)"
        )
    return loop


class GuestRun:
    """A trio run hosted by an asyncio loop. Made by :func:`start_guest_run`.

    The host must let the run finish before its loop stops: call :meth:`cancel` (or
    :meth:`aclose`) and ``await`` :meth:`wait` first. A loop closed under a live guest
    run leaves trio half-way, and its child actors to the reaper of last resort.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._finished: asyncio.Future[outcome.Outcome[Any]] = loop.create_future()
        self._scope: trio.CancelScope | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel_requested = False

    def __repr__(self) -> str:
        state = "finished" if self.done() else ("cancelling" if self._cancel_requested else "running")
        return f"<GuestRun {state} on {self.loop!r}>"

    @property
    def ended(self) -> asyncio.Future[outcome.Outcome[Any]]:
        """Resolves (to the run's outcome) when the trio run has ended; await it
        through ``asyncio.shield`` (cancelling it would lose the outcome)."""
        return self._finished

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> bool:
        """Schedule ``fn(*args)`` in the trio run; False if the run has ended."""
        if self._token is None or self.done():
            return False
        try:
            self._token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            return False
        return True

    def done(self) -> bool:
        """True once the trio run has ended."""
        return self._finished.done()

    def cancel(self) -> None:
        """Cancel the trio run's main task (sync, safe from any thread; idempotent).

        The run ends once every trio task has unwound: await :meth:`wait` for that.
        """
        self._cancel_requested = True
        if self._scope is not None:  # else the main task cancels itself when it starts
            self.call_soon(self._scope.cancel)

    async def wait(self) -> Any:
        """Wait (in asyncio) until the trio run has ended; return its result or raise its
        error. A run ended by :meth:`cancel` returns ``None``.

        Cancelling the awaiting asyncio task does not cancel the trio run.
        """
        return value_or_raise(await asyncio.shield(self._finished))

    async def aclose(self) -> None:
        """Cancel the trio run and wait until it has ended; errors are not raised."""
        self.cancel()
        await asyncio.shield(self._finished)

    async def _main(self, async_fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> Any:
        _host_loop.set(self.loop)
        with trio.CancelScope() as scope:
            self._scope = scope
            if self._cancel_requested:
                scope.cancel()
            return await async_fn(*args)
        return None  # cancelled through cancel()

    def _done(self, result: outcome.Outcome[Any], done_callback: Callable[[outcome.Outcome[Any]], Any] | None) -> None:
        global _guest_runs
        _guest_runs -= 1
        if not self._finished.done() and not self.loop.is_closed():
            self._finished.set_result(result)
        if done_callback is not None:
            done_callback(result)


def start_guest_run(
    async_fn: Callable[..., Awaitable[Any]],
    *args: Any,
    loop: asyncio.AbstractEventLoop | None = None,
    done_callback: Callable[[outcome.Outcome[Any]], Any] | None = None,
) -> GuestRun:
    """Start ``async_fn(*args)`` as a trio run hosted by an asyncio loop; return at once.

    Call it on the loop's thread: from a coroutine or callback of the running loop, or
    from synchronous code the loop calls (e.g. ``load_ipython_extension``). trio keeps
    running whenever the loop is idle or awaiting; a *blocking* call on the loop's thread
    (``time.sleep``) freezes trio too.

    Args:
        loop: the host loop; default the running one.
        done_callback: called on the loop's thread with the run's
            :class:`outcome.Outcome` when it ends (``await run.wait()`` is the usual way).

    Raises:
        RuntimeError: no ``loop`` given and none is running; or a trio run is already
            active on this thread.
    """
    global _guest_runs
    if trio.lowlevel.in_trio_run():
        raise RuntimeError(
            "a trio run is already active on this thread: one thread hosts one trio run; "
            "use the running one (e.g. its actor nursery) instead of starting another guest run"
        )
    loop = loop or asyncio.get_running_loop()
    run = GuestRun(loop)
    trio.lowlevel.start_guest_run(
        run._main,
        async_fn,
        args,
        run_sync_soon_threadsafe=loop.call_soon_threadsafe,
        run_sync_soon_not_threadsafe=loop.call_soon,
        # asyncio owns the wakeup fd (for its own signal handlers): trio must not take it.
        host_uses_signal_set_wakeup_fd=False,
        done_callback=lambda result: run._done(result, done_callback),
    )
    _guest_runs += 1
    run._token = trio.lowlevel.current_trio_token()  # the guest's runner is this thread's now
    return run


def run_as_asyncio_guest(trio_main: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """Run ``trio_main(*args)`` with trio as a guest on a new asyncio loop (blocking).

    The asyncio counterpart of ``trio.run(trio_main, *args)``: returns its result or
    raises its error. Inside, asyncio code can run alongside trio (see :func:`run_task`)
    and :func:`is_guest_mode` is true. Ctrl-C cancels the trio run, waits for it to
    unwind, then raises ``KeyboardInterrupt``.
    """

    async def host() -> Any:
        asyncio.current_task().set_name(HOST_TASK_NAME)  # type: ignore[union-attr]
        run = start_guest_run(trio_main, *args)
        try:
            return await run.wait()
        except asyncio.CancelledError:  # Ctrl-C: asyncio.run cancels this task
            await run.aclose()
            raise

    return asyncio.run(host())


def value_or_raise(result: outcome.Outcome[Any]) -> Any:
    """Like ``result.unwrap()``, but an outcome may be read more than once."""
    if isinstance(result, outcome.Error):
        raise result.error
    assert isinstance(result, outcome.Value)
    return result.value
