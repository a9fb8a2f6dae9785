"""Shared memory for large buffers between actors on one host.

A buffer of at least :data:`SHM_MIN` bytes bound for a peer on the same host (a Unix
socket channel) is copied once into a memfd segment, and the segment's descriptor
travels with the frame (``SCM_RIGHTS``); the receiver maps the very same pages. A
memfd has no name anywhere (nothing in ``/dev/shm``): its pages live exactly as long
as some process holds its descriptor or a mapping of it, so a SIGKILL of either side
at any moment leaves nothing behind.

The sender keeps a small pool of segments per channel (:class:`SegmentPool`): a fresh
segment costs page faults on every page (~1.5 GB/s here), a reused one is a warm
memcpy (~10 GB/s). A pooled segment is lent to the receiver; when the receiver's last
view of it dies, it says so (a ``Release`` message) and the segment is reused. Past
the pool's byte budget segments are given away (the sender closes its descriptor at
once; the receiver's mapping is then the only owner).
"""

from __future__ import annotations

import mmap
import os
import stat
import sys
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["SHM_MIN", "Segment", "SegmentPool", "available", "map_received"]

#: Buffers at least this large go through shared memory on one host.
SHM_MIN = int(os.environ.get("NOTEBOOK_ACTORS_SHM_MIN", 1024 * 1024))
#: Bytes of segments a sender keeps per channel for reuse.
POOL_BYTES = int(os.environ.get("NOTEBOOK_ACTORS_SHM_POOL", 1024 * 1024 * 1024))
_MFD_FLAGS = getattr(os, "MFD_CLOEXEC", 0) | getattr(os, "MFD_ALLOW_SEALING", 0)


def available() -> bool:
    """Whether this platform can pass memfd segments (Linux)."""
    return sys.platform.startswith("linux") and hasattr(os, "memfd_create")


def _round_up(n: int) -> int:
    """Segment sizes: powers of two up to 64 MiB, then multiples of 64 MiB (so a
    segment serves arrays of similar sizes without wasting more than a quarter)."""
    if n <= 64 << 20:
        return 1 << (n - 1).bit_length()
    step = 64 << 20
    return -(-n // step) * step


class Segment:
    """A memfd segment on the sender's side, with the sender's writable mapping."""

    __slots__ = ("fd", "id", "map", "size")

    def __init__(self, seg_id: int, size: int) -> None:
        self.id, self.size = seg_id, size
        self.fd = os.memfd_create("notebook_actors", _MFD_FLAGS)
        try:
            os.ftruncate(self.fd, size)
            self.map = mmap.mmap(self.fd, size)
        except BaseException:
            os.close(self.fd)
            raise

    def fill(self, views: list[memoryview]) -> int:
        """Copy ``views`` back to back into the segment; return the bytes written."""
        pos = 0
        for view in views:
            n = view.nbytes
            self.map[pos : pos + n] = view
            pos += n
        return pos

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.map.close()


class SegmentPool:
    """The segments one channel's sender lends to its receiver (see module docs).

    ``id`` 0 means "given away": not pooled, never released.
    """

    def __init__(self, budget: int = POOL_BYTES) -> None:
        self._budget = budget
        self._lent: dict[int, Segment] = {}
        self._free: list[Segment] = []
        self._next_id = 1
        self._closed = False

    @property
    def held_bytes(self) -> int:
        return sum(s.size for s in self._lent.values()) + sum(s.size for s in self._free)

    def take(self, nbytes: int) -> Segment:
        """A segment of at least ``nbytes``: a free pooled one, a new pooled one within
        the budget, or a new one to give away."""
        best = None
        # the most recently released first: its pages are the likeliest still in cache
        for seg in reversed(self._free):
            if nbytes <= seg.size <= 2 * nbytes + (1 << 20) and (best is None or seg.size < best.size):
                best = seg
        if best is not None:
            self._free.remove(best)
            self._lent[best.id] = best
            return best
        size = _round_up(nbytes)
        while self._free and self.held_bytes + size > self._budget:
            self._free.pop(0).close()  # make room: the oldest free segment goes
        if self._closed or self.held_bytes + size > self._budget:
            return Segment(0, size)
        seg = Segment(self._next_id, size)
        self._next_id += 1
        self._lent[seg.id] = seg
        return seg

    def sent(self, seg: Segment) -> None:
        """The segment's descriptor left with its frame; a given-away one closes now."""
        if seg.id == 0:
            seg.close()

    def unsent(self, seg: Segment) -> None:
        """The frame never left (the channel closed first)."""
        if seg.id == 0 or self._closed:
            seg.close()
        else:
            self.release(seg.id)

    def release(self, seg_id: int) -> None:
        """The receiver dropped its last view of the segment: reuse it."""
        seg = self._lent.pop(seg_id, None)
        if seg is None:
            return  # unknown or already released (a confused peer): nothing to do
        if self._closed:
            seg.close()
        else:
            self._free.append(seg)

    def close(self) -> None:
        """Close every segment (the channel closed: lent ones are the peer's now, or
        gone with it)."""
        self._closed = True
        for seg in [*self._lent.values(), *self._free]:
            seg.close()
        self._lent.clear()
        self._free.clear()


def map_received(fd: int, nbytes: int, seg_id: int, on_release: Callable[[int], None]) -> memoryview:
    """Map a received segment's first ``nbytes`` (copy-on-write: the receiver may write
    to its array without touching the sender's pages) and close the descriptor.

    When the last view of the mapping dies, ``on_release(seg_id)`` is called (for a
    pooled segment, ``seg_id`` > 0), from whatever code drops it: keep it to a list
    append.

    Raises:
        ValueError: the descriptor is not a segment of at least ``nbytes`` bytes.
    """
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size < nbytes:
            raise ValueError(f"a shared-memory descriptor of {info.st_size} bytes for a {nbytes}-byte buffer")
        mm = mmap.mmap(fd, nbytes, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    if seg_id:
        fin = weakref.finalize(mm, on_release, seg_id)
        fin.atexit = False
    return memoryview(mm)


def is_segment_fd(link: str) -> bool:
    """Whether a ``/proc/<pid>/fd`` link target is one of our segments (for tests)."""
    return link.startswith("/memfd:notebook_actors")


def close_fds(fds: Any) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
