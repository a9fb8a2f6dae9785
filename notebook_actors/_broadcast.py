"""Broadcast receivers: many local tasks each see every value of one receive channel.

One subscriber at a time pulls from the underlying channel (whichever asks first);
every value pulled goes into a ring buffer of ``max_buffer_size`` values shared by all
subscribers, each of which keeps its own read position. Nobody waits for the slowest
subscriber: one that falls more than ``max_buffer_size`` values behind gets
:class:`Lagged` once and goes on from the oldest value still kept. Memory is bounded
by the ring buffer, whatever the subscribers do.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

__all__ = ["BroadcastReceiver", "Lagged", "broadcast_receiver"]


class Lagged(trio.TooSlowError):
    """Raised by a subscriber that fell more than ``max_buffer_size`` values behind.

    ``.skipped`` is how many values it missed. Receiving again goes on with the
    oldest value still buffered, so a subscriber may catch it and keep going.
    """

    def __init__(self, message: str, skipped: int) -> None:
        super().__init__(message)
        self.skipped = skipped


class _Shared:
    """What all subscribers of one underlying channel share."""

    def __init__(self, receive: Callable[[], Awaitable[Any]], max_buffer_size: int, what: str) -> None:
        self.receive = receive
        self.max = max_buffer_size
        self.what = what
        self.buffer: deque[Any] = deque(maxlen=max_buffer_size)
        self.first = 0  # sequence number of buffer[0]
        self.end = 0  # sequence number the next pulled value gets
        self.pulling = False
        self.ended = False
        self.closed = False  # the first receiver closed, and with it the source
        self.new_value = trio.lowlevel.ParkingLot()
        self.subscribers = 0

    def push(self, value: Any) -> None:
        if len(self.buffer) == self.max:
            self.first += 1
        self.buffer.append(value)
        self.end += 1


class BroadcastReceiver(trio.abc.ReceiveChannel[Any]):
    """One subscriber of a broadcast (made by :func:`broadcast_receiver` or
    :meth:`subscribe`). Not built directly.

    A new subscriber sees the values pulled after it subscribed, not older ones.
    """

    def __init__(self, shared: _Shared, *, owns_source: Any = None, raise_on_lag: bool = True) -> None:
        self._shared = shared
        self._next = shared.end
        self._closed = False
        self._owns_source = owns_source
        self._raise_on_lag = raise_on_lag
        shared.subscribers += 1

    def __repr__(self) -> str:
        return f"<BroadcastReceiver of {self._shared.what} at {self._next}>"

    def receive_nowait(self) -> Any:
        """The next value if one is buffered for this subscriber, else ``trio.WouldBlock``.

        Raises:
            Lagged: this subscriber fell behind; it now resumes at the oldest value.
            trio.EndOfChannel: the underlying channel ended and this subscriber saw all.
            trio.ClosedResourceError: this subscriber was closed.
        """
        if self._closed:
            raise trio.ClosedResourceError("this broadcast subscriber was closed")
        shared = self._shared
        if self._next < shared.first:
            skipped = shared.first - self._next
            self._next = shared.first
            if not self._raise_on_lag:
                return self.receive_nowait()
            raise Lagged(
                f"this subscriber of {shared.what} fell {skipped} values behind (the buffer keeps "
                f"{shared.max}); it goes on from the oldest value kept. Read faster, or subscribe "
                "with a bigger max_buffer_size",
                skipped,
            )
        if self._next < shared.end:
            value = shared.buffer[self._next - shared.first]
            self._next += 1
            return value
        if shared.ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> Any:
        """The next value; waits for one (pulling it from the source if nobody else is).

        Raises:
            Lagged: this subscriber fell behind (see :class:`Lagged`).
            trio.EndOfChannel: the source ended.
            Exception: whatever the source's receive raised (for the pulling task).
        """
        shared = self._shared
        await trio.lowlevel.checkpoint_if_cancelled()  # a cancelled receive takes nothing
        while True:
            try:
                value = self.receive_nowait()
            except trio.WouldBlock:
                pass
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return value
            if shared.pulling:
                await shared.new_value.park()
                continue
            await self._pull()

    async def _pull(self) -> None:
        shared = self._shared
        shared.pulling = True
        try:
            value = await shared.receive()
        except trio.EndOfChannel:
            shared.ended = True
            return
        finally:
            shared.pulling = False
            shared.new_value.unpark_all()
        shared.push(value)

    @asynccontextmanager
    async def subscribe(self, raise_on_lag: bool = True) -> AsyncIterator[BroadcastReceiver]:
        """A new subscriber of the same source (closed when the block ends).

        Args:
            raise_on_lag: ``False`` makes a subscriber that fell behind skip ahead
                silently instead of raising :class:`Lagged`.

        Raises:
            trio.ClosedResourceError: this receiver, or the source it shares, was closed.
        """
        if self._closed or self._shared.closed:
            raise trio.ClosedResourceError(
                f"cannot subscribe to {self._shared.what}: this broadcast receiver was closed"
            )
        sub = BroadcastReceiver(self._shared, raise_on_lag=raise_on_lag)
        try:
            yield sub
        finally:
            await sub.aclose()

    async def aclose(self) -> None:
        """Close this subscriber. Closing the one :func:`broadcast_receiver` returned
        also closes the source channel it was given."""
        if not self._closed:
            self._closed = True
            self._shared.subscribers -= 1
            if self._owns_source is not None:
                self._shared.closed = True
                await self._owns_source.aclose()
                return
        await trio.lowlevel.checkpoint()

    def statistics(self) -> dict[str, int]:
        """``lag`` (values buffered but not yet read here), ``buffered``, ``subscribers``."""
        shared = self._shared
        return {
            "lag": shared.end - max(self._next, shared.first),
            "buffered": len(shared.buffer),
            "subscribers": shared.subscribers,
        }


def broadcast_receiver(
    recv_chan: Any,
    max_buffer_size: int,
    *,
    receive_afunc: Callable[[], Awaitable[Any]] | None = None,
    what: str | None = None,
) -> BroadcastReceiver:
    """Wrap a receive channel so several tasks can each see every value.

    Returns the first subscriber; call ``.subscribe()`` on it (an async context
    manager) for more. Trap: nobody waits for a slow subscriber, it gets
    :class:`Lagged` instead (memory stays bounded by ``max_buffer_size``).

    Args:
        recv_chan: a ``trio.abc.ReceiveChannel`` (or anything with ``receive``), or an
            async function returning the next value.
        max_buffer_size: values kept for subscribers that are behind.
        receive_afunc: pull values with this instead of ``recv_chan.receive``.
        what: a name for error messages.
    """
    if max_buffer_size < 1:
        raise ValueError(f"max_buffer_size must be at least 1, not {max_buffer_size}")
    if receive_afunc is None:
        receive_afunc = recv_chan if callable(recv_chan) and not hasattr(recv_chan, "receive") else recv_chan.receive
    owns = recv_chan if hasattr(recv_chan, "aclose") else None
    shared = _Shared(receive_afunc, max_buffer_size, what or repr(recv_chan))
    return BroadcastReceiver(shared, owns_source=owns)
