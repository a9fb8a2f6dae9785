"""Large data under faults: SIGKILL of the sender or of the receiver in the middle of
256 MiB transfers leaves no shared-memory segment (no descriptor, no mapping, nothing
in /dev/shm) in the survivor; a stream of 10,000 arrays to a slow reader keeps the
reader's memory flat (the stream's credit counts bytes)."""

from __future__ import annotations

import gc
import os
import signal

import numpy as np
import psutil
import pytest
import trio

import notebook_actors as na
from notebook_actors import _shm

pytestmark = pytest.mark.usefixtures("no_fd_leak")

MiB = 1024 * 1024
BIG = 256 * MiB


def segment_fds() -> list[str]:
    """Our shared-memory segments this process holds open (descriptors)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if _shm.is_segment_fd(link):
            found.append(link)
    return found


def segment_maps() -> list[str]:
    """Our shared-memory segments this process still maps."""
    with open("/proc/self/maps") as f:
        return [line for line in f if "memfd:notebook_actors" in line]


def dev_shm() -> set[str]:
    return set(os.listdir("/dev/shm"))


def getpid() -> int:
    return os.getpid()


async def big_arrays():
    arr = np.ones(BIG // 8)
    while True:
        yield arr


@na.context
async def big_sink(ctx) -> None:
    await ctx.started(os.getpid())
    async with ctx.open_stream() as stream:
        async for arr in stream:
            await stream.send(int(arr.nbytes))


async def small_arrays(count: int, nbytes: int):
    arr = np.zeros(nbytes, dtype=np.uint8)
    for i in range(count):
        arr[0] = i % 256
        yield arr


def _check_nothing_left(shm_before: set[str]) -> None:
    gc.collect()
    assert segment_fds() == []
    assert segment_maps() == []
    assert dev_shm() - shm_before == set()


def test_sigkill_of_the_sender_mid_transfer_leaves_no_segment(reg):
    """Test that SIGKILL of an actor streaming 256 MiB arrays to the root, while the
    next one is on its way, leaves the root no segment descriptor or mapping once it
    dropped what it received, and nothing in /dev/shm."""
    shm_before = dev_shm()

    async def main() -> None:
        with pytest.raises(na.ActorCrashed):
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("sender", enable_modules=[__name__])
                pid = await portal.run(getpid)
                with pytest.raises((na.TransportClosed, na.RemoteActorError)):
                    async with portal.open_stream_from(big_arrays) as stream:
                        first = await stream.receive()
                        assert first.nbytes == BIG and first[-1] == 1.0
                        del first
                        os.kill(pid, signal.SIGKILL)
                        async for arr in stream:  # whatever was complete still arrives
                            del arr
        _check_nothing_left(shm_before)

    trio.run(main)


def test_sigkill_of_the_receiver_mid_transfer_leaves_no_segment(reg):
    """Test that SIGKILL of an actor receiving 256 MiB arrays from the root, while the
    root sends the next one, leaves the root (the sender) no segment descriptor or
    mapping, and nothing in /dev/shm."""
    shm_before = dev_shm()
    arr = np.ones(BIG // 8)

    async def main() -> None:
        with pytest.raises(na.ActorCrashed):
            async with na.open_nursery(**reg) as n:
                portal = await n.start_actor("receiver", enable_modules=[__name__])
                with pytest.raises((na.TransportClosed, na.RemoteActorError, trio.BrokenResourceError)):
                    async with portal.open_context(big_sink) as (ctx, pid):
                        async with ctx.open_stream() as stream:
                            await stream.send(arr)
                            assert await stream.receive() == BIG
                            await stream.send(arr)
                            os.kill(pid, signal.SIGKILL)
                            for _ in range(3):
                                await stream.send(arr)
                            await stream.receive()
        _check_nothing_left(shm_before)

    trio.run(main)


def mapped_segment_bytes() -> int:
    """Bytes of our shared-memory segments this process maps right now."""
    total = 0
    for line in segment_maps():
        start, end = line.split()[0].split("-")
        total += int(end, 16) - int(start, 16)
    return total


@pytest.mark.parametrize("nbytes", [960 * 1024, MiB], ids=["in line", "shared memory"])
def test_a_slow_reader_of_10000_arrays_stays_flat(reg, nbytes):
    """Test that a producer of 10,000 arrays (about 10 GB in all) cannot make a slow
    reader hold more than the stream's byte window (64 MiB) of them: its RSS and the
    shared memory it maps stay within 128 MiB, while a window counted in messages
    alone (512) would let about 500 MiB pile up; every array arrives, in order."""

    async def main() -> None:
        me = psutil.Process()
        async with na.open_nursery(**reg) as n:
            portal = await n.start_actor("producer", enable_modules=[__name__])
            peak_rss = peak_mapped = base = 0
            async with portal.open_stream_from(small_arrays, count=10_000, nbytes=nbytes) as stream:
                i = 0
                async for arr in stream:
                    assert arr[0] == i % 256 and arr.nbytes == nbytes
                    del arr
                    i += 1
                    if i == 200:
                        base = me.memory_info().rss
                    if i % 2000 == 0:
                        await trio.sleep(0.5)  # slow: the producer runs ahead, as far as it may
                        peak_rss = max(peak_rss, me.memory_info().rss)
                        peak_mapped = max(peak_mapped, mapped_segment_bytes())
            assert i == 10_000
            assert peak_rss - base < 128 * MiB, f"reader RSS grew by {(peak_rss - base) / MiB:.0f} MiB"
            assert peak_mapped < 128 * MiB, f"reader mapped {peak_mapped / MiB:.0f} MiB of segments"
            await portal.cancel_actor()

    trio.run(main)
