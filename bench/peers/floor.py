"""The floor: what the machine gives with no runtime at all.

Spawn: a bare ``python -c "import trio, msgspec"``, from start until it has imported
(it writes one byte then; its exit is not counted). IPC: a raw
trio Unix socket pair between two processes, msgspec frames with a 4-byte length.
"""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec
import trio

from .._floor_child import Frames, frame
from .._util import RPC_N, SPAWN_REPS, STREAM_N, now, private_sock_path, round_trip_summary, rss_of

# Start, import, and say so: the parent stops the clock at that byte (the
# interpreter's exit, ~10-20 ms with trio loaded, is not part of the floor).
BARE = [sys.executable, "-c", "import trio, msgspec, os; os.write(1, b'1')"]


async def _bare_start(count: int) -> float:
    async def one(done: list) -> None:
        proc = await trio.lowlevel.open_process(BARE, stdout=subprocess.PIPE)
        try:
            assert await proc.stdout.receive_some(1) == b"1"
            done.append(now())
        finally:
            await proc.wait()
            await proc.stdout.aclose()

    done: list[float] = []
    t0 = now()
    async with trio.open_nursery() as n:
        for _ in range(count):
            n.start_soon(one, done)
    return max(done) - t0


def spawn1(quick: bool) -> dict:
    return {"spawn1_ms": [trio.run(_bare_start, 1) * 1e3 for _ in range(SPAWN_REPS[quick])]}


def spawn10(quick: bool) -> dict:
    return {"spawn10_ms": [trio.run(_bare_start, 10) * 1e3]}


async def _with_child(mode: str, n: int, body):
    path = private_sock_path("floor")
    sock = trio.socket.socket(trio.socket.AF_UNIX)
    await sock.bind(path)
    sock.listen(1)
    listener = trio.SocketListener(sock)
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "bench._floor_child", mode, path, str(n)], stdin=subprocess.DEVNULL
    )
    try:
        stream = await listener.accept()
        async with stream:
            return await body(stream, Frames(stream), proc)
    finally:
        proc.kill()
        await proc.wait()
        os.unlink(path)
        os.rmdir(os.path.dirname(path))
        await listener.aclose()


async def _ping_pong(n: int) -> list[float]:
    enc = msgspec.msgpack.Encoder()

    async def body(stream, frames, proc):
        times = []
        for i in range(n + 50):  # the first 50 warm up
            out = bytearray()
            t0 = now()
            frame(enc, out, [i, 2])
            await stream.send_all(out)
            (reply,) = await frames.next_batch()
            assert reply == [i, 4]
            times.append(now() - t0)
        return times[50:]

    return await _with_child("echo", 0, body)


async def _ping_pong_via_reader_task(n: int) -> list[float]:
    """The same ping-pong, but a reader task receives and hands each reply to the
    caller (as any runtime that multiplexes calls over one socket must): what one
    extra trio scheduling pass costs."""
    enc = msgspec.msgpack.Encoder()

    async def body(stream, frames, proc):
        replies: list = []
        waiter: list = []

        async def reader() -> None:
            while True:
                replies.extend(await frames.next_batch())
                if waiter:
                    trio.lowlevel.reschedule(waiter.pop())

        async def wait_reply():
            while not replies:
                waiter.append(trio.lowlevel.current_task())
                await trio.lowlevel.wait_task_rescheduled(lambda _: trio.lowlevel.Abort.SUCCEEDED)
            return replies.pop(0)

        times = []
        async with trio.open_nursery() as n:
            n.start_soon(reader)
            for i in range(n_calls + 50):
                out = bytearray()
                t0 = now()
                frame(enc, out, [i, 2])
                await stream.send_all(out)
                assert await wait_reply() == [i, 4]
                times.append(now() - t0)
            n.cancel_scope.cancel()
        return times[50:]

    n_calls = n
    return await _with_child("echo", 0, body)


def rpc_reader_task(quick: bool) -> dict:
    return round_trip_summary(trio.run(_ping_pong_via_reader_task, RPC_N[quick]), "rpc_reader_task")


def rpc(quick: bool) -> dict:
    return round_trip_summary(trio.run(_ping_pong, RPC_N[quick]), "rpc")


def echo(quick: bool) -> dict:
    return round_trip_summary(trio.run(_ping_pong, RPC_N[quick]), "echo")


async def _one_way(mode: str, n: int) -> float:
    async def body(stream, frames, proc):
        out = bytearray()
        frame(msgspec.msgpack.Encoder(), out, "go")
        await stream.send_all(out)
        t0 = now()
        got = 0
        while got < n:
            got += len(await frames.next_batch())
        return n / (now() - t0)

    return await _with_child(mode, n, body)


def stream(quick: bool) -> dict:
    return {"stream_msgs_s": [trio.run(_one_way, "oneway", STREAM_N[quick])]}


def stream_batched(quick: bool) -> dict:
    return {"stream_batched_msgs_s": [trio.run(_one_way, "batched", STREAM_N[quick] * 2)]}


async def _idle_rss() -> dict:
    async def body(stream, frames, proc):
        out = bytearray()
        frame(msgspec.msgpack.Encoder(), out, "go")
        await stream.send_all(out)
        await trio.sleep(0.3)  # settle after start-up (not a measurement)
        return rss_of(proc.pid)

    return await _with_child("idle", 0, body)


def rss(quick: bool) -> dict:
    return trio.run(_idle_rss)


FIGURES = {
    "spawn1": spawn1,
    "spawn10": spawn10,
    "rpc": rpc,
    "rpc_reader_task": rpc_reader_task,
    "stream": stream,
    "stream_batched": stream_batched,
    "echo": echo,
    "rss": rss,
}
