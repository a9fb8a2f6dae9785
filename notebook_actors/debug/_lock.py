"""The tree-wide REPL lock (it lives in the root) and what guards a session while open."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import trio

from ._frontend import ReplFrontEnd, fmt_uid, get_front_end

log = logging.getLogger("notebook_actors.debug")


class TreeLock:
    """FIFO: one REPL at a time across the tree.

    Every change is published to the tree (``tree["debug"]``), so ``python -m
    notebook_actors ps`` and the widget show who holds the REPL and who waits.
    ``release`` is sync so a session that ends inside pdb (no trio available) can still
    hand the lock on.
    """

    def __init__(self) -> None:
        self.holder: Any = None
        self._queue: deque[tuple[Any, trio.Event]] = deque()

    def waiting(self) -> list[Any]:
        """The uids queued for the REPL, first in line first."""
        return [uid for uid, _ in self._queue]

    def try_acquire(self, uid: Any) -> bool:
        """Take the lock if nobody holds it or waits for it."""
        if self.holder is None and not self._queue:
            self.holder = uid
            self._publish()
            return True
        return False

    async def acquire(self, uid: Any) -> None:
        """Wait (cancellably, FIFO) for the lock; a queued request is shown as a notice."""
        if self.try_acquire(uid):
            await trio.lowlevel.checkpoint()
            return
        entry = (uid, trio.Event())
        self._queue.append(entry)
        self._publish()
        waiting = ", ".join(fmt_uid(u) for u in self.waiting())
        get_front_end().notice(f"REPL held by {fmt_uid(self.holder)}; waiting: {waiting}")
        try:
            await entry[1].wait()
        except BaseException:
            if entry in self._queue:
                self._queue.remove(entry)
                self._publish()
            elif self.holder == uid:  # granted just as we were cancelled: pass it on
                self.release(uid)
            raise

    def release(self, uid: Any) -> None:
        """Hand the lock to the next in line (nothing happens unless ``uid`` holds it)."""
        if self.holder != uid:
            return
        self.holder = None
        if self._queue:
            self.holder, event = self._queue.popleft()
            event.set()
        self._publish()

    def _publish(self) -> None:
        from .. import _tree

        try:
            _tree.set_debug_lock(self.holder, self.waiting())
        except Exception:  # the tree's view must never break a session
            log.debug("could not publish the debugger lock", exc_info=True)


lock = TreeLock()

#: Sessions (held or queued) that pass through each direct child: its supervisor must
#: not kill a child whose descendant is in a REPL.
_sessions_via: dict[Any, int] = {}
_sessions_changed = trio.lowlevel.ParkingLot()


async def wait_while_repl_via(uid: Any) -> None:
    """Wait until no REPL session (held or queued) passes through child ``uid``."""
    while _sessions_via.get(tuple(uid)):
        await _sessions_changed.park()


@contextlib.contextmanager
def session_via(uid: Any) -> Iterator[None]:
    """Count a session passing through child ``uid`` while the block runs."""
    uid = tuple(uid)
    _sessions_via[uid] = _sessions_via.get(uid, 0) + 1
    try:
        yield
    finally:
        _sessions_via[uid] -= 1
        if not _sessions_via[uid]:
            del _sessions_via[uid]
        _sessions_changed.unpark_all()


@contextlib.contextmanager
def sigint_guard(front_end: ReplFrontEnd, handler: Any) -> Iterator[None]:
    """Replace SIGINT's handler while a REPL is open (main thread only)."""
    if not front_end.handles_sigint or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
